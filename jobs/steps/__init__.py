"""Step kinds: one module per kind (``shard``, ``export``, ``train``, ``evaluate``), each one object implementing
``base.Step``, listed in run order in ``registry``; a kind's spec section lives beside it (``<kind>_spec``, the
[shard] section still in ``jobs.spec``).

Adding a step kind touches its own module(s) and one line of ``registry`` (or, outside the project, a plugin module
that calls ``registry.register``): submit, payloads, dispatch, the decks, the overview, the form and the CLI ask the
registry and name no step.
"""
