"""The shard step on a filesystem too small: refused before the first byte, or, when the disk fills midway, one line
naming the file, the finished shards kept, and a resume that finishes the set.

The output is a real tmpfs of a chosen size (the tests run as root), so ``statvfs`` and
``ENOSPC`` are the kernel's own. The disk is filled midway deterministically: one input
image is a FIFO, and the test fills the tmpfs while the writer waits on it.
"""

from __future__ import annotations

import errno
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from clusterdeck.jobs.runspec import load_spec
from clusterdeck.jobs.sample_data import SampleData
from clusterdeck.jobs.shard.plan import PER_SAMPLE_OVERHEAD
from clusterdeck.jobs.shard.step import build_plan
from tests.conftest import needs_root, run_cli, shard_spec


@contextmanager
def tmpfs(path: Path, size: int) -> Iterator[Path]:
    """A tmpfs of ``size`` bytes mounted at ``path`` for the block."""
    needs_root("mount, for a tmpfs of a chosen size")
    path.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], check=True)
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=True)


def write_spec(data: SampleData, out: Path, where: Path, extra: str = "") -> Path:
    """A shard spec with one writer process: shards are written in plan order."""
    spec = where / "spec.toml"
    spec.write_text(shard_spec(data, out, extra=extra).replace("workers = 2", "workers = 1"))
    return spec


def estimate(spec: Path) -> int:
    """The bytes the shard set will take, from every input file's size (the step estimates from a sample)."""
    shard = load_spec(spec, check_paths=True).shard
    assert shard is not None
    return sum(
        sum(job.source.raw_size(loc) or 0 for loc in job.locs)
        + len(job.keys) * PER_SAMPLE_OVERHEAD
        + tarfile.RECORDSIZE
        for job in build_plan(shard).jobs
    )


def the_run(runs: Path) -> str:
    (run,) = [p.name for p in runs.iterdir() if p.is_dir()]
    return run


def test_an_output_too_small_is_refused_at_submit_when_it_exists(sample_data: SampleData, tmp_path: Path) -> None:
    with tmpfs(tmp_path / "small", 256 * 1024) as small:
        out = small / "set"
        out.mkdir()
        spec = write_spec(sample_data, out, tmp_path)
        result = run_cli("--runs-root", str(tmp_path / "runs"), "submit", str(spec))
        assert result.code == 2, result.err
        assert "Traceback" not in result.err and len(result.err.strip().splitlines()) == 1
        line = result.err.strip()
        free = os.statvfs(small).f_bavail * os.statvfs(small).f_frsize
        assert f"shard.output: not enough space in {out}: " in line
        assert f"({free} bytes) are free" in line and " bytes), " in line, line
        assert not list(out.iterdir()) and not (tmp_path / "runs").exists()  # nothing written, no run made


def test_an_output_too_small_fails_at_job_start_before_the_first_byte(sample_data: SampleData, tmp_path: Path) -> None:
    with tmpfs(tmp_path / "small", 256 * 1024) as small:
        out = small / "later" / "set"  # not there at submit: the job checks when it starts
        spec = write_spec(sample_data, out, tmp_path)
        needed = estimate(spec)
        runs = tmp_path / "runs"
        result = run_cli("--runs-root", str(runs), "submit", str(spec), "--wait")
        assert result.code == 1, result.err
        show = run_cli("--runs-root", str(runs), "show", the_run(runs))
        free = os.statvfs(small).f_bavail * os.statvfs(small).f_frsize
        assert f"shard.output: not enough space in {small}: writing " in show.out, show.out
        asked = int(re.search(r"needs [0-9.]+ GB \((\d+) bytes\)", show.out)[1])  # type: ignore[index]
        assert abs(asked - needed) < 0.02 * needed, (asked, needed)  # the step's estimate, from a sample of sizes
        assert f" bytes), {free / 1e9:.2f} GB ({free} bytes) are free" in show.out
        logs = run_cli("--runs-root", str(runs), "logs", the_run(runs), "--err")
        assert "Traceback" not in logs.out + logs.err and "not enough space" in logs.out
        assert not out.exists()  # not a byte


def _fill(path: Path) -> int:
    """Writes ``path`` until the filesystem is full; the bytes it took."""
    block, total = b"\0" * 4096, 0
    with open(path, "wb", buffering=0) as f:
        while True:
            try:
                total += f.write(block)
            except OSError as exc:
                assert exc.errno == errno.ENOSPC
                return total


def _open_writer(fifo: Path, deadline_s: float = 120) -> int:
    """Opens the FIFO for writing once the shard writer has opened it for reading (ENXIO until then)."""
    deadline = time.monotonic() + deadline_s
    while True:
        try:
            return os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
        except OSError as exc:
            assert exc.errno == errno.ENXIO and time.monotonic() < deadline, "the writer never reached the FIFO"
            time.sleep(0.05)  # polling a condition (a reader on the FIFO), not waiting for a time


def test_a_disk_that_fills_midway_names_the_file_keeps_the_shards_and_resume_finishes(
    sample_data: SampleData, tmp_path: Path
) -> None:
    data = SampleData(tmp_path / "data", sample_data.wnids)
    shutil.copytree(sample_data.root, data.root)
    runs = tmp_path / "runs"
    # max_samples (below the count the size target gives) fixes the shards' contents whatever the files' sizes:
    # the FIFO below cannot move a sample between shards
    extra = "max_samples = 4"
    probe = write_spec(data, tmp_path / "probe", tmp_path, extra)
    needed = estimate(probe)
    shard = load_spec(probe).shard
    assert shard is not None
    jobs = build_plan(shard).jobs
    third = jobs[2]
    image = data.train / third.names[0]  # the first sample of the third shard: two shards are done before it
    original = image.read_bytes()
    image.unlink()
    os.mkfifo(image)

    with tmpfs(tmp_path / "disk", needed + 512 * 1024) as disk:
        out = disk / "set"
        spec = write_spec(data, out, tmp_path, extra)
        job = subprocess.Popen(
            [sys.executable, "-m", "clusterdeck.app.cli", "--runs-root", str(runs), "submit", str(spec), "--wait"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=Path(__file__).resolve().parent.parent,
        )
        fd = _open_writer(image)  # the writer is in the third shard now, waiting for this image
        try:
            _fill(disk / "filler")  # someone else fills the disk
            os.set_blocking(fd, True)
            os.write(fd, original)
        finally:
            os.close(fd)
        _, err = job.communicate(timeout=300)
        assert job.returncode == 1, err

        run = the_run(runs)
        show = run_cli("--runs-root", str(runs), "show", run)
        (line,) = [x.strip() for x in show.out.splitlines() if "No space left on device" in x]
        assert f"while writing {out}/{third.name}.tar (" in line, line
        assert "2 of " in line and "finished and kept" in line and "resume" in line, line
        logs = run_cli("--runs-root", str(runs), "logs", run, "--err")
        assert "Traceback" not in logs.out + logs.err
        kept = {p.name: p.stat().st_mtime_ns for p in out.glob("*.tar")}
        assert sorted(kept) == [jobs[0].name + ".tar", jobs[1].name + ".tar"]
        assert not [p for p in out.iterdir() if ".tmp-" in p.name]  # the half-written shard is gone

        (disk / "filler").unlink()
        image.unlink()
        image.write_bytes(original)
        resumed = run_cli("--runs-root", str(runs), "resume", run)
        assert resumed.code == 0, resumed.err
        waited = run_cli("--runs-root", str(runs), "watch", run, timeout=300)
        assert waited.code == 0, waited.out + waited.err
        index = json.loads((out / "index.json").read_text())
        assert sum(len(s["shards"]) for s in index["splits"].values()) == len(jobs)
        assert {name: (out / name).stat().st_mtime_ns for name in kept} == kept  # kept, not written again
        log = run_cli("--runs-root", str(runs), "logs", run).out
        assert f"{jobs[0].name}.tar: {len(jobs[0].keys)} samples" in log and "(verified, kept)" in log
        assert len(jobs[0].keys) == 4


def test_an_export_too_large_for_its_disk_is_refused_before_the_first_byte(sample_shards: Path, tmp_path: Path) -> None:
    with tmpfs(tmp_path / "small", 64 * 1024) as small:
        out = small / "export"
        result = run_cli("export", str(sample_shards), "--out", str(out), "--samples", "40", "--image-size", "32")
        assert result.code == 2, result.err
        assert "Traceback" not in result.err and len(result.err.strip().splitlines()) == 1
        free = os.statvfs(small).f_bavail * os.statvfs(small).f_frsize
        line = result.err.strip()
        assert f"--out: not enough space in {small}: the export (" in line, line
        assert f" bytes), {free / 1e9:.2f} GB ({free} bytes) are free" in line, line
        assert not out.exists() or not list(out.iterdir())


@pytest.mark.parametrize("workers", [1, 2])
def test_a_file_size_limit_midway_is_one_line_naming_the_file(
    sample_data: SampleData, tmp_path: Path, workers: int
) -> None:
    """Not a full disk but a write that fails all the same (RLIMIT_FSIZE: EFBIG): one line, the file named,
    from the step's own process or from its writer processes."""
    import resource

    out, runs = tmp_path / "set", tmp_path / "runs"
    spec = write_spec(sample_data, out, tmp_path)
    spec.write_text(spec.read_text().replace("workers = 1", f"workers = {workers}"))
    limit = 200_000  # below one shard (0.3 MB); the run's own small files stay under it
    done = subprocess.run(
        [sys.executable, "-m", "clusterdeck.app.cli", "--runs-root", str(runs), "submit", str(spec), "--wait"],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=Path(__file__).resolve().parent.parent,
        preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit)),
    )
    assert done.returncode == 1, done.stderr
    run = the_run(runs)
    show = run_cli("--runs-root", str(runs), "show", run)
    (line,) = [x.strip() for x in show.out.splitlines() if "File too large" in x]
    assert line.startswith(f"shard.output: File too large while writing {out}/train-0000"), line
    assert ".tar; " in line and "shard(s) of this task are finished and kept" in line, line
    logs = run_cli("--runs-root", str(runs), "logs", run, "--err")
    assert "Traceback" not in logs.out + logs.err
    assert not [p for p in out.iterdir() if ".tmp-" in p.name]


def test_array_tasks_starting_together_check_the_whole_plans_space(sample_data: SampleData, tmp_path: Path) -> None:
    """Each task of an array starts against the same free space: one task's share fitting is not enough."""
    from clusterdeck.jobs.errors import UserError
    from clusterdeck.jobs.shard.step import run_shard_part

    tasks = 4
    array = f"[shard.resources]\narray_tasks = {tasks}\n"
    spec_file = write_spec(sample_data, tmp_path / "unused", tmp_path, extra=array)
    needed = estimate(spec_file)
    with tmpfs(tmp_path / "disk", needed * 6 // 10) as disk:  # a quarter of the set fits, the whole does not
        out = disk / "set"
        spec = load_spec(spec_file, [f'shard.output="{out}"']).shard
        assert spec is not None and len(build_plan(spec).jobs) >= 2 * tasks
        with pytest.raises(UserError) as refused:
            run_shard_part(spec, "task-0", lambda _: None)
        line = str(refused.value)
        assert f"shard.output: not enough space in {disk}: writing " in line, line
        assert f"of the whole plan (all {tasks} tasks together)" in line, line
        assert not out.exists() or not list(out.iterdir())  # not a byte


def test_at_submit_only_shards_a_resume_keeps_count_as_room(sample_data: SampleData, tmp_path: Path) -> None:
    """A stale tar (no completed-part record) is replaced by rename: both copies exist at the peak."""
    from clusterdeck.jobs.errors import UserError
    from clusterdeck.jobs.shard.space import _input_bytes, check_room_at_submit

    inputs = _input_bytes(sample_data.train) + _input_bytes(sample_data.val)  # type: ignore[operator]
    stale = inputs // 2
    with tmpfs(tmp_path / "disk", inputs + 64 * 1024) as disk:  # the inputs fit in the disk, not beside the tar
        out = disk / "set"
        out.mkdir()
        (out / "train-000000.tar").write_bytes(b"\0" * stale)
        spec = load_spec(write_spec(sample_data, out, tmp_path)).shard
        assert spec is not None
        with pytest.raises(UserError, match=f"shard.output: not enough space in {out}: storing the input images"):
            check_room_at_submit(spec)
        (out / ".parts").mkdir()  # the same tar, finished by an earlier run: a resume keeps it
        (out / ".parts" / "train-000000.json").write_text(json.dumps({"name": "train-000000", "bytes": stale}))
        check_room_at_submit(spec)
