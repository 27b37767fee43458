"""Every file and directory clusterdeck writes gets the mode a plain ``open()``/``mkdir()`` gives under the
writer's umask: a lab that shares a shard set or a runs root needs the group to read it.

One real run per umask (shard, export, then train staging to a node directory and checkpointing) is submitted
by a CLI process that set its umask first, as a user's shell does; the jobs inherit it from there.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from clusterdeck.jobs import atomic
from clusterdeck.jobs.rundir import RunPaths
from clusterdeck.jobs.runindex import INDEX_NAME
from clusterdeck.jobs.sample_data import SampleData
from tests.conftest import REPO, require_slurm, shard_spec, train_section

UMASKS = [0o022, 0o002]


@dataclass
class Written:
    umask: int
    run: RunPaths
    shards: Path
    exports: Path
    node: Path
    trees: list[Path]
    """Directories clusterdeck itself created: everything under them is its own."""


@pytest.fixture(scope="module", params=UMASKS, ids=lambda u: f"umask{u:03o}")
def written(
    request: pytest.FixtureRequest, sample_data: SampleData, tmp_path_factory: pytest.TempPathFactory
) -> Written:
    umask: int = request.param
    base = tmp_path_factory.mktemp(f"modes{umask:03o}")
    home, shards, exports, node = base / "home", base / "shards", base / "exports", base / "node-ssd"
    spec = base / "spec.toml"
    spec.write_text(
        shard_spec(sample_data, shards, name="modes")
        + train_section(epochs=1, stage={"mode": "before", "to": str(node), "keep": True})
        + f'[export]\nout = "{exports}"\nsamples = 40\nimage_size = 8\nworkers = 1\n'
        + "[telemetry]\ninterval_s = 0.5\n"
    )
    proc = subprocess.run(
        [sys.executable, "-m", "clusterdeck.app.cli", "submit", str(spec), "--wait", "--json"],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "CLUSTERDECK_HOME": str(home)},
        cwd=REPO,
        umask=umask,
    )
    assert proc.returncode == 0, proc.stderr
    view = json.loads(proc.stdout)
    assert [s["state"] for s in view["steps"]] == ["COMPLETED"] * 3, view
    return Written(umask, RunPaths(Path(view["path"])), shards, exports, node, [home, shards, exports, node])


def file_mode(umask: int) -> int:
    return 0o666 & ~umask


def mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


def assert_file_modes(paths: list[Path], umask: int) -> None:
    assert paths, "nothing of this kind was written"
    wrong = {str(p): f"{mode(p):04o}" for p in paths if mode(p) != file_mode(umask)}
    assert not wrong, f"expected {file_mode(umask):04o} under umask {umask:03o}: {wrong}"


def everything_under(trees: list[Path]) -> Iterator[Path]:
    for tree in trees:
        yield tree
        yield from tree.rglob("*")


KINDS: dict[str, Any] = {
    "index.json": lambda w: [w.shards / "index.json"],
    "shard tars": lambda w: sorted(w.shards.glob("*.tar")),
    "shard parts": lambda w: sorted((w.shards / ".parts").glob("*.json")),
    "run.json": lambda w: [w.run.record],
    "runs index": lambda w: [w.run.root.parent / INDEX_NAME],
    "spec.json": lambda w: [w.run.spec],
    "status files": lambda w: sorted(w.run.status_dir.glob("*.json")),
    "metrics": lambda w: [w.run.metrics],
    "telemetry": lambda w: sorted(w.run.telemetry_dir.glob("*.jsonl")),
    "job logs": lambda w: sorted(w.run.submitit.glob("*_log.*")),
    "checkpoints": lambda w: [w.run.checkpoints / "last.pt", w.run.checkpoints / "best.pt"],
    "staged shards": lambda w: sorted(w.node.rglob("*.tar")),
    "stage locks": lambda w: sorted(w.node.rglob(".*.lock")),
    "exports": lambda w: sorted(p for p in w.exports.iterdir() if p.is_file()),
}


@pytest.mark.parametrize("kind", KINDS)
def test_each_kind_of_file_has_the_umasks_mode(written: Written, kind: str) -> None:
    assert_file_modes(KINDS[kind](written), written.umask)


def assert_tree_modes(trees: list[Path], umask: int) -> int:
    """Every regular file under ``trees`` is ``0o666 & ~umask``, every directory ``0o777 & ~umask``; the
    number of files checked."""
    files, wrong = 0, {}
    for path in everything_under(trees):
        st = path.lstat()
        if stat.S_ISDIR(st.st_mode):
            expected = 0o777 & ~umask
        elif stat.S_ISREG(st.st_mode):
            expected, files = file_mode(umask), files + 1
        else:
            continue  # a symlink's own mode means nothing
        if stat.S_IMODE(st.st_mode) != expected:
            wrong[str(path)] = f"{stat.S_IMODE(st.st_mode):04o}, expected {expected:04o}"
    assert not wrong, f"under umask {umask:03o}: {wrong}"
    return files


def test_every_file_and_directory_written_has_the_umasks_mode(written: Written) -> None:
    """Nothing left out of the list above: every file, and every directory clusterdeck made."""
    assert assert_tree_modes(written.trees, written.umask) > 30


@pytest.mark.slurm
def test_jobs_on_slurm_write_with_the_submitters_umask(sample_data: SampleData, tmp_path: Path) -> None:
    """sbatch carries the umask to the job (SLURM_UMASK): the shard job's files, the job logs slurmstepd
    creates and the run's records all get the submitting shell's 002."""
    require_slurm()
    umask, home, shards = 0o002, tmp_path / "home", tmp_path / "shards"
    spec = tmp_path / "spec.toml"
    spec.write_text(
        shard_spec(sample_data, shards, name="modes on slurm")
        + '[shard.resources]\npartition = "cpu"\ncpus_per_task = 1\nmem_gb = 1\ntime_min = 10\n'
    )
    proc = subprocess.run(
        [sys.executable, "-m", "clusterdeck.app.cli", "submit", str(spec), "--executor", "slurm", "--wait", "--json"],
        capture_output=True, text=True, timeout=240, cwd=REPO, umask=umask,
        env={**os.environ, "CLUSTERDECK_HOME": str(home)},
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    run = RunPaths(Path(json.loads(proc.stdout)["path"]))
    assert (shards / "index.json").exists() and list(run.submitit.glob("*_log.out"))
    assert assert_tree_modes([home, shards], umask) > 10


@pytest.mark.parametrize("umask", UMASKS, ids=lambda u: f"umask{u:03o}")
def test_val_sort_copies_take_the_umasks_mode_not_the_sources(
    sample_data: SampleData, tmp_path: Path, umask: int
) -> None:
    """A private (0600) original copied into a shared class tree must not stay private there."""
    flat = tmp_path / "val"
    flat.mkdir()
    for image in sorted(sample_data.val.iterdir()):
        (flat / image.name).write_bytes(image.read_bytes())
        (flat / image.name).chmod(0o600)
    dev_shm = Path("/dev/shm")
    assert os.stat(dev_shm).st_dev != os.stat(tmp_path).st_dev, "needs /dev/shm on its own filesystem"
    out = dev_shm / f"cd-modes-{os.getpid()}-{umask:03o}"  # another filesystem: copies, not hard links
    proc = subprocess.run(
        [
            sys.executable, "-m", "clusterdeck.app.cli", "val-sort", str(flat), "--out", str(out),
            "--ground-truth", str(sample_data.ground_truth), "--synsets", str(sample_data.synsets),
        ],
        capture_output=True, text=True, timeout=120, cwd=REPO, umask=umask,
    )  # fmt: skip
    try:
        assert proc.returncode == 0, proc.stderr
        copies = sorted(out.rglob("*.JPEG"))
        assert len(copies) == len(list(flat.iterdir()))
        assert_file_modes(copies, umask)
        assert all(copy.stat().st_nlink == 1 for copy in copies)  # copied, so the mode is ours to choose
    finally:
        subprocess.run(["rm", "-rf", str(out)], check=True)


def test_an_atomic_write_syncs_the_file_then_renames_then_syncs_the_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The order that makes the new content survive a crash: data on disk before the rename, and the
    rename itself on disk (the directory synced) before the writer reports success."""
    calls: list[tuple[str, str]] = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd: int) -> None:
        calls.append(("fsync", "dir" if stat.S_ISDIR(os.fstat(fd).st_mode) else "file"))
        real_fsync(fd)

    def replace(src: Any, dst: Any) -> None:
        calls.append(("replace", Path(dst).name))
        real_replace(src, dst)

    monkeypatch.setattr(os, "fsync", fsync)  # recorded, then done for real
    monkeypatch.setattr(os, "replace", replace)
    atomic.write_json(tmp_path / "run.json", {"a": 1})
    assert calls == [("fsync", "file"), ("replace", "run.json"), ("fsync", "dir")]
    assert atomic.read_json(tmp_path / "run.json") == {"a": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["run.json"]
