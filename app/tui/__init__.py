"""The Textual app: runs, a run's live panels. Everything it shows comes from ``jobs``."""
