"""The JSON ``--json`` prints is a protocol between two installations (``jobs.protocol``).

Every document carries ``schema`` and ``clusterdeck``; each reader the remote deck uses takes a
document grown by a newer release (unknown fields ignored) and refuses another major with one
line naming both versions and the side to upgrade. Against the real sshd (tests/sshd.py), the
login node's clusterdeck (tests/login_node.py) is checked once per connection.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import re
import shlex
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from clusterdeck.app.cli import build_parser
from clusterdeck.jobs.compare import Comparison
from clusterdeck.jobs.deck.ssh import SshDeck
from clusterdeck.jobs.metrics import MetricsWriter
from clusterdeck.jobs.overview import RunRow
from clusterdeck.jobs.protocol import SCHEMAS, ProtocolError, check_peer, from_fields, read, version
from clusterdeck.jobs.remote.profiles import Profile, Target
from clusterdeck.jobs.remote.ssh import SshConnection
from clusterdeck.jobs.rundir import RunPaths
from clusterdeck.jobs.sample_data import SampleData
from clusterdeck.jobs.status import PartView, RunView
from tests.conftest import REPO, run_cli, shard_spec
from tests.login_node import EXTRA, grow
from tests.sshd import HOST, Laptop, Sshd

UPGRADE_HERE = "upgrade clusterdeck on this machine (pip install -U clusterdeck)"
UPGRADE_THERE = f"upgrade clusterdeck on {HOST} (pip install -U clusterdeck there)"


@dataclass
class Runs:
    """Two completed runs on this machine, and the documents the CLI printed about them."""

    home: Path
    ids: list[str]
    docs: dict[str, Any]
    """Each document the remote deck reads, by schema name, as ``--json`` printed it."""

    @property
    def env(self) -> dict[str, str]:
        return {"CLUSTERDECK_HOME": str(self.home)}

    @property
    def root(self) -> Path:
        return self.home / "runs"


def cli_json(*args: str, env: dict[str, str]) -> Any:
    result = run_cli(*args, env=env)
    assert result.code == 0, result.err
    return json.loads(result.out)


@pytest.fixture(scope="module")
def runs(sample_data: SampleData, tmp_path_factory: pytest.TempPathFactory) -> Runs:
    tmp = tmp_path_factory.mktemp("protocol")
    env = {"CLUSTERDECK_HOME": str(tmp / "home")}
    ids = []
    for name in ("a", "b"):
        spec = tmp / f"{name}.toml"
        spec.write_text(shard_spec(sample_data, tmp / f"set-{name}", name=name))
        view = cli_json("submit", str(spec), "--wait", "--json", "--set", f"shard.seed={len(ids)}", env=env)
        ids.append(view["run_id"])
    docs = {
        "run-view": cli_json("show", ids[0], "--json", env=env),
        "run-list": cli_json("ls", "--json", env=env),
        "run-diff": cli_json("diff", *ids, "--json", env=env),
        "run-resume": cli_json("resume", ids[0], "--json", env=env),
        "version": cli_json("version", "--json", env=env),
    }
    return Runs(tmp / "home", ids, docs)


# -- every --json command -----------------------------------------------------------------------


def json_commands() -> set[str]:
    """Every command of the CLI that takes --json."""
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return {name for name, p in sub.choices.items() if any("--json" in a.option_strings for a in p._actions)}


def test_every_json_command_prints_its_schema_and_version(
    runs: Runs, sample_data: SampleData, sample_shards: Path, tmp_path: Path
) -> None:
    a, b = runs.ids
    with_metrics = RunPaths(runs.root / a)
    MetricsWriter(with_metrics.metrics).write("epoch", epoch=1, top1=0.5)  # as a training job writes them
    export = ["export", str(sample_shards), "--out", str(tmp_path / "x"), "--samples", "8", "--image-size", "8"]
    spec = tmp_path / "c.toml"
    spec.write_text(shard_spec(sample_data, tmp_path / "set-c", name="c"))
    commands: list[tuple[list[str], str]] = [
        (["--runs-root", str(tmp_path / "runs"), "submit", str(spec), "--wait"], "run-view"),  # not among runs.ids
        (["ls"], "run-list"),
        (["show", a], "run-view"),
        (["diff", a, b], "run-diff"),
        (["cancel", a], "run-view"),
        (["resume", a], "run-resume"),
        (["metrics", a], "metric-record"),
        (["stage", str(sample_shards), "--to", str(tmp_path / "cache")], "stage-tally"),
        (["val-sort", str(sample_data.val), "--ground-truth", str(sample_data.ground_truth),
          "--synsets", str(sample_data.synsets), "--out", str(tmp_path / "sorted")], "val-sort"),
        (["inspect", str(sample_shards)], "inspect-report"),
        ([*export, "--inspect"], "export-plan"),
        (export, "export-result"),
        (["version"], "version"),
    ]  # fmt: skip
    named = {next(a for a in args if a in json_commands() | {"version"}) for args, _ in commands}
    assert named == json_commands()  # a new --json command is added here too
    assert {name for _, name in commands} == set(SCHEMAS)
    for args, name in commands:
        result = run_cli(*args, "--json", env=runs.env)
        assert result.code == 0, (args, result.err)
        docs = [json.loads(line) for line in result.out.splitlines()] if name == "metric-record" else [result.out]
        assert docs, args
        for doc in docs:
            doc = json.loads(doc) if isinstance(doc, str) else doc
            assert isinstance(doc, dict), args
            assert (doc["schema"], doc["clusterdeck"]) == (f"{name}/{SCHEMAS[name]}", version()), args
    assert run_cli("--version").out == f"clusterdeck {version()}\n"


def test_the_version_is_the_running_codes_and_the_installed_distributions() -> None:
    """One version, in jobs/__init__.py: the packaging reads it (pyproject's dynamic version), version() returns it."""
    from importlib.metadata import version as installed

    from clusterdeck.jobs import __version__

    assert version() == __version__
    assert installed("clusterdeck") == __version__  # the metadata is built from it: fails if it lives twice


# -- the readers ---------------------------------------------------------------------------------


READERS: dict[str, Callable[[Any], object]] = {
    # What the remote deck makes of each document (jobs/deck/ssh.py), from the document as printed.
    "run-view": lambda doc: RunView.from_json(read(doc, "run-view", HOST)),
    "run-list": lambda doc: [RunRow.from_entry(e) for e in read(doc, "run-list", HOST)["runs"]],
    "run-diff": lambda doc: Comparison.from_json(read(doc, "run-diff", HOST)),
    "run-resume": lambda doc: bool(read(doc, "run-resume", HOST)["resumed"]),
    "version": lambda doc: check_peer(doc, HOST)["schemas"],
}


@pytest.mark.parametrize("name", sorted(READERS))
def test_a_reader_ignores_the_fields_a_newer_release_added(runs: Runs, name: str) -> None:
    doc = runs.docs[name]
    grown = grow(doc)
    assert grown != doc and json.dumps(EXTRA)[1:-1] in json.dumps(grown)
    assert READERS[name](grown) == READERS[name](doc)


@pytest.mark.parametrize("name", sorted(READERS))
def test_a_reader_refuses_a_higher_major_in_one_line(runs: Runs, name: str) -> None:
    doc = runs.docs[name] | {"schema": f"{name}/{SCHEMAS[name] + 1}", "clusterdeck": "9.0.0"}
    with pytest.raises(ProtocolError) as refused:
        READERS[name](doc)
    assert refused.value.problems == [
        f"{HOST}: clusterdeck 9.0.0 speaks {name}/{SCHEMAS[name] + 1}, this clusterdeck {version()} speaks "
        f"{name}/{SCHEMAS[name]}: {UPGRADE_HERE}"
    ]
    assert refused.value.exit_code == 2


@pytest.mark.parametrize("name", sorted(READERS))
def test_a_reader_refuses_a_document_from_before_versioned_json(runs: Runs, name: str) -> None:
    doc = {k: v for k, v in runs.docs[name].items() if k not in ("schema", "clusterdeck")}
    if name == "run-list":
        doc = doc["runs"]  # `ls --json` printed a bare list then
    with pytest.raises(ProtocolError) as refused:
        READERS[name](doc)
    assert refused.value.problems == [
        f"{HOST}: a clusterdeck from before versioned JSON speaks {name}/0, this clusterdeck {version()} speaks "
        f"{name}/{SCHEMAS[name]}: {UPGRADE_THERE}"
    ]


def test_a_version_document_names_the_first_document_whose_major_differs(runs: Runs) -> None:
    doc = runs.docs["version"] | {"clusterdeck": "0.0.9"}
    older = doc | {"schemas": {k: v for k, v in doc["schemas"].items() if k != "run-diff"}}  # before diff existed
    there = re.escape(UPGRADE_THERE)
    with pytest.raises(ProtocolError, match=rf"^{HOST}: clusterdeck 0\.0\.9 speaks run-diff/0, .*: {there}$"):
        check_peer(older, HOST)
    newer = doc | {"schemas": {**doc["schemas"], "run-list": 2}}
    with pytest.raises(ProtocolError, match=r"speaks run-list/2, this clusterdeck .* run-list/1: upgrade .* this "):
        check_peer(newer, HOST)


def test_from_fields_drops_unknown_fields_and_names_missing_ones() -> None:
    part = from_fields(PartView, {"part": "main", "state": "RUNNING", "job_id": "7", "gpu_watts": 300.0})
    assert part == PartView(part="main", state="RUNNING", job_id="7")
    with pytest.raises(ProtocolError, match="a PartView without state, job_id"):
        from_fields(PartView, {"part": "main"})


@dataclass
class _Derived:
    name: str
    label: str = dataclasses.field(init=False, default="")

    def __post_init__(self) -> None:
        self.label = self.name.upper()


def test_from_fields_ignores_a_field_the_constructor_does_not_take() -> None:
    """A field with init=False that a document carries (its writer serialised every field) is not passed to cls."""
    assert from_fields(_Derived, {"name": "a", "label": "stale"}).label == "A"


# -- the login node, over the real sshd -------------------------------------------------------------


def login_node_command(mode: str, log: Path) -> str:
    return shlex.join([sys.executable, str(REPO / "tests" / "login_node.py"), mode, str(log)])


def laptop_for(sshd: Sshd, runs: Runs, tmp_path: Path, mode: str) -> tuple[Laptop, Path]:
    laptop = Laptop(tmp_path / "laptop", runs.root, sshd)
    (laptop.home / ".ssh").mkdir(parents=True, mode=0o700)
    laptop.known_hosts.write_text(sshd.host_key_line())
    log = tmp_path / "asked"
    laptop.profile(command=login_node_command(mode, log), setup="")
    return laptop, log


def asked(log: Path) -> list[str]:
    return log.read_text().splitlines() if log.exists() else []


@pytest.mark.parametrize(
    ("mode", "expected"),
    [
        ("major99", f"{HOST}: clusterdeck 9.0.0 speaks run-view/99, this clusterdeck {{v}} speaks run-view/1: "
                    f"{UPGRADE_HERE}"),
        ("before", f"{HOST}: its clusterdeck has no `version` command (from before versioned JSON), this "
                   f"clusterdeck {{v}} speaks version/1: {UPGRADE_THERE}"),
    ],
)  # fmt: skip
def test_the_remote_deck_refuses_a_login_node_of_another_major_once(
    sshd: Sshd, runs: Runs, tmp_path: Path, mode: str, expected: str
) -> None:
    laptop, log = laptop_for(sshd, runs, tmp_path, mode)
    line = f"clusterdeck: error: {expected.format(v=version())}"
    for command in (["ls"], ["show", runs.ids[0], "--json"], ["version"], []):  # [] is the app: refused before it
        result = laptop.cli(*command, timeout=60)
        assert (result.code, result.err.splitlines(), result.out) == (2, [line], ""), command
        assert asked(log) == ["version --json"], command  # asked once, and nothing else was run
        log.unlink()


def test_a_newer_login_node_within_the_majors_is_read(sshd: Sshd, runs: Runs, tmp_path: Path) -> None:
    laptop, log = laptop_for(sshd, runs, tmp_path, "newer")
    a, b = runs.ids
    remote_ls = json.loads(laptop.cli("ls", "--json").out)
    local_ls = json.loads(run_cli("ls", "--json", env=runs.env).out)
    assert [{k: v for k, v in e.items() if k not in EXTRA} for e in remote_ls["runs"]] == local_ls["runs"]
    for command in (["show", a, "--json"], ["diff", a, b, "--json"], ["cancel", a, "--json"], ["show", a]):
        remote, local = laptop.cli(*command), run_cli(*command, env=runs.env)
        assert (remote.code, remote.out) == (local.code, local.out), (command, remote.err)
    resumed = laptop.cli("resume", a, "--json")
    assert resumed.code == 0 and json.loads(resumed.out)["resumed"] is False, resumed.err
    shown = laptop.cli("version")
    assert shown.out.splitlines()[-1] == f"{HOST}: clusterdeck 0.99.0, the same JSON schemas", shown.err
    # every CLI call is one connection: the login node's version asked once, first, then its commands; `version`
    # asks nothing more
    calls = asked(log)
    assert calls.count("version --json") == 7 and calls[0] == calls[-1] == "version --json"
    assert "version --json\nversion --json" not in "\n".join(calls)


def test_the_version_is_asked_once_per_connection(sshd: Sshd, runs: Runs, tmp_path: Path) -> None:
    log = tmp_path / "asked"
    profile = Profile(runs_root=str(runs.root), command=login_node_command("newer", log))
    target = Target(HOST, "127.0.0.1", sshd.port, "root", [str(sshd.client_key)], profile=profile,
                    known_hosts=tmp_path / "known_hosts")  # fmt: skip
    target.known_hosts.write_text(sshd.host_key_line())
    conn = SshConnection(target)
    conn.connect()
    with SshDeck(conn) as deck:
        for _ in range(3):
            assert [e["run_id"] for e in deck.listing()] == runs.ids
        assert asked(log).count("version --json") == 1
        assert sshd.kill_sessions() >= 1  # the network drops; the next command reconnects: a new connection
        assert [e["run_id"] for e in deck.listing()] == runs.ids
        assert conn.generation == 2
        assert asked(log).count("version --json") == 2
