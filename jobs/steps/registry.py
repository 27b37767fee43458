"""Every step kind, in run order: the one list submit, payloads, dispatch, the decks, the overview and the form ask.

A run's steps run in this order, each after the one before succeeded. Modules named in ``CLUSTERDECK_PLUGINS``
(``jobs.plugins``) are imported before the list is read, so a step kind they ``register()`` is known in every
process a run starts, the jobs included.
"""

from __future__ import annotations

from clusterdeck.jobs.errors import UserError
from clusterdeck.jobs.plugins import load_plugins
from clusterdeck.jobs.spec import RunSpec
from clusterdeck.jobs.steps.base import Step
from clusterdeck.jobs.steps.evaluate import EvaluateStep
from clusterdeck.jobs.steps.export import ExportStep
from clusterdeck.jobs.steps.script import ScriptStep
from clusterdeck.jobs.steps.shard import ShardStep
from clusterdeck.jobs.steps.train import TrainStep

_STEPS: list[Step] = [ShardStep(), ExportStep(), TrainStep(), ScriptStep(), EvaluateStep()]
RESERVED = ("name", "cluster", "telemetry")
"""Spec keys that are not steps' sections."""


def steps() -> tuple[Step, ...]:
    """Every step kind, in run order (plugins loaded first)."""
    load_plugins()
    return tuple(_STEPS)


def find(name: str) -> Step | None:
    """The step kind called ``name``, or None: a viewer may show a run made with a plugin it has not loaded."""
    return next((s for s in steps() if s.name == name), None)


def step(name: str) -> Step:
    """The step kind called ``name``; a UserError when none is (a run made with a plugin that is not loaded)."""
    found = find(name)
    if found is None:
        raise UserError(f"unknown step {name!r}; is the plugin that registers it named in CLUSTERDECK_PLUGINS?")
    return found


def register(new: Step, *, before: str | None = None) -> None:
    """Adds a step kind, last in run order or just before the step ``before``; its name must be new."""
    if new.name in RESERVED or hasattr(RunSpec, new.name) or any(s.name == new.name for s in _STEPS):
        raise ValueError(f"a step or spec section called {new.name!r} exists already")
    at = next((i for i, s in enumerate(_STEPS) if s.name == before), None) if before else None
    if before and at is None:
        raise ValueError(f"no step {before!r} to register {new.name!r} before")
    _STEPS.insert(len(_STEPS) if at is None else at, new)


def unregister(name: str) -> None:
    """Removes the step kind ``name`` (a test's throwaway one)."""
    _STEPS[:] = [s for s in _STEPS if s.name != name]
