"""The user's own defaults: ``[defaults]`` of ``$XDG_CONFIG_HOME/clusterdeck/config.toml``
(``~/.config/clusterdeck/config.toml``, the file that holds the ``[hosts.NAME]`` profiles too)::

    [defaults]
    runs_root = "/scratch/me/clusterdeck/runs"   # where runs go and are listed (after $CLUSTERDECK_HOME)
    executor = "slurm"                           # a spec's cluster.executor when it names none
    partition = "gpu"                            # each step's resources.* when the spec leaves them empty
    account = "proj123"
    qos = "normal"
    setup = ["module load cuda/12.4"]

They go under a spec's own values, never over them, when this machine submits (the CLI, the app's form and its
sbatch preview); the run's record keeps which keys they filled (``RunRecord.from_config``), so that ``show``
says so. Over ``--host``, the login node's own config applies there: a laptop's defaults are not sent.

``[app]`` keeps what the app's user chose in the app (``theme = "nord"``); the app writes it (``save_app_setting``).
"""

from __future__ import annotations

import copy
import os
import re
import tomllib
from pathlib import Path
from typing import Any, Literal, TypeVar

import tomli_w
from pydantic import BaseModel, ConfigDict, ValidationError

from clusterdeck.jobs import atomic
from clusterdeck.jobs.errors import UserError

RESOURCE_KEYS = ("partition", "account", "qos", "setup")
"""The keys of a step's ``resources`` that ``[defaults]`` can fill."""


class Defaults(BaseModel):
    model_config = ConfigDict(extra="forbid")

    runs_root: str = ""
    """Runs root of this machine when --runs-root and $CLUSTERDECK_HOME say none (``~`` and ``$VARS`` expanded)."""
    executor: Literal["local", "slurm"] | None = None
    """``cluster.executor`` of a spec that names none."""
    partition: str = ""
    account: str = ""
    qos: str = ""
    setup: list[str] = []
    """Shell lines before each SLURM job's command (``resources.setup``), for steps whose spec gives none."""


class AppSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    theme: str = ""
    """The app's theme, by Textual's name for it (``textual-dark``, ``nord`` …); "": Textual's default. The app
    checks the name against its themes."""


Table = TypeVar("Table", bound=BaseModel)


def config_path() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or "~/.config"
    return Path(base).expanduser() / "clusterdeck" / "config.toml"


def read_config(path: Path | None = None) -> dict[str, Any]:
    """The config file's tables (empty when there is none); a UserError naming the file when it is unreadable."""
    path = path or config_path()
    try:
        return tomllib.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except OSError as exc:
        raise UserError(f"{path}: cannot read ({exc.strerror})") from None
    except tomllib.TOMLDecodeError as exc:
        raise UserError(f"{path}: invalid TOML: {exc}") from None


def load_defaults(path: Path | None = None) -> Defaults:
    path = path or config_path()
    return _validated(Defaults, "defaults", read_config(path).get("defaults", {}), path)


def load_app_settings(path: Path | None = None) -> AppSettings:
    path = path or config_path()
    return _validated(AppSettings, "app", read_config(path).get("app", {}), path)


def save_app_setting(key: str, value: str, path: Path | None = None) -> Path:
    """Sets ``[app] key = value`` in the config file and returns its path, under an atomic rename with the mode
    the file had (one is created where there is none). The user's text is kept, comments included: only the
    ``key`` line of ``[app]`` is replaced or added (``_edited``); where ``[app]`` is written in a way that edit
    cannot place (an inline table, dotted keys), the file is written anew by tomli_w. A file that cannot be
    read or checked is left as it is."""
    path = (path or config_path()).resolve()  # a dotfiles symlink: its target is what is written
    config = read_config(path)
    app = config.setdefault("app", {})
    if not isinstance(app, dict):
        raise UserError(f"{path}: app must be a table ([app])")
    app[key] = value
    _validated(AppSettings, "app", app, path)
    try:
        old = path.read_text()
    except FileNotFoundError:
        old = ""
    edited = _edited(old, key, value)
    text = (edited if edited is not None else tomli_w.dumps(config)).encode()
    try:
        mode = path.stat().st_mode & 0o7777
    except FileNotFoundError:
        mode = None  # a new file: the umask's mode, as for any file the user creates
    try:
        with atomic.replacing(path) as f:
            if mode is not None:
                os.fchmod(f.fileno(), mode)
            f.write(text)
    except OSError as exc:
        raise UserError(f"{path}: cannot write ({exc.strerror or exc})") from None
    return path


_APP_HEADER = re.compile(r"^\s*\[\s*app\s*\]\s*(#.*)?$")


def _edited(text: str, key: str, value: str) -> str | None:
    """``text`` with ``key = value`` in its ``[app]`` table, everything else as it was; None when the result would
    not read back as that (``[app]`` written inline or with dotted keys)."""
    line = tomli_w.dumps({key: value})
    lines = text.splitlines(keepends=True)
    header = next((i for i, s in enumerate(lines) if _APP_HEADER.match(s)), None)
    if header is None:
        edited = text + ("" if not text or text.endswith("\n") else "\n") + ("\n" if text else "") + "[app]\n" + line
    else:
        end = next((i for i in range(header + 1, len(lines)) if lines[i].lstrip().startswith("[")), len(lines))
        at = next((i for i in range(header + 1, end) if lines[i].split("=")[0].strip() == key), None)
        if at is None:
            lines.insert(header + 1, line)
        else:
            lines[at] = line
        edited = "".join(lines)
    try:
        reread = tomllib.loads(edited)
    except tomllib.TOMLDecodeError:
        return None
    return edited if reread.get("app", {}).get(key) == value else None


def _validated(model: type[Table], name: str, table: object, path: Path) -> Table:
    """``[name]`` of the config file as ``model``; a UserError naming the file and each bad key."""
    if not isinstance(table, dict):
        raise UserError(f"{path}: {name} must be a table ([{name}])")
    try:
        return model.model_validate(table)
    except ValidationError as exc:
        raise UserError(
            *(f"{path}: {name}.{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors())
        ) from None


def apply_defaults(
    table: dict[str, Any], defaults: Defaults, steps: list[str]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """``table`` with ``defaults`` under its own values, and what they filled, by spec key. The resource keys go
    into each of ``steps``' sections the table has, and only for SLURM (the local executor has no partition)."""
    table = copy.deepcopy(table)
    filled: dict[str, Any] = {}
    cluster = table.setdefault("cluster", {})
    if not isinstance(cluster, dict):
        return table, filled  # validation names it
    if defaults.executor and "executor" not in cluster:
        cluster["executor"] = filled["cluster.executor"] = defaults.executor
    if not cluster:
        del table["cluster"]
    if table.get("cluster", {}).get("executor") != "slurm":
        return table, filled
    for step in steps:
        section = table.get(step)
        if not isinstance(section, dict):
            continue
        resources = section.setdefault("resources", {})
        if not isinstance(resources, dict):
            continue
        for key in RESOURCE_KEYS:
            value = getattr(defaults, key)
            if value and not resources.get(key):
                resources[key] = filled[f"{step}.resources.{key}"] = value
    return table, filled
