"""Modules that extend clusterdeck's registries (step kinds, input formats), imported once before a registry is read.

A plugin is any importable module that calls a registry's ``register()`` when imported. They are named in the
``CLUSTERDECK_PLUGINS`` environment variable (comma-separated module names). The variable reaches every process a
run starts (the CLI, the local executor's workers, SLURM jobs, which inherit the submitting shell's environment),
so a step kind or format registered this way is known wherever the run goes.
"""

from __future__ import annotations

import importlib
import os

from clusterdeck.jobs.errors import UserError

ENV = "CLUSTERDECK_PLUGINS"
_loaded: set[str] = set()


def load_plugins() -> None:
    """Imports every module named in ``CLUSTERDECK_PLUGINS`` that is not imported yet; a module that cannot be
    imported is a UserError naming it and the variable."""
    for name in (n.strip() for n in os.environ.get(ENV, "").split(",")):
        if not name or name in _loaded:
            continue
        try:
            importlib.import_module(name)
        except ImportError as exc:
            raise UserError(f"{ENV}: cannot import plugin module {name!r}: {exc}") from None
        except Exception as exc:  # a plugin's own error (a syntax error, a name register() refuses): one line
            raise UserError(f"{ENV}: plugin module {name!r} failed as it was imported: {exc}") from None
        _loaded.add(name)
