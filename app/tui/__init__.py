"""The Textual app: five screens (runs, a run's live panels, a new run's form, runs compared, the cluster).

Everything it shows comes from ``jobs``.
"""
