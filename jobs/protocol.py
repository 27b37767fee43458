"""The JSON that ``--json`` prints is a protocol: a laptop's clusterdeck reads what the login node's printed.

The two ends are installed apart and upgraded apart, so every document printed with
``--json`` says what it is and who wrote it: ``"schema": "<name>/<major>"`` and
``"clusterdeck": "<version>"`` (``stamp``). Within one major, fields are only added; a
reader ignores the fields it does not know (``from_fields``), so a newer clusterdeck on one
side never crashes an older one on the other. A different major is refused (``read``) with
one line that names both versions and the side to upgrade: the side with the lower major.

The remote deck also asks the login node ``clusterdeck version --json`` once per connection
(``check_peer``), so a mismatch is met at once, before the first command, and named there.
"""

from __future__ import annotations

import dataclasses
from typing import Any, TypeVar

from clusterdeck.jobs.errors import UserError

SCHEMAS: dict[str, int] = {
    "run-view": 1,  # submit, show, cancel: a RunView
    "run-list": 1,  # ls: {"runs": [...]}, one summary per run
    "run-resume": 1,  # resume: a RunView and "resumed"
    "run-diff": 1,  # diff: a Comparison
    "metric-record": 1,  # metrics: one per line, a record as the job wrote it
    "stage-tally": 1,  # stage
    "val-sort": 1,  # val-sort
    "inspect-report": 1,  # inspect
    "export-plan": 1,  # export --inspect
    "export-result": 1,  # export: the plan, "written" and "seconds"
    "version": 1,  # version: this clusterdeck and the majors it speaks
}
"""Every document ``--json`` prints, by name, with the major this clusterdeck writes and reads."""

READ_FROM_PEER = ("run-view", "run-list", "run-resume", "run-diff")
"""The documents the remote deck reads from the login node (and ``version``): their majors must agree."""

STAMP = ("schema", "clusterdeck")

T = TypeVar("T")


class ProtocolError(UserError):
    """The other side's clusterdeck speaks another major of a document: an environment to fix (exit 2)."""


def version() -> str:
    """This clusterdeck's version: the running code's (``jobs.__version__``, which the packaging reads too), not
    whatever distribution metadata is installed (an editable install may belong to another checkout)."""
    from clusterdeck.jobs import __version__

    return __version__


def stamp(name: str, doc: dict[str, Any]) -> dict[str, Any]:
    """``doc`` as the document ``name``: its fields with ``schema`` and this clusterdeck's version added.

    Where the keys come in the printed JSON is not part of the protocol (``--json`` prints them sorted).
    """
    return {"schema": f"{name}/{SCHEMAS[name]}", "clusterdeck": version(), **unstamped(doc)}


def unstamped(doc: dict[str, Any]) -> dict[str, Any]:
    """``doc`` without ``schema`` and ``clusterdeck``: its body."""
    return {k: v for k, v in doc.items() if k not in STAMP}


def parse_schema(doc: dict[str, Any]) -> tuple[str, int]:
    """(name, major) of a document; a document from before the protocol has no schema: major 0."""
    schema = doc.get("schema")
    if not isinstance(schema, str):
        return "", 0
    name, _, major = schema.rpartition("/")
    return (name, int(major)) if major.isdigit() else (schema, 0)


def read(doc: Any, name: str, peer: str) -> dict[str, Any]:
    """The body of the document ``name`` that ``peer`` (the login node) printed; ProtocolError for another major."""
    if not isinstance(doc, dict):  # `ls --json` printed a bare list before versioned JSON
        check_major(name, 0, "", peer)
    got, major = parse_schema(doc)
    if got and got != name:
        raise ProtocolError(f"{peer}: clusterdeck printed a {doc['schema']} document where {name} was expected")
    check_major(name, major, str(doc.get("clusterdeck") or ""), peer)
    return unstamped(doc)


def check_major(name: str, theirs: int, their_version: str, peer: str) -> None:
    """Nothing when ``peer`` speaks this clusterdeck's major of ``name``; else the one line that says who upgrades."""
    ours = SCHEMAS[name]
    if theirs == ours:
        return
    who = f"clusterdeck {their_version}" if their_version else "a clusterdeck from before versioned JSON"
    side = (
        "upgrade clusterdeck on this machine (pip install -U clusterdeck)"
        if theirs > ours
        else f"upgrade clusterdeck on {peer} (pip install -U clusterdeck there)"
    )
    raise ProtocolError(
        f"{peer}: {who} speaks {name}/{theirs}, this clusterdeck {version()} speaks {name}/{ours}: {side}"
    )


def version_doc() -> dict[str, Any]:
    """What ``clusterdeck version --json`` prints: this version and the major of every document."""
    return stamp("version", {"schemas": dict(SCHEMAS)})


def check_peer(doc: Any, peer: str) -> dict[str, Any]:
    """The body of ``peer``'s ``version --json``, after checking the major of every document read from it."""
    body = read(doc, "version", peer)
    schemas = body.get("schemas")
    if not isinstance(schemas, dict):
        raise ProtocolError(f"{peer}: clusterdeck's version document lists no schemas")
    their_version = str(doc.get("clusterdeck") or "")
    for name in READ_FROM_PEER:
        major = schemas.get(name, 0)  # a document the peer does not know yet: it is older
        check_major(name, major if isinstance(major, int) else 0, their_version, peer)
    return {**body, "clusterdeck": their_version}


def from_fields(cls: type[T], data: dict[str, Any], **values: Any) -> T:
    """``cls(**data)`` for a dataclass, ``values`` replacing fields of ``data``, fields ``cls`` does not have ignored.

    A field a newer clusterdeck added is dropped, not a TypeError; a field ``cls`` needs and
    ``data`` lacks is a ProtocolError naming it.
    """
    fields = dataclasses.fields(cls)  # type: ignore[arg-type]
    known = {f.name for f in fields if f.init}
    kwargs = {k: v for k, v in data.items() if k in known} | values
    missing = [
        f.name
        for f in fields
        if f.name not in kwargs
        and f.init
        and f.default is dataclasses.MISSING
        and f.default_factory is dataclasses.MISSING
    ]
    if missing:
        raise ProtocolError(f"a {cls.__name__} without {', '.join(missing)}: not a document of this clusterdeck's")
    return cls(**kwargs)
