"""The CLI's exit codes, in one place: the dispatcher (``app.cli``) and every command use them.

``jobs.errors.UserError.exit_code`` is ``EXIT_USAGE`` too (``jobs`` never imports ``app``).
"""

from __future__ import annotations

EXIT_OK = 0
"""The command did what was asked; a run it waited for or showed COMPLETED."""
EXIT_FAILED = 1
"""A run failed (or was cancelled), a check found problems, or the connection to the login node broke."""
EXIT_USAGE = 2
"""A usage or spec error, printed without a traceback."""
EXIT_INTERRUPTED = 130
"""Ctrl-C, as a shell reports a SIGINT."""


def exit_for(state: str) -> int:
    """The exit code of a run that ended in ``state``: 0 COMPLETED, 1 anything else."""
    return EXIT_OK if state == "COMPLETED" else EXIT_FAILED
