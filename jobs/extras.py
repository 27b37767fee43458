"""What an install of clusterdeck without its ``train`` extra cannot do, said before anything starts.

The core install (``pip install clusterdeck``: the CLI, the app, remote mode, shard, stage, inspect, export,
records and telemetry) is what a laptop or a login node needs; ``clusterdeck[train]`` adds torch, torchvision
and webdataset for the steps that train. A step names the modules its payload imports (``Step.needs``), and
submit refuses a run whose jobs would fail on their first import, since jobs run with the submitting
environment's Python. ``find_spec`` looks for a module without importing it, so the check costs no start-up time.
"""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Iterable

from clusterdeck.jobs.errors import UserError

TRAIN = ("torch", "torchvision")
"""The modules of the ``train`` extra that a training payload imports first."""


def missing(modules: Iterable[str]) -> list[str]:
    """Those of ``modules`` this environment cannot import."""
    return [m for m in modules if importlib.util.find_spec(m) is None]


def require(modules: Iterable[str], who: str) -> None:
    """A UserError (exit 2) naming ``who``, the modules missing and the extra that brings them, if any is missing."""
    lacking = missing(modules)
    if lacking:
        raise UserError(
            f"{who} needs {' and '.join(lacking)}, which this environment ({sys.prefix}) lacks: install the train "
            "extra, pip install 'clusterdeck[train]' (jobs run with the Python that submits them)"
        )
