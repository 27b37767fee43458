"""Run records: unique time-sorted ids under concurrent submits, addressing, and a fast ls."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import pytest

from clusterdeck.jobs import atomic
from clusterdeck.jobs.errors import RunNotFound
from clusterdeck.jobs.records import Attempt, FinalState, JobRef, RunRecord, StepRecord, save_record
from clusterdeck.jobs.runs import create_run_dir, list_runs, resolve_run
from tests.conftest import REPO


def _make_ids(root: str) -> list[str]:
    return [create_run_dir(Path(root)).run_id for _ in range(50)]


def fake_record(root: Path, name: str, state: str | None = "COMPLETED", at: float | None = None) -> RunRecord:
    paths = create_run_dir(root)
    t = at or time.time()
    job = JobRef(job_id="1", submitted_at=t, parts=["main"])
    record = RunRecord(
        run_id=paths.run_id,
        name=name,
        created_at=t,
        executor="local",
        steps=[StepRecord(name="shard", attempts=[Attempt(number=1, submitted_at=t, jobs=[job])])],
        final=FinalState(state=state, ended_at=t + 5, steps={"shard": state}) if state else None,
    )
    atomic.write_json(paths.spec, {"name": name, "cluster": {"executor": "local"}})  # every run has its spec
    save_record(paths, record)
    return record


def test_ids_are_unique_under_concurrent_creation(tmp_path: Path) -> None:
    with ProcessPoolExecutor(4) as pool:
        ids = [i for chunk in pool.map(_make_ids, [str(tmp_path)] * 4) for i in chunk]
    assert len(ids) == len(set(ids)) == 200
    assert sorted(os.listdir(tmp_path)) == sorted(ids)


def test_ids_sort_by_creation_time(tmp_path: Path) -> None:
    first = create_run_dir(tmp_path).run_id
    time.sleep(1.1)
    second = create_run_dir(tmp_path).run_id
    assert first < second


def test_runs_are_addressed_by_id_unique_prefix_or_name(tmp_path: Path) -> None:
    a = fake_record(tmp_path, "alpha")
    fake_record(tmp_path, "beta")
    fake_record(tmp_path, "beta")
    assert resolve_run(tmp_path, a.run_id).run_id == a.run_id
    assert resolve_run(tmp_path, a.run_id[:-1]).run_id == a.run_id
    assert resolve_run(tmp_path, "alpha").run_id == a.run_id
    with pytest.raises(RunNotFound, match="ambiguous"):
        resolve_run(tmp_path, a.run_id[:4])  # the year: shared by all three
    with pytest.raises(RunNotFound, match="used by 2 runs"):
        resolve_run(tmp_path, "beta")
    with pytest.raises(RunNotFound, match="no run 'gamma'"):
        resolve_run(tmp_path, "gamma")
    assert [r.run_id for r in list_runs(tmp_path)] == sorted(r.run_id for r in list_runs(tmp_path))


def test_ls_of_a_thousand_runs_never_imports_torch(tmp_path: Path) -> None:
    """What ``ls`` imports, checked here; how fast it is, measured by bench/ls.py against a bare interpreter."""
    root = tmp_path / "runs"
    for k in range(1000):
        fake_record(root, f"run-{k}", state="COMPLETED" if k % 3 else "FAILED")
    probe = (
        "import sys; from clusterdeck.app.cli import main; code = main(['ls']); "
        "sys.stderr.write(f'{code} {sorted(m for m in sys.modules "
        'if m.split(".")[0] in ("torch", "torchvision", "webdataset", "textual"))}\')'
    )
    env = {**os.environ, "CLUSTERDECK_HOME": str(tmp_path)}
    proc = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=env, cwd=REPO)
    code, heavy = proc.stderr.split(" ", 1)
    assert code == "0"
    assert heavy == "[]"
    assert proc.stdout.count("run-") == 1000
    assert proc.stdout.count("shard:FAILED") == 334


_OPENED: list[str] | None = None


def _count_opens(event: str, args: tuple[object, ...]) -> None:
    if event == "open" and _OPENED is not None and args and isinstance(args[0], (str, Path)):
        _OPENED.append(os.path.basename(args[0]))


def test_a_run_shown_reads_its_record_spec_and_statuses_once(tmp_path: Path) -> None:
    """``watch`` shows a run every few seconds: its files are read once per poll (checked, then shown from that)."""
    global _OPENED
    from clusterdeck.jobs.rundir import RunPaths
    from clusterdeck.jobs.status import view_run

    record = fake_record(tmp_path, "once")
    paths = RunPaths(tmp_path / record.run_id)
    status = paths.status_dir / "shard.1.main.json"
    status.parent.mkdir(exist_ok=True)
    part = {"step": "shard", "attempt": 1, "part": "main", "state": "COMPLETED", "node": "n", "started_at": 1.0}
    atomic.write_json(status, part)
    sys.addaudithook(_count_opens)  # a hook stays for the process: it counts only while _OPENED is a list
    _OPENED = []
    try:
        view = view_run(paths)
        opened = list(_OPENED)
    finally:
        _OPENED = None
    assert view.state == "COMPLETED"
    assert (opened.count("run.json"), opened.count("spec.json"), opened.count(status.name)) == (1, 1, 1), opened


def test_the_final_state_is_not_cached_over_a_record_changed_since_it_was_read(tmp_path: Path) -> None:
    """A ``resume`` adding an attempt while ``ls`` caches the final state it read earlier: the resume's stays."""
    from clusterdeck.jobs.records import load_record
    from clusterdeck.jobs.rundir import RunPaths
    from clusterdeck.jobs.status import RunView, _remember_final

    record = fake_record(tmp_path, "raced", state=None)
    paths = RunPaths(tmp_path / record.run_id)
    resumed = record.model_copy(update={"steps": [*record.steps, StepRecord(name="train", attempts=[])]})
    save_record(paths, resumed)  # the resume, between ls reading the record and caching its final state
    view = RunView(record.run_id, "raced", "COMPLETED", "local", record.created_at, 2.0, [], {}, str(paths.root))
    _remember_final(paths, record, view)
    assert load_record(paths) == resumed
    _remember_final(paths, resumed, view)  # unchanged since read: cached
    assert load_record(paths).final is not None


def test_ls_into_a_pipe_its_reader_closed_ends_quietly(tmp_path: Path) -> None:
    """``clusterdeck ls | head -1``: the reader leaves after one line; ls says nothing more and exits 0 (a
    BrokenPipeError is a ConnectionError too, which the network's handler must not take for its own)."""
    root = tmp_path / "runs"
    for k in range(1500):  # about 100 KB of lines: more than the pipe and head's first read hold
        fake_record(root, f"run-{k}")
    shell = f"{sys.executable} -m clusterdeck.app.cli --runs-root {root} ls | head -1; exit ${{PIPESTATUS[0]}}"
    proc = subprocess.run(["bash", "-c", shell], capture_output=True, text=True, timeout=120)
    assert proc.stdout.count("\n") == 1
    assert (proc.returncode, proc.stderr) == (0, "")
