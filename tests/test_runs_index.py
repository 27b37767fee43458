"""The runs root's index of ended runs (``jobs.runindex``): ``ls`` and the app read it and the live runs' records
only, list what they listed before it, survive concurrent writers, a torn line and its loss, and never show a
live run as ended."""

from __future__ import annotations

import itertools
import json
import multiprocessing
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psutil

from clusterdeck.jobs import atomic, runindex
from clusterdeck.jobs.overview import Overview
from clusterdeck.jobs.records import Attempt, JobRef, RunRecord, StepRecord, save_record
from clusterdeck.jobs.rundir import RunPaths
from clusterdeck.jobs.runindex import INDEX_NAME, RunsIndex
from clusterdeck.jobs.sample_data import SampleData
from tests.conftest import REPO, copy_with_stuck_file, run_cli, shard_spec
from tests.test_snapshots import make_run


def mixed_root(root: Path) -> dict[str, str]:
    """Runs of every kind a listing meets, by kind: ended with their final state cached (train runs with
    figures), ended without it cached yet, live (a local job: this test's own process), damaged, and a
    directory that is no run."""
    runs = {f"ended{k}": make_run(root, f"20261120-10000{k}-aaaaa{k}", f"sweep-{k}", 0.1, 2, [0.3, 0.5 + k / 10])
            for k in range(3)}  # fmt: skip
    uncached = make_run(root, "20261121-100000-bbbbbb", "uncached", 0.2, 1, [0.4])
    record = json.loads(uncached.record.read_text())
    record["final"] = None  # its job ended (no such process) and its status says COMPLETED: ended at the next look
    atomic.write_json(uncached.record, record)
    live = live_run(root, "20261122-100000-cccccc", "live")
    damaged = make_run(root, "20261123-100000-dddddd", "damaged", 0.1, 1, [0.2])
    damaged.record.write_text(damaged.record.read_text()[:40])
    (root / "20261124-notes").mkdir()
    return {
        **{kind: paths.run_id for kind, paths in runs.items()},
        "uncached": uncached.run_id,
        "live": live.run_id,
        "damaged": damaged.run_id,
    }


def live_run(root: Path, run_id: str, name: str) -> RunPaths:
    """A run whose local job is this process: RUNNING while the test runs."""
    paths = RunPaths(root / run_id)
    paths.root.mkdir(parents=True)
    atomic.write_json(paths.spec, {"name": name, "cluster": {"executor": "local"}})
    pid, started = os.getpid(), psutil.Process().create_time()
    job = JobRef(job_id=str(pid), submitted_at=started, parts=["main"], pid_started_at=started)
    steps = [StepRecord(name="train", attempts=[Attempt(number=1, submitted_at=started, jobs=[job])])]
    save_record(paths, RunRecord(run_id=run_id, name=name, created_at=started, executor="local", steps=steps))
    return paths


def ls_json(root: Path) -> dict[str, Any]:
    done = run_cli("--runs-root", str(root), "ls", "--json")
    assert done.code == 0, done.err
    doc: dict[str, Any] = json.loads(done.out)
    return doc


def index_lines(root: Path) -> list[list[Any]]:
    return [json.loads(line) for line in (root / INDEX_NAME).read_text().splitlines() if line.strip()]


_OPENED: list[str] | None = None


def _count_opens(event: str, args: tuple[object, ...]) -> None:
    if event == "open" and _OPENED is not None and args and isinstance(args[0], (str, Path)):
        _OPENED.append(str(args[0]))


def test_ls_lists_from_the_index_what_it_listed_from_the_records(tmp_path: Path) -> None:
    root = tmp_path / "runs"
    kinds = mixed_root(root)
    before = ls_json(root)  # no index yet: every record read, as ls always did
    text_before = run_cli("--runs-root", str(root), "ls").out
    ended = {kinds[k] for k in ("ended0", "ended1", "ended2", "uncached")}
    assert {line[1] for line in index_lines(root) if line[0] == "ended"} == ended
    after = ls_json(root)
    assert after == before
    assert [e["run_id"] for e in after["runs"]] == sorted(kinds.values())  # oldest first, the stray left out
    states = {e["run_id"]: e["state"] for e in after["runs"]}
    assert (states[kinds["live"]], states[kinds["damaged"]], states[kinds["uncached"]]) == (
        "RUNNING",
        "DAMAGED",
        "COMPLETED",
    )
    assert {e["best_top1"] for e in after["runs"] if e["run_id"] in ended} == {0.5, 0.6, 0.7, 0.4}
    text_after = run_cli("--runs-root", str(root), "ls").out

    def fixed(text: str) -> list[str]:  # a live run's elapsed time goes on
        return [line.rsplit(None, 1)[0] if kinds["live"] in line else line for line in text.splitlines()]

    assert fixed(text_after) == fixed(text_before)

    global _OPENED
    sys.addaudithook(_count_opens)  # a hook stays for the process: it counts only while _OPENED is a list
    _OPENED = []
    try:
        Overview(root).listing()
        opened = list(_OPENED)
    finally:
        _OPENED = None
    records = sorted(Path(p).parent.name for p in opened if p.endswith("run.json"))
    # the ended runs' come from the index; the stray directory is looked into for one, as any directory is
    assert records == sorted([kinds["live"], kinds["damaged"], "20261124-notes"])


def test_the_index_is_readable_by_the_group_as_the_umask_allows(tmp_path: Path) -> None:
    """Made by a rebuild (a listing) or by an append (a resume): the mode a plain ``open()`` gives."""
    append = (
        "import sys; from pathlib import Path; from clusterdeck.jobs import runindex; "
        "runindex.reopen(Path(sys.argv[1]), 'r', 2)"
    )
    for umask in (0o022, 0o002):
        listed, resumed = tmp_path / f"listed{umask:03o}", tmp_path / f"resumed{umask:03o}"
        make_run(listed, "20261120-100000-aaaaaa", "one", 0.1, 1, [0.3])
        resumed.mkdir()
        for command in (f"-m clusterdeck.app.cli --runs-root {listed} ls", f'-c "{append}" {resumed}'):
            shell = f"umask {umask:03o}; exec {sys.executable} {command}"
            subprocess.run(["bash", "-c", shell], check=True, capture_output=True, cwd=REPO)
        for root in (listed, resumed):
            assert (root / INDEX_NAME).stat().st_mode & 0o777 == 0o666 & ~umask, root


def _append_many(root: str, writer: int, count: int, start: Any) -> None:
    start.wait()
    for k in range(count):
        name = (f"w{writer}-{k}-" * 400)[: 3500 if k % 7 == 0 else 12]  # some lines near LINE_MAX
        entry = {"run_id": f"w{writer}-{k}", "name": name, "state": "COMPLETED", "executor": "local",
                 "created_at": 1.5, "ended_at": 2.5, "steps": {"train": "COMPLETED"}, "progress": 1.0,
                 "nodes": 1, "gpus": 0, "images_per_s": None, "best_top1": None}  # fmt: skip
        line = runindex.ended_line(f"w{writer}-{k}", 1, entry)
        assert line is not None
        runindex.append(Path(root), [line])


def test_two_writers_appending_at_once_lose_nothing_and_tear_nothing(tmp_path: Path) -> None:
    count = 20000
    context = multiprocessing.get_context("fork")
    start = context.Barrier(2)
    writers = [context.Process(target=_append_many, args=(str(tmp_path), w, count, start)) for w in (0, 1)]
    for p in writers:
        p.start()
    for p in writers:
        p.join(120)
    assert [p.exitcode for p in writers] == [0, 0]
    data = (tmp_path / INDEX_NAME).read_bytes()
    assert data.endswith(b"\n")
    # an empty line may stand between two: a writer that saw the other's line half-written began on a new one
    lines = [line for line in data.split(b"\n") if line]
    parsed = [json.loads(line) for line in lines]  # every line whole: none torn, none run into another
    assert max(len(line) for line in lines) > 3000
    assert sorted(f[1] for f in parsed) == sorted(f"w{w}-{k}" for w in (0, 1) for k in range(count))
    writer_of = [f[1][1] for f in parsed]
    assert sum(a != b for a, b in itertools.pairwise(writer_of)) > 1  # they did write at once
    index = RunsIndex(tmp_path)
    index.refresh()
    assert (len(index.ended), index.bad, index.torn) == (2 * count, 0, False)


def test_refresh_reads_only_what_was_appended(tmp_path: Path) -> None:
    root = tmp_path / "runs"
    for k in range(3):
        make_run(root, f"20261120-10000{k}-aaaaa{k}", f"r{k}", 0.1, 1, [0.3])
    overview = Overview(root)
    overview.listing()  # no index yet: made from the records
    first = overview.listing()
    index = overview.index
    file_id, offset = index.file_id, index.offset
    entry = index.covered("20261120-100000-aaaaa0")
    assert entry is not None and offset == (root / INDEX_NAME).stat().st_size
    make_run(root, "20261121-100000-bbbbbb", "late", 0.1, 1, [0.3])
    second = overview.listing()  # the new run read from its record, and its line appended
    assert len(second) == 4 and second[:3] == first
    assert index.file_id == file_id and index.offset == offset
    overview.listing()
    assert index.file_id == file_id and index.offset > offset  # the appended line read, nothing before it
    assert index.covered("20261120-100000-aaaaa0") is entry  # the same entry: the app keeps its row
    assert index.covered("20261121-100000-bbbbbb") is not None and index.lines == 4


def test_a_torn_last_line_is_passed_over_and_then_mended(tmp_path: Path) -> None:
    root = tmp_path / "runs"
    mixed_root(root)
    before = ls_json(root)
    index = root / INDEX_NAME
    data = index.read_bytes()
    index.write_bytes(data[: len(data) - 30])  # a writer that died in the middle of its line
    torn = RunsIndex(root)
    torn.refresh()
    assert torn.torn and torn.bad == 0 and len(torn.ended) == 3
    assert ls_json(root) == before  # the run whose line was torn read from its record, its line appended
    assert index.read_bytes().startswith(data[: len(data) - 30] + b"\n")
    damaged = RunsIndex(root)
    damaged.refresh()
    assert (damaged.bad, damaged.torn, len(damaged.ended)) == (1, False, 4)
    assert ls_json(root) == before  # the torn piece makes the index damaged: rebuilt
    mended = RunsIndex(root)
    mended.refresh()
    assert (mended.bad, len(mended.ended), mended.lines) == (0, 4, 4)


def test_a_deleted_or_damaged_index_is_rebuilt_from_the_records(tmp_path: Path) -> None:
    root = tmp_path / "runs"
    mixed_root(root)
    before = ls_json(root)
    lines = index_lines(root)
    (root / INDEX_NAME).unlink()
    assert ls_json(root) == before
    assert sorted(index_lines(root), key=str) == sorted(lines, key=str)
    data = (root / INDEX_NAME).read_bytes()
    cut = data.index(b"\n") + 1
    (root / INDEX_NAME).write_bytes(data[:cut] + b"\x00\x00not an index line\n[1, 2]\n" + data[cut:])
    assert ls_json(root) == before
    assert sorted(index_lines(root), key=str) == sorted(lines, key=str)  # the garbage gone, nothing else


def _wait_for_state(run_id: str, done: Any, timeout: float = 60) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        view: dict[str, Any] = json.loads(run_cli("show", run_id, "--json").out)
        if done(view):
            return view
        assert time.monotonic() < deadline, f"timed out; the run is {view['state']}"
        time.sleep(0.2)


def test_a_resumed_run_is_listed_live_until_it_ends_again(sample_data: SampleData, tmp_path: Path, home: Path) -> None:
    """The run's shard step blocks on a FIFO in its input (a hung file), so it is live for as long as the test
    needs: cancelled, listed ended (and indexed), resumed: listed RUNNING, whatever the index held, even with
    an ended line of the earlier attempt appended late, as by a listing that read the record before the
    resume; cancelled again: listed ended, from the index."""
    data, _ = copy_with_stuck_file(sample_data, tmp_path, 2, 5)
    spec = tmp_path / "spec.toml"
    spec.write_text(shard_spec(data, tmp_path / "shards"))
    submitted = run_cli("submit", str(spec), "--json")
    assert submitted.code == 0, submitted.err
    run_id = json.loads(submitted.out)["run_id"]
    root = home / "runs"
    _wait_for_state(run_id, lambda v: v["state"] == "RUNNING")
    assert run_cli("cancel", run_id).code == 0
    _wait_for_state(run_id, lambda v: v["state"] not in ("RUNNING", "PENDING"))
    (cancelled,) = ls_json(root)["runs"]
    assert cancelled["state"] == "CANCELLED"
    assert [line[:3] for line in index_lines(root)] == [["ended", run_id, 1]]

    resumed = run_cli("resume", run_id)
    assert resumed.code == 0, resumed.err
    assert ["reopened", run_id, 2] in index_lines(root)
    (listed,) = ls_json(root)["runs"]
    assert listed["state"] in ("PENDING", "RUNNING") and listed["ended_at"] is None
    late = runindex.ended_line(run_id, 1, cancelled)  # a listing that read the record just before the resume
    assert late is not None
    runindex.append(root, [late])
    _wait_for_state(run_id, lambda v: v["state"] == "RUNNING")
    (listed,) = ls_json(root)["runs"]
    assert listed["state"] == "RUNNING"

    assert run_cli("cancel", run_id).code == 0
    _wait_for_state(run_id, lambda v: v["state"] not in ("RUNNING", "PENDING"))
    (again,) = ls_json(root)["runs"]
    assert again["state"] == "CANCELLED" and again["ended_at"] > cancelled["ended_at"]
    assert ["ended", run_id, 2] in [line[:3] for line in index_lines(root)]
    index = RunsIndex(root)
    index.refresh()
    assert index.covered(run_id) == again
