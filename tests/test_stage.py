"""Staging shards to node-local disk: verified copies, resume, repair, space, locks, and training from them."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from clusterdeck.jobs.diskspace import free_bytes
from clusterdeck.jobs.runspec import validate
from clusterdeck.jobs.stage.cache import set_name, shared_cache
from clusterdeck.jobs.stage.job import read_order
from clusterdeck.jobs.train.order import node_shards, rank_shards
from clusterdeck.jobs.train.shardset import Shard, read_shardset
from clusterdeck.jobs.world import World
from tests.conftest import REPO, SMALL_TRAIN, records, run_cli, train_section


def index_of(shards: Path) -> dict[str, Shard]:
    return {s.path.name: s for split in read_shardset(shards, "t").splits.values() for s in split}


def cache_of(shards: Path, to: Path) -> Path:
    return shared_cache(to) / set_name(read_shardset(shards, "t"))


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def assert_one_good_copy(shards: Path, cache: Path) -> None:
    """Every shard is there once, byte for byte the indexed one, with no temporary file left."""
    expected = index_of(shards)
    assert sorted(p.name for p in cache.iterdir() if not p.name.startswith(".")) == sorted(expected)
    for name, shard in expected.items():
        assert sha256(cache / name) == shard.sha256, name


def stage_json(shards: Path, to: Path, *args: str) -> dict[str, Any]:
    result = run_cli("stage", str(shards), "--to", str(to), "--json", *args)
    assert result.code == 0, result.err
    return json.loads(result.out)


def stage_process(shards: Path, to: Path, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "clusterdeck.app.cli", "stage", str(shards), "--to", str(to), "--json", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=REPO,
    )


def test_an_interrupted_stage_resumes_without_copying_finished_shards(sample_shards: Path, tmp_path: Path) -> None:
    total = len(index_of(sample_shards))
    cache = cache_of(sample_shards, tmp_path)
    proc = stage_process(sample_shards, tmp_path, "--streams", "1", "--max-mb-s", "1")
    deadline = time.monotonic() + 60
    while len(finished := sorted(cache.glob("*.tar"))) < 3 and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)  # as a node crash or `scancel -s KILL` would
    proc.wait()
    finished = sorted(cache.glob("*.tar"))
    assert 3 <= len(finished) < total
    before = {p.name: (p.stat().st_ino, p.stat().st_mtime_ns) for p in finished}

    tally = stage_json(sample_shards, tmp_path)
    assert (tally["reused"], tally["copied"], tally["repaired"]) == (len(finished), total - len(finished), 0)
    assert {name: (p.stat().st_ino, p.stat().st_mtime_ns) for name in before for p in [cache / name]} == before
    assert_one_good_copy(sample_shards, cache)  # the half-written temporary file of the killed stager is gone


def test_a_flipped_byte_or_a_truncated_shard_is_found_and_copied_again(sample_shards: Path, tmp_path: Path) -> None:
    first = stage_json(sample_shards, tmp_path)
    assert first["copied"] == first["files_total"] == len(index_of(sample_shards))
    cache = Path(first["cache"])
    flipped, cut = sorted(cache.glob("*.tar"))[:2]
    with open(flipped, "r+b") as f:
        f.seek(1000)
        byte = f.read(1)
        f.seek(1000)
        f.write(bytes([byte[0] ^ 0x01]))
    os.truncate(cut, cut.stat().st_size // 2)

    again = stage_json(sample_shards, tmp_path)
    assert (again["repaired"], again["copied"], again["reused"]) == (2, 0, again["files_total"] - 2)
    assert_one_good_copy(sample_shards, cache)


def test_a_destination_without_room_fails_before_copying(sample_shards: Path, tmp_path: Path) -> None:
    """One shard made (sparsely) larger than the free space: nothing is copied, the message has the figures."""
    shards = tmp_path / "big"
    shutil.copytree(sample_shards, shards)
    dest = tmp_path / "node"
    dest.mkdir()
    huge = free_bytes(dest) + 2**30
    index = json.loads((shards / "index.json").read_text())
    entry = index["splits"]["train"]["shards"][0]
    os.truncate(shards / entry["file"], huge)  # a hole: takes no disk
    entry["bytes"] = huge
    (shards / "index.json").write_text(json.dumps(index))

    result = run_cli("stage", str(shards), "--to", str(dest))
    assert result.code == 2
    message = result.err.strip()
    assert message.startswith("clusterdeck: error: --to: not enough space in ") and "Traceback" not in result.err
    needed = sum(e["bytes"] for split in index["splits"].values() for e in split["shards"])
    assert str(dest) in message and f"needs {needed / 1e9:.2f} GB ({needed} bytes)" in message
    assert "are free" in message
    assert not [p for p in dest.rglob("*") if p.is_file() and not p.name.startswith(".")]  # not a byte copied


def wait_for(condition: Callable[[], bool], procs: list[subprocess.Popen[str]], what: str) -> None:
    """Waits for ``condition`` while every process in ``procs`` still runs."""
    deadline = time.monotonic() + 120
    while not condition():
        assert all(p.poll() is None for p in procs), [p.communicate() for p in procs]
        assert time.monotonic() < deadline, what
        time.sleep(0.05)


def test_two_stagers_into_one_cache_make_one_copy_and_share_the_work(sample_shards: Path, tmp_path: Path) -> None:
    """The test holds the locks of the first two shards, as a third stager would, and hands them out so that
    each stager must copy while the other waits, whatever the speed of either."""
    from clusterdeck.jobs.stage.cache import locked

    total = len(index_of(sample_shards))
    cache = cache_of(sample_shards, tmp_path)
    cache.mkdir(parents=True)
    first, second, *rest = [cache / s.path.name for s in read_shardset(sample_shards, "t").split("train", "t")]
    rest += [cache / s.path.name for s in read_shardset(sample_shards, "t").split("val", "t")]
    held = {dest: contextlib.ExitStack() for dest in (first, second)}
    for dest, stack in held.items():
        assert stack.enter_context(locked(dest, wait=False, stop=threading.Event()))
    procs = [stage_process(sample_shards, tmp_path, "--streams", "1")]
    try:
        # A puts both held shards back and copies the rest, then waits for the first (the next in its queue)
        wait_for(lambda: all(p.exists() for p in rest), procs, "the stager never copied the shards not held")
        held[second].close()
        procs.append(stage_process(sample_shards, tmp_path, "--streams", "1"))
        # B finds the first held, the second free (A waits on the first): B copies it, then reuses A's copies
        wait_for(second.exists, procs, "the second stager never copied the shard released to it")
        held[first].close()  # both wait for it: one copies it, the other verifies that copy and reuses it
        tallies = []
        for proc in procs:
            out, err = proc.communicate(timeout=120)
            assert proc.returncode == 0, err
            tallies.append(json.loads(out))
    finally:
        for stack in held.values():
            stack.close()
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    assert sum(t["copied"] for t in tallies) == total  # each shard copied once, by one of them
    assert sum(t["reused"] for t in tallies) == total  # and verified and reused by the other
    a, b = (t["copied"] for t in tallies)
    assert a - len(rest) in (0, 1) and b - 1 in (0, 1)  # both copied: the rest and the second, and one the first
    assert all(t["repaired"] == 0 for t in tallies)
    assert_one_good_copy(sample_shards, cache)


def test_bad_stage_settings_are_named(sample_shards: Path, tmp_path: Path) -> None:
    missing = run_cli("stage", str(tmp_path / "nowhere"), "--to", str(tmp_path))
    assert missing.code == 2 and "SHARDS: " in missing.err and "index.json not found" in missing.err
    split = run_cli("stage", str(sample_shards), "--to", str(tmp_path), "--split", "test")
    assert split.code == 2 and "--split: " in split.err and "no test split" in split.err
    blocked = tmp_path / "file"
    blocked.write_text("")
    into_file = run_cli("stage", str(sample_shards), "--to", str(blocked))
    assert into_file.code == 2 and str(blocked) in into_file.err and "Traceback" not in into_file.err
    with pytest.raises(Exception, match=r"train\.stage\.to: 'relative/dir' is relative"):
        validate(
            {"name": "t", "train": {**SMALL_TRAIN, "train_shards": str(sample_shards), "stage": {"to": "relative/dir"}}}
        )


def test_scope_node_gives_each_node_a_fixed_share_reshuffled_within_it(sample_shards: Path) -> None:
    shards = read_shardset(sample_shards, "t").splits["train"]
    nodes, per_node = 2, 2
    held = [node_shards(shards, seed=3, nodes=nodes, node=n) for n in range(nodes)]
    assert sorted(s.name for h in held for s in h) == sorted(s.name for s in shards)  # a partition
    orders = []
    for epoch in range(3):
        by_rank = [rank_shards(shards, seed=3, epoch=epoch, world=4, rank=r, nodes=nodes) for r in range(4)]
        for node in range(nodes):
            mine = by_rank[node * per_node : (node + 1) * per_node]
            assert sorted(s.name for r in mine for s in r) == sorted(s.name for s in held[node])
        orders.append([s.name for r in by_rank for s in r])
    assert len(set(map(tuple, orders))) == 3  # reshuffled every epoch, within each node

    spec = validate(
        {
            "name": "t",
            "train": {
                **SMALL_TRAIN,
                "seed": 3,
                "train_shards": str(sample_shards),
                "stage": {"scope": "node", "mode": "before"},
            },
        }
    )
    assert spec.train is not None
    val = read_shardset(sample_shards, "t").splits["val"]
    need = read_order(spec.train, shards, val, World(rank=2, world=4, local_rank=0, nodes=2, node=1), workers=2)
    assert {s.name for s in need if s.name.startswith("train")} == {s.name for s in held[1]}
    assert {s.name for s in need if s.name.startswith("val")} == {s.name for s in val[2::4] + val[3::4]}


def metrics_of(view: dict[str, Any], kind: str) -> list[dict[str, Any]]:
    lines = (Path(view["path"]) / "metrics.jsonl").read_text().splitlines()
    return [r for r in map(json.loads, lines) if r["kind"] == kind]


def train_run(tmp_path: Path, shards: Path, name: str, **train: Any) -> dict[str, Any]:
    spec = tmp_path / f"{name}.toml"
    spec.write_text(f'name = "{name}"\n' + train_section(shards, epochs=1, **train))
    result = run_cli("submit", str(spec), "--wait", "--json", timeout=300)
    assert result.code == 0, result.err
    return json.loads(result.out)


def _stepped(runs: Path, *, but: Path) -> bool:
    """Whether a run under ``runs`` other than ``but`` has logged a training step."""
    return any(records(run / "metrics.jsonl", "train") for run in runs.iterdir() if run.is_dir() and run != but)


def test_training_from_staged_shards_sees_the_same_data(sample_shards: Path, tmp_path: Path, home: Path) -> None:
    """'ahead' trains while the copy runs, 'before' copies first; both end with the weights of reading in place.

    'ahead' keeps its copies in the node cache, where the test holds the val shards' locks (as another job's
    stager would) until training has logged a step: the copy cannot be done before training starts."""
    from clusterdeck.jobs.stage.cache import locked

    in_place = train_run(tmp_path, sample_shards, "in-place")
    node = tmp_path / "node-ssd"
    cache = cache_of(sample_shards, node)
    cache.mkdir(parents=True)
    spec = tmp_path / "ahead.toml"
    stage = {"mode": "ahead", "to": str(node), "keep": True}
    spec.write_text('name = "ahead"\n' + train_section(sample_shards, epochs=1, stage=stage))
    with contextlib.ExitStack() as held:
        for shard in read_shardset(sample_shards, "t").split("val", "t"):
            assert held.enter_context(locked(cache / shard.path.name, wait=False, stop=threading.Event()))
        proc = subprocess.Popen(
            [sys.executable, "-m", "clusterdeck.app.cli", "submit", str(spec), "--wait", "--json"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=REPO,
        )
        try:
            wait_for(lambda: _stepped(home / "runs", but=Path(in_place["path"])), [proc], "'ahead' never logged a step")
        except BaseException:
            proc.kill()
            raise
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    ahead = json.loads(out)
    before = train_run(tmp_path, sample_shards, "before", stage={"mode": "before", "to": str(node)})

    digest = metrics_of(in_place, "final")[0]["weights_sha256"]
    assert metrics_of(ahead, "final")[0]["weights_sha256"] == digest
    assert metrics_of(before, "final")[0]["weights_sha256"] == digest

    staged = metrics_of(ahead, "stage")[-1]
    assert staged["done"] and staged["copied"] == staged["files_total"] == len(index_of(sample_shards))
    first_step = metrics_of(ahead, "train")[0]["time"]
    assert first_step < staged["time"]  # training began before the last shard landed

    staged = metrics_of(before, "stage")[-1]
    assert staged["done"] and staged["copied"] == staged["files_total"]  # keep = false: its own copies
    assert staged["time"] < metrics_of(before, "train")[0]["time"]
    assert not list((node / "clusterdeck").glob("job-*"))  # each job removed its own copies and views
    assert_one_good_copy(sample_shards, cache)  # keep = true left the node cache
    assert stage_json(sample_shards, node)["reused"] == len(index_of(sample_shards))


def test_a_shard_changed_after_sharding_fails_an_ahead_job_by_name(
    sample_shards: Path, tmp_path: Path, home: Path
) -> None:
    """The stager thread finds the bad shard while training runs; the loader reading it fails the run, named."""
    shards = tmp_path / "changed"
    shutil.copytree(sample_shards, shards)
    bad = sorted(shards.glob("train-*.tar"))[-1]
    data = bytearray(bad.read_bytes())
    data[700] ^= 0x01  # inside the first member: same size, other bytes
    bad.write_bytes(bytes(data))
    spec = tmp_path / "changed.toml"
    node = tmp_path / "node-ssd"
    spec.write_text('name = "changed"\n' + train_section(shards, stage={"mode": "ahead", "to": str(node)}))
    result = run_cli("submit", str(spec), "--wait", "--json", timeout=300)
    assert result.code == 1
    view = json.loads(result.out)
    error = view["steps"][0]["parts"][0]["error"]
    assert f"shard {bad} does not match its index" in error and "Traceback" not in error
    assert not list(cache_of(shards, node).parent.parent.glob("cache/*/*.tar"))  # keep = false: nothing left
    assert list((node / "clusterdeck").glob("job-*/node-0/view-*/FAILED"))  # the marker the other ranks read


def test_lock_files_are_not_held_by_forked_children(tmp_path: Path) -> None:
    """A DataLoader worker forked while a stager holds a shard lock must not keep the lock after the stager is done."""
    import threading

    from clusterdeck.jobs.stage.cache import locked

    dest = tmp_path / "shard.tar"
    stop = threading.Event()
    with locked(dest, wait=False, stop=stop) as mine:
        assert mine
        started, ready = os.pipe()
        child = os.fork()
        if child == 0:  # the worker: lives on past the stager's release
            os.write(ready, b"1")
            time.sleep(3)
            os._exit(0)
        assert os.read(started, 1) == b"1"  # the child is running (its fork handlers have run)
        with locked(dest, wait=False, stop=stop) as other:  # a second stager (its own open file) is refused
            assert not other
    try:
        with locked(dest, wait=False, stop=stop) as again:
            assert again  # released although the forked child is still alive
    finally:
        os.kill(child, signal.SIGKILL)
        os.waitpid(child, 0)


def test_an_unset_staging_variable_fails_the_job_with_its_name(sample_shards: Path, tmp_path: Path, home: Path) -> None:
    spec = tmp_path / "unset.toml"
    spec.write_text('name = "unset"\n' + train_section(sample_shards, stage={"mode": "before", "to": "$NO_SUCH_SSD/x"}))
    result = run_cli("submit", str(spec), "--wait")
    assert result.code == 1
    assert "train.stage.to: environment variable $NO_SUCH_SSD is not set on " in result.out + result.err


def test_usr2_while_staging_before_training_requeues_the_job(sample_shards: Path, tmp_path: Path) -> None:
    """The time limit is near while the copy still runs: stop copying, requeue (no checkpoint to save yet).

    The test holds one shard's lock, as another job's stager copying it would, so staging cannot end before
    the signal comes, however fast the copy; it sends USR2 once every other shard is copied."""
    from clusterdeck.jobs.errors import RequeueJob
    from clusterdeck.jobs.rundir import RunPaths
    from clusterdeck.jobs.stage.cache import locked, node_dir
    from clusterdeck.jobs.train.step import run_train

    node = tmp_path / "node-ssd"
    table = {**SMALL_TRAIN, "train_shards": str(sample_shards), "stage": {"mode": "before", "to": str(node)}}
    spec = validate({"name": "t", "train": table})
    paths = RunPaths(tmp_path / "run")
    paths.root.mkdir()
    shard_set = read_shardset(sample_shards, "t")
    cache = node_dir(node, str(os.getpid()), 0) / "cache" / set_name(shard_set)  # keep = false: this job's own
    cache.mkdir(parents=True)
    names = [s.path.name for split in shard_set.splits.values() for s in split]
    held = contextlib.ExitStack()
    assert held.enter_context(locked(cache / names[-1], wait=False, stop=threading.Event()))
    failures: list[str] = []

    def usr2_once_the_rest_is_copied() -> None:
        deadline = time.monotonic() + 120
        while not all((cache / name).exists() for name in names[:-1]):
            if time.monotonic() > deadline:
                failures.append("the shards not held were never copied")
                held.close()  # let the run end rather than hang
                return
            time.sleep(0.05)
        os.kill(os.getpid(), signal.SIGUSR2)  # the stager now waits for the held shard

    sender = threading.Thread(target=usr2_once_the_rest_is_copied)
    sender.start()
    try:
        with pytest.raises(RequeueJob, match="SIGUSR2 while staging"):
            run_train(spec, paths, 1, lambda progress: None)
    finally:
        sender.join()
        held.close()
    assert not failures, failures
    assert not (paths.checkpoints / "last.pt").exists()
    assert not list((node / "clusterdeck").glob("job-*"))  # keep = false: this start's copies are gone
    records = [json.loads(line) for line in paths.metrics.read_text().splitlines()]
    assert records and records[-1]["kind"] == "stage" and not records[-1]["done"]
    assert records[-1]["files_done"] == len(names) - 1  # it stopped waiting for the held shard: no copy of it


def test_the_stage_summary_gives_the_rate_of_the_whole_copy(sample_shards: Path, tmp_path: Path) -> None:
    """A copy of a fraction of a second printed "(0 MB/s)": the rate of the moment after its last progress record."""
    import re

    text = run_cli("stage", str(sample_shards), "--to", str(tmp_path / "a"))
    assert text.code == 0, text.err
    found = re.search(r"stage: (\d+)/\1 shards ready, [\d.]+ GB in [\d.]+ s \(([\d.]+) MB/s\)", text.out)
    assert found and float(found[2]) > 0, text.out
    tally = stage_json(sample_shards, tmp_path / "b")
    assert tally["copied"] == tally["files_total"] and tally["mb_s"] > 0


def test_the_stage_summary_rates_a_slow_small_copy_from_unrounded_bytes() -> None:
    """3 kB in a second printed "(0 MB/s)": the summary reformatted a rate already rounded to 0.01 MB/s."""
    import time

    from clusterdeck.jobs.stage.stager import Tally
    from clusterdeck.jobs.stage.warm import summary

    tally = Tally(files_total=1, bytes_total=3000, files_done=1, bytes_done=3000, copied=1)
    tally.started = time.monotonic() - 1.0  # a copy of 3000 bytes that took (at least) a second
    line = summary(tally)
    assert "(0.003 MB/s)" in line or "(0.0029 MB/s)" in line, line
    assert tally.record(final=True)["mb_s"] > 0  # and `stage --json` keeps the rate to the byte a second


def test_a_half_written_record_is_left_for_the_next_read(tmp_path: Path) -> None:
    """A poll of a metrics file still being appended read its last, half-written line: JSONDecodeError."""
    metrics = tmp_path / "runs" / "a" / "metrics.jsonl"
    metrics.parent.mkdir(parents=True)
    metrics.write_text('{"kind": "stage"}\n{"kind": "tra')
    assert not _stepped(tmp_path / "runs", but=tmp_path / "other")
    metrics.write_text('{"kind": "stage"}\n{"kind": "train"}\n{"kind": "tra')
    assert _stepped(tmp_path / "runs", but=tmp_path / "other")
