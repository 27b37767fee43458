"""The spec as a form: its sections and fields read from the schema, text turned into values, problems by key.

The app draws a form from ``form_sections()``; what the user typed goes through
``parse_value`` into a TOML-shaped table, which ``check_table`` validates exactly as
``clusterdeck submit`` would, so a form can never accept a spec the CLI refuses.
"""

from __future__ import annotations

import json
import tomllib
import types
import typing
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal, Union

import tomli_w
from pydantic import BaseModel, ValidationError
from pydantic_core import PydanticUndefined

from clusterdeck.jobs.runspec import spec_model
from clusterdeck.jobs.spec import KEY, Choices, RunSpec, Section, error_items
from clusterdeck.jobs.steps.registry import steps

Kind = Literal["text", "path", "int", "float", "bool", "choice", "list", "table"]


@dataclass(frozen=True)
class FormField:
    key: str
    """Dotted key path, e.g. ``train.resources.gpus_per_node``."""
    kind: Kind
    doc: str
    default: Any
    """The value used when the field is left empty (``None``: none, or required)."""
    required: bool = False
    choices: tuple[str, ...] = ()

    @property
    def name(self) -> str:
        return self.key.rpartition(".")[2]


@dataclass(frozen=True)
class FormSection:
    key: str
    """``""`` for the top level, else a dotted path such as ``shard.train``."""
    doc: str
    optional: bool
    """The spec may leave this section out (a step's, such as ``[train]``, or ``[shard.val]`` …)."""
    fields: tuple[FormField, ...]
    starts_open: bool = False
    """The form shows it unfolded: the top level, [cluster], and what each step kind opens (``Step.form_open``);
    resources, staging and telemetry start folded."""


def form_sections() -> list[FormSection]:
    """Every section of a spec, parents before children, with its fields in schema order."""
    sections: list[FormSection] = []
    _walk(spec_model(), "", "A run: a name and the steps it runs.", False, None, sections)
    opened = {"", "cluster", *(".".join(filter(None, (s.name, key))) for s in steps() for key in s.form_open)}
    return [replace(s, starts_open=s.key in opened) for s in sections]


def _walk(model: type[BaseModel], key: str, doc: str, optional: bool, defaults: Any, out: list[FormSection]) -> None:
    fields, children = [], []
    for name, info in model.model_fields.items():
        path = f"{key}.{name}" if key else name
        default = getattr(defaults, name) if defaults is not None else info.default
        section, nullable = _unwrap(info.annotation)
        if section is not None:
            children.append((section, path, info.description or "", nullable, default))
            continue
        listed = next((tuple(m.names()) for m in info.metadata if isinstance(m, Choices)), None)
        fields.append(
            FormField(
                key=path,
                kind="choice" if listed is not None else _kind(info.annotation),
                doc=info.description or "",
                default=None if default is PydanticUndefined else _plain(default),
                required=info.is_required(),
                choices=listed if listed is not None else _choices(info.annotation),
            )
        )
    out.append(FormSection(key, doc, optional, tuple(fields)))
    for section, path, child_doc, nullable, default in children:
        _walk(section, path, child_doc, nullable, default if isinstance(default, BaseModel) else None, out)


def _unwrap(annotation: Any) -> tuple[type[Section] | None, bool]:
    args = typing.get_args(annotation) if _is_union(annotation) else (annotation,)
    sections = [a for a in args if isinstance(a, type) and issubclass(a, Section)]
    return (sections[0] if sections else None), type(None) in args


def _is_union(annotation: Any) -> bool:
    return typing.get_origin(annotation) in (Union, types.UnionType)


def _kind(annotation: Any) -> Kind:
    if typing.get_origin(annotation) is typing.Annotated:  # ``Annotated[int | Literal["auto"], ...]``
        annotation = typing.get_args(annotation)[0]
    args = [a for a in typing.get_args(annotation) if a is not type(None)] if _is_union(annotation) else [annotation]
    if any(typing.get_origin(a) is list for a in args):  # ``int | list[str]`` too: TOML text parses as either
        return "list"
    base = args[0] if args else annotation
    if typing.get_origin(base) is typing.Annotated:
        base = typing.get_args(base)[0]
    origin = typing.get_origin(base)
    if origin is Literal:
        return "choice"
    if origin is list:
        return "list"
    if origin is dict:
        return "table"
    if base is bool:
        return "bool"
    if base is int:
        return "int"
    if base is float:
        return "float"
    if isinstance(base, type) and issubclass(base, Path):
        return "path"
    return "text"


def _choices(annotation: Any) -> tuple[str, ...]:
    args = typing.get_args(annotation) if _is_union(annotation) else (annotation,)
    for arg in args:
        if typing.get_origin(arg) is Literal:
            return tuple(str(c) for c in typing.get_args(arg))
    return ()


def _plain(value: Any) -> Any:
    return str(value) if isinstance(value, Path) else value


def parse_value(field: FormField, text: str) -> Any:
    """What the user typed, as the spec's table holds it; text that is not a number stays text, for
    validation to name. ``None``: the field was left empty, so its default applies."""
    text = text.strip()
    if not text:
        return None
    if field.kind == "int":
        try:
            return int(text)
        except ValueError:
            return text
    if field.kind == "float":
        try:
            return float(text)
        except ValueError:
            return text
    if field.kind == "bool":
        return {"true": True, "false": False}.get(text.lower(), text)
    if field.kind in ("list", "table"):
        try:
            return tomllib.loads(f"v = {text}")["v"]
        except tomllib.TOMLDecodeError:
            return text
    return text


def show_value(value: Any) -> str:
    """A table value as the form shows it: lists as TOML arrays, the rest as text."""
    if value is None:
        return ""
    if isinstance(value, list):
        return json.dumps(value)
    if isinstance(value, dict):  # a TOML inline table; empty is "not given"
        return "{" + ", ".join(f"{k} = {json.dumps(v)}" for k, v in value.items()) + "}" if value else ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def get_key(table: dict[str, Any], key: str) -> Any:
    node: Any = table
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def leaf_keys(table: dict[str, Any], prefix: str = "") -> set[str]:
    """Every key path of a nested table that holds a value, not a table."""
    keys: set[str] = set()
    for key, value in table.items():
        path = f"{prefix}{key}"
        keys |= leaf_keys(value, path + ".") if isinstance(value, dict) else {path}
    return keys


def set_key(table: dict[str, Any], key: str, value: Any) -> None:
    """Sets ``a.b.c`` in a nested table; ``None`` removes it (the default applies)."""
    *parents, last = key.split(".")
    node = table
    for part in parents:
        child = node.get(part)
        if not isinstance(child, dict):
            if value is None:
                return
            child = node[part] = {}
        node = child
    if value is None:
        node.pop(last, None)
    else:
        node[last] = value


def without_nones(table: dict[str, Any]) -> dict[str, Any]:
    """A table without ``None`` values (a run's spec.json spells "not given" as null); ``{}`` stays: a section
    included with every default."""
    out: dict[str, Any] = {}
    for key, value in table.items():
        if isinstance(value, dict):
            value = without_nones(value)
        if value is not None:
            out[key] = value
    return out


@dataclass(frozen=True)
class Checked:
    spec: RunSpec | None
    problems: list[tuple[str, str]]
    """(key, problem); key ``""`` for a problem no single key owns."""


def check_table(table: dict[str, Any], *, check_paths: bool = True) -> Checked:
    """Validates a form's table as ``clusterdeck submit`` validates a spec file."""
    model = spec_model()
    try:
        return Checked(model.model_validate(table, context={"check_paths": check_paths}), [])
    except ValidationError as exc:
        return Checked(None, error_items(exc, model))


def split_problem(text: str) -> tuple[str, str]:
    """``"train.lr: must be > 0"`` → ``("train.lr", "must be > 0")``; a problem naming no key → ``("", text)``."""
    key, sep, rest = text.partition(": ")
    return (key, rest) if sep and KEY.fullmatch(key) else ("", text)


def spec_toml(spec: RunSpec) -> str:
    """The resolved spec, every default filled in, as TOML (what the run will record)."""
    return tomli_w.dumps(spec.model_dump(mode="json", exclude_none=True))


def table_toml(table: dict[str, Any]) -> str:
    return tomli_w.dumps(without_nones(table))
