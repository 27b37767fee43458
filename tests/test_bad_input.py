"""Damaged or foreign input, as the real CLI meets it: one line naming the file, the right exit code, no traceback.

Each row of ``CASES`` sets up one bad thing (a spec file, a damaged record of a finished run,
a stray directory in the runs root), runs one ``clusterdeck`` command as a process, and checks
the exit code, that the file is named (on stderr, or in the ``DAMAGED`` row of ``ls``), that no
traceback was printed, and that reading changed nothing on disk.

``python -m tests.test_bad_input`` prints the table (input → command → exit code → message).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from clusterdeck.jobs.runindex import INDEX_NAME
from clusterdeck.jobs.sample_data import SampleData
from tests.conftest import REPO, Result, needs_root, shard_spec

Setup = Callable[[Path, Path], str]
"""(case directory, the run's directory) → what the command works on: a spec path, or "" for the run."""

NO_DAC = ("setpriv", "--bounding-set", "-dac_override,-dac_read_search")
"""Runs a command as root without the capabilities that let root ignore file modes: chmod 000 means it."""


@dataclass(frozen=True)
class Case:
    label: str
    setup: Setup
    command: tuple[str, ...]
    """The command; ``{}`` is what ``setup`` returned, ``RUN`` the run's id."""
    code: int
    named: tuple[str, ...]
    """Text the message must hold: the file (``{}``: what ``setup`` returned; ``@`` the run's directory)."""
    no_dac: bool = False

    @property
    def id(self) -> str:
        return f"{self.label} | {' '.join(self.command)}"


def cli(*args: str, prefix: tuple[str, ...] = (), stdin: bytes | None = None) -> Result:
    """The CLI as a process, as ``tests.conftest.run_cli`` runs it, optionally under ``prefix``."""
    proc = subprocess.run(
        [*prefix, sys.executable, "-m", "clusterdeck.app.cli", *args],
        capture_output=True,
        input=stdin,
        timeout=120,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        cwd=REPO,
    )
    return Result(proc.returncode, proc.stdout.decode(errors="replace"), proc.stderr.decode(errors="replace"))


# ---- bad spec files -------------------------------------------------------------------------------------------

GOOD_SPEC = """
name = "good"
[cluster]
executor = "local"
[shard]
output = "{out}"
shard_size_mb = 0.3
[shard.train]
input = "{train}"
"""


def spec_bytes(data: bytes | str, name: str = "s.toml") -> Setup:
    def setup(case: Path, run: Path) -> str:
        path = case / name
        path.write_bytes(data.encode() if isinstance(data, str) else data)
        return str(path)

    return setup


def spec_with(extra: str = "", *, old: str = "", new: str = "") -> Setup:
    """The good spec with ``extra`` TOML added at its end, and ``old`` (a line's start, whole line) as ``new``."""

    def setup(case: Path, run: Path) -> str:
        data = SampleData(run.parent.parent / "data", [])
        good = GOOD_SPEC.format(out=case / "out", train=data.train)
        lines = [new if old and line.startswith(old) else line for line in good.splitlines()]
        path = case / "s.toml"
        path.write_text("\n".join(lines) + "\n" + extra)
        return str(path)

    return setup


def _huge(case: Path, run: Path) -> str:
    path = case / "huge.toml"
    with open(path, "wb") as f:  # 100 MB, sparse: refused from its first MiB, never read whole
        f.truncate(100 * 1024 * 1024)
    return str(path)


def _directory(case: Path, run: Path) -> str:
    (case / "dir.toml").mkdir()
    return str(case / "dir.toml")


def _unreadable(case: Path, run: Path) -> str:
    path = Path(spec_with()(case, run))
    path.chmod(0)
    return str(path)


def _socket(case: Path, run: Path) -> str:
    path = case / "spec.sock"  # opening a socket file fails for root too
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(path))
    sock.close()
    return str(path)


def _dangling(case: Path, run: Path) -> str:
    (case / "s.toml").symlink_to(case / "gone.toml")
    return str(case / "s.toml")


SUBMIT = ("submit", "{}")
SPEC_CASES = [
    Case("spec: UTF-16 (the report's printf)", spec_bytes(b"\xff\xfe name = 1"), SUBMIT, 2, ("{}", "UTF-16")),
    Case("spec: latin-1 text", spec_bytes(b'name = "caf\xe9"\n'), SUBMIT, 2, ("{}", "not UTF-8", "line 1")),
    Case("spec: binary", spec_bytes(b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR"), SUBMIT, 2, ("{}", "binary")),
    Case("spec: empty", spec_bytes(b""), SUBMIT, 2, ("{}", "empty")),
    Case("spec: only comments", spec_bytes("# a spec\n\n"), SUBMIT, 2, ("{}", "empty")),
    Case("spec: huge (100 MB)", _huge, SUBMIT, 2, ("{}", "larger than 1 MiB")),
    Case("spec: a directory", _directory, SUBMIT, 2, ("{}", "is a directory")),
    Case("spec: unreadable (chmod 000)", _unreadable, SUBMIT, 2, ("{}", "Permission denied"), no_dac=True),
    Case("spec: a socket", _socket, SUBMIT, 2, ("{}", "cannot read")),
    Case("spec: a dangling symlink", _dangling, SUBMIT, 2, ("{}", "not found")),
    Case("spec: UTF-8 BOM, then a wrong type", spec_bytes(b"\xef\xbb\xbfname = 5\n"), SUBMIT, 2, ("{}: name:",)),
    Case("spec: not TOML", spec_bytes("name = \n[[[\n"), SUBMIT, 2, ("{}", "invalid TOML")),
    Case("spec: only a name", spec_bytes('name = "x"\n'), SUBMIT, 2, ("{}", "nothing to run")),
    Case("spec: name is a number", spec_with(old="name", new="name = 5"), SUBMIT, 2, ("{}: name:",)),
    Case(
        "spec: cluster is a number",
        spec_bytes('name = "x"\ncluster = 3\n'),
        SUBMIT,
        2,
        ("{}: cluster:",),
    ),
    Case(
        "spec: cluster.executor", spec_with(old="executor", new="executor = 3"), SUBMIT, 2, ("{}: cluster.executor:",)
    ),
    Case(
        "spec: [[shard]] an array", spec_bytes('name = "x"\n[[shard]]\noutput = "/tmp/o"\n'), SUBMIT, 2, ("{}: shard:",)
    ),
    Case("spec: shard.output", spec_with(old="output", new="output = 3"), SUBMIT, 2, ("{}: shard.output:",)),
    Case("spec: shard.val.input", spec_with("[shard.val]\ninput = [1]\n"), SUBMIT, 2, ("{}: shard.val.input:",)),
    Case(
        "spec: shard.resources.mem_gb inf",
        spec_with("[shard.resources]\nmem_gb = inf\n"),
        SUBMIT,
        2,
        ("{}: shard.resources.mem_gb:", "finite"),
    ),
    Case("spec: shard.seed negative", spec_with(old="shard_size_mb", new="seed = -1"), SUBMIT, 2, ("{}: shard.seed:",)),
    Case("spec: train.seed negative", spec_with("[train]\nseed = -1\n"), SUBMIT, 2, ("{}: train.seed:",)),
    Case("spec: train.epochs", spec_with('[train]\nepochs = "ten"\n'), SUBMIT, 2, ("{}: train.epochs:",)),
    Case("spec: train.stage", spec_with("[train]\nstage = 5\n"), SUBMIT, 2, ("{}: train.stage:",)),
    Case(
        "spec: train.resources.gpus_per_node",
        spec_with("[train.resources]\ngpus_per_node = 1.5\n"),
        SUBMIT,
        2,
        ("{}: train.resources.gpus_per_node:",),
    ),
    Case(
        "spec: evaluate.batch_size",
        spec_with('[evaluate]\nbatch_size = "all"\n'),
        SUBMIT,
        2,
        ("{}: evaluate.batch_size:",),
    ),
    Case(
        "spec: export.size_gb",
        spec_with('[export]\nout = "/tmp/x"\nsize_gb = "big"\n'),
        SUBMIT,
        2,
        ("{}: export.size_gb:",),
    ),
    Case("spec: script.command empty", spec_with("[script]\ncommand = []\n"), SUBMIT, 2, ("{}: script.command:",)),
    Case(
        "spec: script.command not all text",
        spec_with('[script]\ncommand = ["python", 3]\n'),
        SUBMIT,
        2,
        ("{}: script.command.1:",),
    ),
    Case(
        "spec: script.workdir missing",
        spec_with('[script]\ncommand = ["x"]\nworkdir = "/nonexistent/dir"\n'),
        SUBMIT,
        2,
        ("{}: script.workdir:", "does not exist"),
    ),
    Case(
        "spec: script.env sets RANK",
        spec_with('[script]\ncommand = ["x"]\nenv = { RANK = "1" }\n'),
        SUBMIT,
        2,
        ("{}: script.env:", "set by clusterdeck"),
    ),
    Case(
        "spec: script.shards not a shard set",
        spec_with('[script]\ncommand = ["x"]\nshards = "/tmp"\n'),
        SUBMIT,
        2,
        ("script.shards:", "index.json"),
    ),
    Case(
        "spec: telemetry.interval_s",
        spec_with('[telemetry]\ninterval_s = "1s"\n'),
        SUBMIT,
        2,
        ("{}: telemetry.interval_s:",),
    ),
    Case("spec: --set onto a value", spec_with(), ("submit", "{}", "--set", "name.x=1"), 2, ("--set name.x=1",)),
    Case(
        "spec: nested 5000 levels deep",
        spec_bytes('name = "x"\na = ' + "[" * 5000 + "]" * 5000 + "\n"),
        SUBMIT,
        2,
        ("{}", "nested too deeply"),
    ),
    Case(
        "spec: --set nested 5000 levels deep",
        spec_with(),
        ("submit", "{}", "--set", "shard.seed=" + "[" * 5000),
        2,
        ("--set shard.seed=[[[", "nested too deeply"),
    ),
]


# ---- damaged records of a finished run ----------------------------------------------------------------------


def write(name: str, data: bytes | str) -> Setup:
    def setup(case: Path, run: Path) -> str:
        path = run / name
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(data.encode() if isinstance(data, str) else data)
        return ""

    return setup


def truncate(name: str, keep: float = 0.5) -> Setup:
    def setup(case: Path, run: Path) -> str:
        data = (run / name).read_bytes()
        (run / name).write_bytes(data[: int(len(data) * keep)])
        return ""

    return setup


def remove(name: str) -> Setup:
    def setup(case: Path, run: Path) -> str:
        (run / name).unlink()
        return ""

    return setup


def chmod0(name: str) -> Setup:
    def setup(case: Path, run: Path) -> str:
        (run / name).chmod(0)
        return ""

    return setup


def unfinished(damage: Setup) -> Setup:
    """``damage``, to a run that ended without its final state cached yet in ``run.json`` (as a run is when
    nothing has looked at it since its last job ended): listing it must not cache it into a damaged run."""

    def setup(case: Path, run: Path) -> str:
        record = json.loads((run / "run.json").read_text())
        record["final"] = None
        (run / "run.json").write_text(json.dumps(record))
        return damage(case, run)

    return setup


def status_dir(case: Path, run: Path) -> str:
    (run / "status" / "shard.2.main.json").mkdir()
    return ""


STATUS = "status/shard.1.main.json"
DAMAGES: list[tuple[str, Setup, str, str]] = [
    # (label, damage, the file as ls names it, what is wrong)
    ("run.json truncated", truncate("run.json"), "run.json", "truncated JSON"),
    ("run.json empty", write("run.json", b""), "run.json", "empty"),
    ("run.json foreign JSON", write("run.json", '{"hello": "world"}'), "run.json", "not a run record"),
    ("run.json a JSON list", write("run.json", "[1, 2, 3]"), "run.json", "not a run record"),
    ("run.json binary", write("run.json", b"\x00\x01\xff" * 20), "run.json", "binary"),
    ("spec.json truncated", truncate("spec.json", 0.3), "spec.json", "truncated JSON"),
    ("spec.json empty", write("spec.json", b"\n"), "spec.json", "empty"),
    ("spec.json foreign", write("spec.json", '{"name": "x", "shard": 3}'), "spec.json", "shard: not a table"),
    ("spec.json missing", remove("spec.json"), "spec.json", "missing"),
    ("status truncated", truncate(STATUS), STATUS, "truncated JSON"),
    ("status empty", write(STATUS, b""), STATUS, "empty"),
    ("status foreign", write(STATUS, '{"state": "DONE"}'), STATUS, "not a part status"),
    ("status a directory", status_dir, "status/shard.2.main.json", "cannot be read"),
]
RECORD_CASES = [
    case
    for label, damage, name, problem in DAMAGES
    for case in (
        Case(label, damage, ("ls",), 0, ("DAMAGED", name, problem)),
        Case(label, damage, ("show", "RUN"), 2, (f"@/{name}", problem, "is damaged")),
        Case(label, damage, ("logs", "RUN"), 2, (f"@/{name}", problem)),
        Case(label, damage, ("resume", "RUN"), 2, (f"@/{name}", problem)),
    )
] + [
    Case("run.json foreign JSON", write("run.json", "[1, 2, 3]"), ("ls", "--json"), 0, ('"damaged": "run.json: not',)),
    Case("spec.json truncated", truncate("spec.json"), ("ls", "--json"), 0, ('"damaged": "spec.json: truncated',)),
    Case("status empty", write(STATUS, b""), ("ls", "--json"), 0, (f'"damaged": "{STATUS}: empty',)),
    Case(
        "spec.json truncated, the final state not cached yet",
        unfinished(truncate("spec.json", 0.3)),
        ("ls",),
        0,
        ("DAMAGED", "spec.json", "truncated JSON"),
    ),
    Case(
        "spec.json missing, the final state not cached yet",
        unfinished(remove("spec.json")),
        ("ls", "--json"),
        0,
        ('"damaged": "spec.json: missing',),
    ),
    Case(
        "run.json unreadable (chmod 000)",
        chmod0("run.json"),
        ("ls",),
        0,
        ("DAMAGED", "run.json", "Permission"),
        no_dac=True,
    ),
    Case(
        "run.json unreadable (chmod 000)",
        chmod0("run.json"),
        ("show", "RUN"),
        2,
        ("@/run.json", "Permission"),
        no_dac=True,
    ),
    Case(
        "a run directory unreadable (chmod 000)",
        chmod0("."),
        ("ls",),
        0,
        ("DAMAGED", "run.json", "Permission"),
        no_dac=True,
    ),
]

# ---- appended records, and what else a runs root may hold --------------------------------------------------

GOOD_LINE = '{"time": 1.0, "kind": "train", "node": "n", "rank": 0, "attempt": 1, "step": 1, "loss": 2.5}\n'
OTHER_CASES = [
    Case(
        "metrics.jsonl: a foreign record, a cut-off last line",
        write("metrics.jsonl", GOOD_LINE + '{"time": "noon", "kind": "train"}\n["x"]\n{"time": 2.0, "ki'),
        ("metrics", "RUN"),
        0,
        ("@/metrics.jsonl", "3 line(s)", "line 2"),
    ),
    Case("metrics.jsonl damaged", write("metrics.jsonl", b"\x00garbage\n"), ("ls",), 0, ("COMPLETED",)),
    Case(
        "telemetry file: binary",
        write("telemetry/9_0.jsonl", b"\xff\xfe\x00\x01\n" * 3),
        ("metrics", "RUN"),
        0,
        ("@/telemetry/9_0.jsonl", "3 line(s)"),
    ),
    Case(
        "telemetry file: JSON of another kind",
        write("telemetry/9_1.jsonl", '{"time": 1, "rank": "zero"}\n'),
        ("metrics", "RUN", "--json"),
        0,
        ("@/telemetry/9_1.jsonl", "1 line(s)"),
    ),
]


def _stray(case: Path, run: Path) -> str:
    stray = run.parent / "notes"
    stray.mkdir()
    (stray / "todo.txt").write_text("not a run\n")
    (run.parent / "README").write_text("a stray file\n")
    return str(stray)


def _root_unreadable(case: Path, run: Path) -> str:
    run.parent.chmod(0)
    return str(run.parent)


OTHER_CASES += [
    Case("the runs root unreadable (chmod 000)", _root_unreadable, ("ls",), 2, ("{}", "Permission"), no_dac=True),
    Case("a stray non-run directory in the runs root", _stray, ("ls",), 0, ("COMPLETED",)),
    Case("a stray non-run directory in the runs root", _stray, ("show", "notes"), 2, ("{}", "not a run")),
]

CASES = SPEC_CASES + RECORD_CASES + OTHER_CASES


# ---- running a case -------------------------------------------------------------------------------------------


def listed(out: str) -> list[dict[str, object]]:
    """The runs of ``ls --json``."""
    runs: list[dict[str, object]] = json.loads(out)["runs"]
    return runs


def make_finished_run(data: SampleData, root: Path) -> Path:
    """A real finished run (a small shard step on the local executor), to damage copies of."""
    spec = root / "spec.toml"
    spec.write_text(shard_spec(data, root / "shards"))
    done = cli("--runs-root", str(root / "runs"), "submit", str(spec), "--wait")
    assert done.code == 0, done.err
    (run,) = [p for p in (root / "runs").iterdir() if p.is_dir()]
    return run


def snapshot(root: Path) -> dict[str, tuple[bytes, int] | None]:
    """Every file under ``root``: its bytes and mtime (directories: None), to show that reading wrote nothing.

    But for the runs root's index of ended runs: a listing adds a healthy ended run to it, as it caches a
    final state; that a damaged run is never added is checked apart (``indexed``)."""
    found: dict[str, tuple[bytes, int] | None] = {}
    for path in sorted(p for p in root.rglob("*") if p != root / INDEX_NAME):
        st = path.lstat()
        rel = str(path.relative_to(root))
        if path.is_dir():
            found[rel] = None
        elif st.st_mode & 0o444 == 0:  # unreadable on purpose: its mtime says enough
            found[rel] = (b"", st.st_mtime_ns)
        else:
            found[rel] = (path.read_bytes() if not path.is_socket() else b"", st.st_mtime_ns)
    return found


def indexed(root: Path) -> set[str]:
    """The run directories the runs root's index has an ``ended`` line for."""
    index = root / INDEX_NAME
    lines = index.read_text().splitlines() if index.exists() else []
    return {json.loads(line)[1] for line in lines if line.startswith('["ended"')}


def run_case(case: Case, pristine: Path, where: Path) -> tuple[Result, str, Path]:
    """Sets the case up in ``where`` from a copy of the pristine runs root; returns (result, setup's value, run).

    The copy's index of ended runs is left out: an ended run the index has is listed from it, unread
    (``jobs.runindex``: damage done to it afterwards is named by show, logs and resume); these cases are
    about a run whose files a listing reads, as it reads a live run's or one not indexed yet."""
    if case.no_dac:
        needs_root("setpriv, to drop the capabilities that let root ignore file modes")
    shutil.copytree(pristine.parent.parent, where, symlinks=True)
    (where / "runs" / INDEX_NAME).unlink(missing_ok=True)
    run = where / "runs" / pristine.name
    value = case.setup(where, run)
    before = snapshot(where / "runs")
    args = [a.replace("{}", value).replace("RUN", run.name) for a in case.command]
    result = cli("--runs-root", str(where / "runs"), *args, prefix=NO_DAC if case.no_dac else ())
    after = snapshot(where / "runs")
    assert after == before, (
        f"{case.id}: reading changed {sorted(k for k in after.keys() | before.keys() if after.get(k) != before.get(k))}"
    )
    return result, value, run


@pytest.fixture(scope="module")
def pristine(sample_data: SampleData, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("pristine")
    shutil.copytree(sample_data.root, root / "data")
    return make_finished_run(SampleData(root / "data", sample_data.wnids), root)


def test_the_table_has_every_kind_of_bad_input() -> None:
    assert len(CASES) >= 25
    labels = " ".join(c.label for c in CASES)
    for kind in ("binary", "empty", "huge", "directory", "unreadable", "BOM", "run.json", "spec.json", "status",
                 "metrics", "telemetry", "stray"):  # fmt: skip
        assert kind in labels, kind
    sections = {
        c.named[0].split(": ")[1].rstrip(":").split(".")[0] for c in SPEC_CASES if c.named[0].startswith("{}: ")
    }
    assert {"name", "cluster", "shard", "train", "evaluate", "export", "telemetry"} <= sections


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input_is_named_without_a_traceback(case: Case, pristine: Path, tmp_path: Path) -> None:
    result, value, run = run_case(case, pristine, tmp_path / "case")
    assert "Traceback" not in result.err and "Traceback" not in result.out
    assert result.code == case.code, (result.out, result.err)
    wanted = [n.replace("{}", value).replace("@", str(run)) for n in case.named]
    if case.command[0] == "ls" and case.code == 0 and "--json" not in case.command:
        (row,) = [line for line in result.out.splitlines() if line.startswith(run.name)]
        assert all(w in row for w in wanted), row
    elif case.command[0] == "ls" and case.code == 0:
        (entry,) = [e for e in listed(result.out) if e["run_id"] == run.name]
        assert all(w in json.dumps(entry) for w in wanted), entry
    else:
        assert all(w in result.err for w in wanted), result.err
    if case.command[0] == "ls" and any("DAMAGED" in n or '"damaged"' in n for n in case.named):
        assert run.name not in indexed(tmp_path / "case" / "runs")  # a damaged run is not indexed
    if case.code == 2:
        assert len(result.err.strip().splitlines()) == 1, result.err  # one line
        assert result.err.startswith("clusterdeck: error: ")
    if case.command[0] == "submit":
        runs = [p.name for p in (tmp_path / "case" / "runs").iterdir() if p.is_dir()]
        assert runs == [run.name]  # no run was made


async def test_the_app_lists_a_damaged_run_and_names_the_file_when_it_is_opened(tmp_path: Path) -> None:
    from textual.widgets import DataTable

    from clusterdeck.app.tui.app import make_app
    from clusterdeck.app.tui.detail import RunDetailScreen
    from tests.conftest import until
    from tests.test_snapshots import make_run

    root = tmp_path / "runs"
    make_run(root, "20261120-100000-aaaaaa", "whole", 0.1, 2, [0.3, 0.5])
    damaged = make_run(root, "20261121-100000-bbbbbb", "damaged", 0.1, 2, [0.3, 0.5])
    truncate("run.json")(tmp_path, damaged.root)
    before = snapshot(root)
    app = make_app(root)
    async with app.run_test(size=(120, 30)) as pilot:
        table = app.screen.query_one(DataTable)
        await until(pilot, lambda: table.row_count == 2)
        row = [str(c) for c in table.get_row(damaged.run_id)]
        assert row[3] == "DAMAGED" and row[2].startswith("run.json: truncated JSON"), row
        table.move_cursor(row=table.get_row_index(damaged.run_id))
        await pilot.press("enter")
        screen = app.screen
        assert isinstance(screen, RunDetailScreen)
        await until(pilot, lambda: f"{damaged.record}: truncated JSON" in screen.trouble)
    assert snapshot(root) == before
    assert damaged.run_id not in indexed(root)


def main() -> None:
    """The table for the closing note: input → command → exit code → message (first line)."""
    import tempfile

    from clusterdeck.jobs.sample_data import make_sample_data

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "pristine"
        data = make_sample_data(root / "data", classes=3, train_per_class=6, val_per_class=2, seed=1)
        run = make_finished_run(data, root)
        print("| input | command | exit | message |\n|---|---|---|---|")
        for k, case in enumerate(CASES):
            result, _, _ = run_case(case, run, Path(tmp) / f"case{k}")
            if case.command[0] == "ls" and case.code == 0 and "--json" not in case.command:
                text = next((line for line in result.out.splitlines() if line.startswith(run.name)), "")
            elif case.command[0] == "ls" and case.code == 0:
                entry = next(e for e in listed(result.out) if e["run_id"] == run.name)
                text = f"state {entry['state']}, damaged: {entry.get('damaged')}"
            else:
                text = (result.err.strip().splitlines() or [""])[0]
            text = " ".join(text.replace(tmp, "…").split()).replace("|", "\\|")
            print(f"| {case.label} | clusterdeck {' '.join(case.command)} | {result.code} | {text} |")


if __name__ == "__main__":
    main()
