"""A spec file as a TOML table, and ``--set key.path=value`` overrides applied to it.

Kept apart from the schema (``jobs.spec``): this is where whatever a user points at (binary, UTF-16,
huge, a directory, unreadable) becomes one line naming the file, before validation names keys.
"""

from __future__ import annotations

import sys
import tomllib
from pathlib import Path
from typing import Any

from clusterdeck.jobs.errors import UserError


def parse_override(item: str) -> tuple[list[str], Any]:
    """``a.b=3`` → (["a", "b"], 3). Values are TOML; what is not valid TOML is a string."""
    key, sep, raw = item.partition("=")
    if not sep or not key.strip():
        raise UserError(f"--set {item}: expected KEY=VALUE, e.g. --set shard.seed=3")
    try:
        value = tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw
    except RecursionError:  # tomllib recurses once per bracket: thousands of them are not a value
        raise UserError(f"--set {item}: nested too deeply to be a value") from None
    return key.strip().split("."), value


def apply_overrides(table: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    for item in overrides:
        path, value = parse_override(item)
        node = table
        for i, part in enumerate(path[:-1]):
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise UserError(f"--set {item}: {'.'.join(path[: i + 1])} is a value, not a table")
            node = child
        node[path[-1]] = value
    return table


MAX_SPEC_BYTES = 1 << 20
"""A spec is a page of TOML; a file past 1 MiB is some other file, refused without reading it all."""
_UTF16_BOMS = (b"\xff\xfe", b"\xfe\xff")
_UTF8_BOM = b"\xef\xbb\xbf"


def read_table(path: Path) -> dict[str, Any]:
    """The TOML table of a spec file; ``-`` reads standard input (a spec sent by a remote ``--host`` submit).

    Whatever the file is (binary, empty, huge, a directory, unreadable, UTF-16), the problem
    is one line naming it. A UTF-8 byte-order mark, which some editors write, is skipped.
    """
    try:
        if str(path) == "-":
            data = sys.stdin.buffer.read(MAX_SPEC_BYTES + 1)
        else:
            with open(path, "rb") as f:
                data = f.read(MAX_SPEC_BYTES + 1)
    except FileNotFoundError:
        raise UserError(f"{path}: spec file not found") from None
    except IsADirectoryError:
        raise UserError(f"{path}: is a directory, not a spec file") from None
    except OSError as exc:
        raise UserError(f"{path}: cannot read spec file ({exc.strerror or exc})") from None
    try:
        table = tomllib.loads(spec_text(path, data))
    except tomllib.TOMLDecodeError as exc:
        raise UserError(f"{path}: invalid TOML: {exc}") from None
    except RecursionError:  # tomllib recurses once per bracket or brace: thousands of them are not a spec
        raise UserError(f"{path}: nested too deeply to be a spec") from None
    if not table:
        raise UserError(f"{path}: the spec is empty (it sets no key); start from one in templates/")
    return table


def spec_text(path: Path, data: bytes) -> str:
    """The text of a spec file's bytes; a ``UserError`` naming the file for anything that is not UTF-8 TOML text."""
    if len(data) > MAX_SPEC_BYTES:
        raise UserError(f"{path}: larger than {MAX_SPEC_BYTES >> 20} MiB; not a spec file (a spec is short TOML)")
    if data.startswith(_UTF16_BOMS):
        raise UserError(f"{path}: UTF-16 text (it starts with a byte-order mark); save the spec as UTF-8")
    if b"\0" in data:
        raise UserError(f"{path}: a binary file (it holds NUL bytes), not a TOML spec")
    try:
        return data.removeprefix(_UTF8_BOM).decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise UserError(
            f"{path}: not UTF-8 text (byte 0x{data[exc.start]:02x} on line {line}); save the spec as UTF-8"
        ) from None
