"""``clusterdeck inspect``: what a shard input or a shard set holds, read in place, nothing written.

The path's format is detected by the input-format registry (``jobs.formats``), or named with ``--format``,
and the format makes the report (the ``inspect-report`` document): an input is listed by the same
functions the shard step uses, so inspect sees what sharding would see; a shard set is checked against
its index. ``--devkit``, ``--ground-truth``, ``--synsets``, ``--split``, ``--labels`` and ``--prefix`` are the
input's optional spec keys, refused where its format does not read them. ``app.render.inspect`` writes the report
as text.

No torch, torchvision or webdataset here: the CLI must start fast on a login node.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from clusterdeck.jobs.errors import UserError
from clusterdeck.jobs.formats import registry as input_formats
from clusterdeck.jobs.formats.base import ByteProgress, InputFormat


def inspect_path(
    path: Path,
    fmt: str | None = None,
    *,
    devkit: Path | None = None,
    ground_truth: Path | None = None,
    synsets: Path | None = None,
    split: str | None = None,
    labels: str | None = None,
    prefix: str | None = None,
    verify: bool | str = True,
    progress: ByteProgress | None = None,
) -> dict[str, Any]:
    """The report of ``path``: a shard set or a shard input, in the format ``fmt`` names, else the one detected;
    ``progress`` hears of the bytes a shard set's check reads."""
    if not path.exists():
        raise UserError(f"{path}: no such file or directory")
    options = {"devkit": devkit, "ground_truth": ground_truth, "synsets": synsets}
    fields: dict[str, Any] = {key: given for key, given in options.items() if given is not None}
    for key, given in fields.items():
        if not given.exists():
            raise UserError(f"{_option(key)}: {given}: no such file or directory")
    fields.update({key: given for key, given in (("split", split), ("labels", labels)) if given is not None})
    if prefix is not None:
        fields["prefix"] = prefix
    try:
        found = _named(fmt) if fmt else detect(path)
        for key in input_formats.unread(found, fields):
            raise UserError(f"{_option(key)}: only read by {input_formats.readers([key])} ({path} is {found.name})")
        return found.inspect(path, fields, verify, progress)
    except OSError as exc:
        where = exc.filename or path
        raise UserError(f"{where}: cannot read ({exc.strerror or exc}); is {path} a {fmt or 'known'} input?") from None


def _option(key: str) -> str:
    return "--" + key.replace("_", "-")


def _named(name: str) -> InputFormat:
    found = input_formats.get(name)
    if found is None:
        raise UserError(f"--format: {name!r} is not one of {', '.join(input_formats.names())}")
    return found


def detect(path: Path) -> InputFormat:
    """The format of what ``path`` holds; UserError if it is none of them."""
    found = input_formats.find(path)
    if found is not None:
        return found
    kinds = [f for f in input_formats.formats() if f.path_kind != ("dir" if path.is_file() else "file")]
    looked = "; ".join(f.looks_like for f in kinds)
    if path.is_file():
        raise UserError(f"{path}: not a file of a known input format (looked for: {looked}); name one with --format")
    raise UserError(f"{path}: not a layout inspect knows (it holds none of: {looked})")


def failures(report: dict[str, Any]) -> list[str]:
    """One line per shard that does not match its index, naming its file (a report that checks none: none)."""
    root = Path(report["path"])
    return [f"{root / p['file']}: {p['problem']}" for p in report.get("verify", {}).get("problems", [])]
