"""The incremental readers: every line once and in order, whatever the writer does to its file."""

from __future__ import annotations

import os
import threading
import time
import tracemalloc
from pathlib import Path

from clusterdeck.jobs.records import Attempt, JobRef, RunRecord, StepRecord, save_record
from clusterdeck.jobs.rundir import RunPaths
from clusterdeck.jobs.tail.access import LocalFiles
from clusterdeck.jobs.tail.filetail import CHUNK, MAX_LINE, FileTail
from clusterdeck.jobs.tail.run import MAX_OPEN, RunLogs, RunMetrics


def follow_until(tail: FileTail, done: threading.Event) -> list[str]:
    lines: list[str] = []
    while not done.is_set():
        got = tail.poll()
        lines += got
        if not got and not tail.more:
            time.sleep(0.001)
    while True:
        lines += tail.poll(final=True)
        if not tail.more:
            return lines


def test_100000_lines_arrive_once_in_order_across_a_file_replaced_by_a_requeue(tmp_path: Path) -> None:
    log = tmp_path / "123_0_log.out"
    expected = [f"line {i} " + "x" * (i % 97) for i in range(100_000)]
    done = threading.Event()
    replaced_at = 60_000

    def append(lines: list[str], first: int) -> None:
        with open(log, "ab", buffering=0) as f:
            for i, line in enumerate(lines, start=first):
                data = (line + "\n").encode()
                if i % 1000 == 0:  # half a line, then the rest a moment later: the reader must wait for the newline
                    f.write(data[:5])
                    time.sleep(0.002)
                    f.write(data[5:])
                else:
                    f.write(data)
                if i % 5000 == 0:
                    time.sleep(0.01)

    def write() -> None:
        append(expected[:replaced_at], 0)
        fresh = tmp_path / "fresh"  # the requeued job's log: a new file under the same name
        fresh.write_bytes(b"")
        os.replace(fresh, log)
        append(expected[replaced_at:], replaced_at)
        done.set()

    tail = FileTail(LocalFiles(), str(log))
    writer = threading.Thread(target=write)
    writer.start()
    lines = follow_until(tail, done)
    writer.join()
    assert tail.restarts == 1
    assert len(lines) == len(expected)
    assert lines == expected


def test_a_replaced_file_is_read_to_its_end_before_the_new_one(tmp_path: Path) -> None:
    log = tmp_path / "log"
    log.write_text("old 1\n")
    tail = FileTail(LocalFiles(), str(log))
    assert tail.poll() == ["old 1"]
    with open(log, "a") as f:
        f.write("old 2\nold 3 without newline")  # written after the last poll, before the replacement
    fresh = tmp_path / "fresh"
    fresh.write_text("new 1\nnew 2\n")
    os.replace(fresh, log)
    assert tail.poll() + tail.poll() == ["old 2", "old 3 without newline", "new 1", "new 2"]
    assert tail.restarts == 1 and tail.poll() == []
    log.unlink()  # removed: nothing more, and no error
    assert tail.poll() == []


def test_a_file_truncated_and_rewritten_in_place_is_read_again_from_its_start(tmp_path: Path) -> None:
    log = tmp_path / "log"
    log.write_text("first start\n" * 3)
    tail = FileTail(LocalFiles(), str(log))
    assert tail.poll() == ["first start"] * 3
    inode = log.stat().st_ino
    with open(log, "w") as f:  # SLURM's default open mode on a requeue: same file, truncated, then longer than before
        f.write("second start, longer than the first\n" * 5)
    assert log.stat().st_ino == inode
    assert tail.poll() == ["second start, longer than the first"] * 5
    assert tail.restarts == 1
    with open(log, "w") as f:
        f.write("third\n")
    assert tail.poll() == ["third"]
    assert tail.restarts == 2


def test_a_partial_last_line_waits_for_its_newline_and_is_printed_when_final(tmp_path: Path) -> None:
    log = tmp_path / "log"
    tail = FileTail(LocalFiles(), str(log))
    assert tail.poll() == []  # no file yet
    log.write_bytes(b"one\r\ntw")
    assert tail.poll() == ["one"]
    with open(log, "ab") as f:
        f.write(b"o\nthree")
    assert tail.poll() == ["two"]
    assert tail.poll(final=True) == ["three"]
    assert tail.poll(final=True) == []


def test_memory_stays_bounded_on_a_large_log_and_an_endless_line(tmp_path: Path) -> None:
    log = tmp_path / "big"
    with open(log, "wb") as f:
        for _ in range(48):
            f.write((b"y" * 1023 + b"\n") * 1024)  # 48 MiB of lines
        f.write(b"z" * (5 * MAX_LINE + 10) + b"\n")  # one line of 5 MiB: cut, never held whole
    tail = FileTail(LocalFiles(), str(log))
    count = longest = 0
    tracemalloc.start()
    while True:
        lines = tail.poll(budget=2 * CHUNK)
        count += len(lines)
        longest = max([longest, *map(len, lines)])
        del lines
        if not tail.more:
            break
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert count == 48 * 1024 + 6
    assert longest == MAX_LINE
    assert peak < 12 * CHUNK, f"peak {peak / 2**20:.1f} MiB while reading a 53 MiB file"


def _run_with_jobs(root: Path, jobs: list[tuple[str, list[str]]]) -> RunPaths:
    paths = RunPaths(root / "run")
    paths.submitit.mkdir(parents=True)
    steps = [
        StepRecord(
            name=f"step{i}",
            attempts=[Attempt(number=1, submitted_at=0, jobs=[JobRef(job_id=job_id, submitted_at=0, parts=parts)])],
        )
        for i, (job_id, parts) in enumerate(jobs)
    ]
    save_record(paths, RunRecord(run_id="run", name="r", created_at=0, executor="slurm", steps=steps))
    return paths


def test_run_logs_cover_every_job_array_task_and_rank_in_order_and_filter_by_rank(tmp_path: Path) -> None:
    paths = _run_with_jobs(tmp_path, [("40", ["task-0", "task-1"]), ("41", ["main"]), ("45", ["main"])])
    names = ["40_0_0", "40_1_0", "40_10_0", "41_0", "41_1", "45_0"]
    for name in reversed(names):
        (paths.submitit / f"{name}_log.out").write_text(f"{name} a\n{name} b\n")
        (paths.submitit / f"{name}_log.err").write_text(f"{name} error\n")
    (paths.submitit / "4_0_log.out").write_text("another run's job 4\n")  # a prefix of 40/41/45, not theirs
    logs = RunLogs(paths)
    lines = logs.poll()
    assert [line for _, line in lines] == [f"{n} {x}" for n in names for x in "ab"]
    assert [(f.job_id, f.rank) for f, _ in lines[::2]] == [
        ("40_0", 0),
        ("40_1", 0),
        ("40_10", 0),
        ("41", 0),
        ("41", 1),
        ("45", 0),
    ]
    assert logs.poll() == []
    rank1 = RunLogs(paths, rank=1, err=True).poll()
    assert [line for _, line in rank1] == ["41_1 error"]


def test_run_metrics_merge_files_by_time_keeping_each_files_order_and_filter_kinds(tmp_path: Path) -> None:
    paths = _run_with_jobs(tmp_path, [("7", ["main"])])
    paths.telemetry_dir.mkdir()
    paths.metrics.write_text('{"time": 1, "kind": "train", "step": 1}\n{"time": 3, "kind": "train", "step": 2}\n')
    paths.telemetry("7", 0).write_text('{"time": 2, "kind": "system"}\nnot json\n{"time": 4, "kind": "system"}\n{"ti')
    metrics = RunMetrics(paths)
    assert [r["time"] for r in metrics.poll()] == [1, 2, 3, 4]
    assert metrics.skipped == 1
    with open(paths.telemetry("7", 0), "a") as f:
        f.write('me": 5, "kind": "gpu"}\n')
    assert metrics.poll() == [{"time": 5, "kind": "gpu"}]
    only = RunMetrics(paths, kinds={"train"})
    assert [r["step"] for r in only.poll()] == [1, 2]


def test_many_files_share_one_budget_and_few_stay_open(tmp_path: Path) -> None:
    paths = _run_with_jobs(tmp_path, [(str(1000 + k), ["main"]) for k in range(150)])
    for k in range(150):
        (paths.submitit / f"{1000 + k}_0_log.out").write_text("".join(f"job {k} line {i}\n" for i in range(2000)))
    logs = RunLogs(paths, budget=CHUNK)
    got: list[str] = []
    polls = 0
    while True:
        lines = logs.poll()
        polls += 1
        got += [line for _, line in lines]
        assert sum(t.is_open for t in logs.files.tails.values()) <= MAX_OPEN
        if not logs.more:
            break
    assert got == [f"job {k} line {i}" for k in range(150) for i in range(2000)]
    assert polls > 4  # 5 MB in budgets of 1 MiB
    first = logs.files.tails[str(paths.submitit / "1000_0_log.out")]
    assert not first.is_open  # closed as idle, its place kept
    with open(paths.submitit / "1000_0_log.out", "a") as f:
        f.write("job 0 more\n")
    (paths.submitit / "1149_0_log.out").write_text("job 149 anew\n")  # rewritten while closed: from the start
    assert sorted(line for _, line in logs.poll()) == ["job 0 more", "job 149 anew"]
