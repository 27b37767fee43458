"""The run spec as the step registry makes it, and the one way a spec is read and validated.

``spec_model()`` is ``jobs.spec.RunSpec`` with one optional section per step kind
(``jobs.steps.registry``), in run order, then ``telemetry``; each step's checks across
sections run when a spec is validated. The model is made again only when the registry changes.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pydantic import Field, ValidationError, create_model, model_validator

from clusterdeck.jobs.errors import UserError
from clusterdeck.jobs.spec import RunSpec, TelemetrySpec, describe_errors
from clusterdeck.jobs.specfile import apply_overrides, read_table
from clusterdeck.jobs.steps.base import Step
from clusterdeck.jobs.steps.registry import steps

_models: dict[tuple[Step, ...], type[RunSpec]] = {}


def spec_model() -> type[RunSpec]:
    """The pydantic model of a whole spec, for the step kinds registered now."""
    kinds = steps()
    if kinds not in _models:
        _models[kinds] = _compose(kinds)
    return _models[kinds]


def _compose(kinds: tuple[Step, ...]) -> type[RunSpec]:
    def steps_fit(spec: RunSpec) -> RunSpec:
        for kind in kinds:
            if spec.section(kind.name) is not None:
                kind.check_spec(spec)
        return spec

    sections: dict[str, Any] = {k.name: (k.section | None, Field(None, description=k.doc)) for k in kinds}
    model: type[RunSpec] = create_model(
        "RunSpec",
        __base__=RunSpec,
        __module__=__name__,
        __validators__={"steps_fit": model_validator(mode="after")(steps_fit)},  # type: ignore[dict-item]
        **sections,
        telemetry=(
            TelemetrySpec,
            Field(TelemetrySpec(), description="What every job samples about itself while it runs."),
        ),
    )
    model.step_names = tuple(k.name for k in kinds)
    return model


def validate(table: dict[str, Any], *, source: str = "spec", check_paths: bool = True) -> RunSpec:
    model = spec_model()
    try:
        return model.model_validate(table, context={"check_paths": check_paths})
    except ValidationError as exc:
        raise UserError(*(f"{source}: {line}" for line in describe_errors(exc, model))) from None


def load_spec(path: Path, overrides: Sequence[str] = (), *, check_paths: bool = True) -> RunSpec:
    """The one way a spec is read: file, then ``--set`` overrides, then validation."""
    table = apply_overrides(read_table(path), list(overrides))
    return validate(table, source=str(path), check_paths=check_paths)
