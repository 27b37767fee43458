"""The public API, ``import clusterdeck``, as a user's script uses it: real processes, real signals, real shards.

Environment-dependent behaviour (rank, paths, signals) runs in subprocesses given the environment a ``[script]``
step gives a task (``jobs.taskenv``); the records are read back with the readers the CLI and the app use.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

import clusterdeck
from clusterdeck.jobs import taskenv
from clusterdeck.jobs.compare import epoch_curves
from clusterdeck.jobs.rundir import RunPaths
from clusterdeck.jobs.tail.live import LiveRun
from clusterdeck.jobs.tail.records import Epoch, Train, parse
from clusterdeck.jobs.tail.run import RunMetrics
from clusterdeck.jobs.telemetry.pipeline import Pipeline
from tests.conftest import wait_for

TASK_VARIABLES = {*taskenv.TaskEnv().variables(), "RANK", "WORLD_SIZE"}


def clean_env(**extra: str) -> dict[str, str]:
    """This environment without any task variables (as a shell outside a job), plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if k not in TASK_VARIABLES}
    return {**env, **extra}


def python(code: str, *, env: dict[str, str], cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code], env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False
    )


@pytest.fixture
def outside_a_job(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    for name in TASK_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    return tmp_path


# --- importing -------------------------------------------------------------------------------------------------

HEAVY = ("torch", "torchvision", "webdataset")


@pytest.mark.parametrize("module", ["clusterdeck", "clusterdeck.app.cli"])
def test_importing_loads_no_torch(module: str, tmp_path: Path) -> None:
    code = f"import sys, {module}; print(sorted(m for m in {HEAVY!r} if m in sys.modules))"
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", code], cwd=tmp_path, capture_output=True, text=True, check=True
    )
    assert done.stdout.strip() == "[]"
    imported = {line.rsplit("|", 1)[-1].strip() for line in done.stderr.splitlines() if "|" in line}
    assert not {name for name in imported if name.split(".")[0] in HEAVY}


def test_the_api_is_what_all_lists() -> None:
    assert sorted(clusterdeck.__all__) == sorted(
        ["REQUEUE", "ShardLoader", "Task", "load_checkpoint", "log", "log_epoch", "save_checkpoint", "task"]
    )
    assert all(getattr(clusterdeck, name) is not None for name in clusterdeck.__all__)
    assert clusterdeck.REQUEUE == taskenv.REQUEUE == 75
    with pytest.raises(AttributeError, match="no attribute 'nothing'"):
        _ = clusterdeck.nothing  # type: ignore[attr-defined]


# --- task() ----------------------------------------------------------------------------------------------------

SHOW_TASK = """
import dataclasses, json, clusterdeck
t = clusterdeck.task()
print(json.dumps({k: None if v is None else str(v) for k, v in dataclasses.asdict(t).items()}))
"""


def test_outside_a_job_the_task_is_one_local_process(tmp_path: Path) -> None:
    done = python(SHOW_TASK, env=clean_env(), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {
        "rank": "0", "world_size": "1", "local_rank": "0", "node": "0", "run_dir": None, "shards": None,
        "checkpoint_dir": str(tmp_path / "checkpoints"), "attempt": "1", "stop_file": None,
    }  # fmt: skip
    shards = python(SHOW_TASK, env=clean_env(CLUSTERDECK_SHARDS=str(tmp_path / "set")), cwd=tmp_path)
    assert json.loads(shards.stdout)["shards"] == str(tmp_path / "set")


def test_the_task_is_what_the_script_step_says(tmp_path: Path) -> None:
    given = taskenv.TaskEnv(
        rank=5, world_size=8, local_rank=1, local_world_size=4, node=1, nodes=2, run_dir=tmp_path / "run",
        shards=tmp_path / "ssd" / "set", checkpoint_dir=tmp_path / "run" / "checkpoints", attempt=3,
        stop_file=tmp_path / "stop",
    )  # fmt: skip
    done = python(SHOW_TASK, env=clean_env(**given.variables()), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {
        "rank": "5", "world_size": "8", "local_rank": "1", "node": "1", "run_dir": str(tmp_path / "run"),
        "shards": str(tmp_path / "ssd" / "set"), "checkpoint_dir": str(tmp_path / "run" / "checkpoints"),
        "attempt": "3", "stop_file": str(tmp_path / "stop"),
    }  # fmt: skip


POLL_STOP = """
import time, clusterdeck
t = clusterdeck.task()
print("polling", flush=True)
while not t.stop_requested():
    time.sleep(0.01)  # a training step
print("stopping", flush=True)
raise SystemExit(clusterdeck.REQUEUE)
"""


@pytest.mark.parametrize("sig", [signal.SIGUSR2, signal.SIGTERM])
def test_a_stop_signal_flips_stop_requested_and_the_task_exits_requeue(sig: signal.Signals, tmp_path: Path) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-c", POLL_STOP], env=clean_env(), cwd=tmp_path, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline() == "polling\n"  # the handlers are in place once task() returned
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == clusterdeck.REQUEUE, err
    assert out == "stopping\n"
    assert f"[clusterdeck] {sig.name} received" in err


def test_a_signal_noted_by_the_step_before_task_was_called_is_seen(tmp_path: Path) -> None:
    """The step notes each stop signal in the task's stop file: one that came while the command was still starting
    (SIGUSR2 ignored, no handler yet) still stops it."""
    stop = tmp_path / "stop"
    code = "import clusterdeck; print(clusterdeck.task().stop_requested())"
    assert python(code, env=clean_env(CLUSTERDECK_STOP_FILE=str(stop)), cwd=tmp_path).stdout == "False\n"
    stop.touch()
    assert python(code, env=clean_env(CLUSTERDECK_STOP_FILE=str(stop)), cwd=tmp_path).stdout == "True\n"


ONLY_TASK_INSTALLS = """
import signal, clusterdeck
clusterdeck.save_checkpoint({}, "x.pt")
clusterdeck.load_checkpoint("x.pt")
print(signal.getsignal(signal.SIGTERM) is signal.SIG_DFL, signal.getsignal(signal.SIGUSR2) is signal.SIG_DFL)
clusterdeck.task()
print(signal.getsignal(signal.SIGTERM) is signal.SIG_DFL, signal.getsignal(signal.SIGUSR2) is signal.SIG_DFL)
"""


def test_only_task_takes_over_the_stop_signals(tmp_path: Path) -> None:
    """A script that never asks for task() cannot poll stop_requested: SIGTERM must still end it."""
    done = python(ONLY_TASK_INSTALLS, env=clean_env(), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["True True", "False False"]


# --- log() and log_epoch() -------------------------------------------------------------------------------------


def metrics_lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_logged_records_read_as_the_trainers(outside_a_job: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    paths = RunPaths(outside_a_job / "run")
    paths.root.mkdir()
    monkeypatch.setenv(taskenv.METRICS, str(paths.metrics))
    monkeypatch.setenv(taskenv.ATTEMPT, "2")
    for step in (1, 2):
        clusterdeck.log(step=step, epoch=step / 2, loss=2.0 / step, lr=0.1, images_per_s=100, grad_norm=0.5 * step)
    clusterdeck.log_epoch(epoch=1, train_loss=1.5, top1=0.5, top5=0.9, val_loss=1.2, epoch_s=3.0, ema_top1=0.55)
    clusterdeck.log("epoch", epoch=2, top1=0.75)

    raw = metrics_lines(paths.metrics)
    assert [r["kind"] for r in raw] == ["train", "train", "epoch", "epoch"]
    assert all(r["attempt"] == 2 and r["rank"] == 0 for r in raw)
    typed = [parse(r) for r in raw]
    train, epoch = typed[1], typed[2]
    assert isinstance(train, Train) and (train.step, train.epoch, train.loss, train.lr) == (2, 1.0, 1.0, 0.1)
    assert train.images_per_s == 100.0 and train.extra_figures() == {"grad_norm": 1.0}
    assert isinstance(epoch, Epoch) and (epoch.epoch, epoch.top1, epoch.top5, epoch.val_loss) == (1, 0.5, 0.9, 1.2)
    assert epoch.train_loss == 1.5 and epoch.extra_figures() == {"ema_top1": 0.55}

    live = LiveRun()
    for record in raw:
        assert live.add(record) is not None
    assert live.skipped == 0 and isinstance(live.epoch, Epoch) and live.epoch.top1 == 0.75
    curves = epoch_curves(paths)  # what `clusterdeck diff` and the app's compare screen draw
    assert curves["top1"] == [(1, 0.5), (2, 0.75)] and curves["train_loss"][0] == (1, 1.5)
    assert curves["ema_top1"] == [(1, 0.55)]
    shown = RunMetrics(paths).poll(True)  # what `clusterdeck metrics --json` prints: every field, extra ones too
    assert [r.get("grad_norm") for r in shown] == [0.5, 1.0, None, None]


def test_only_rank_0_logs_and_nothing_is_written_outside_a_job(
    outside_a_job: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    clusterdeck.log(step=1, epoch=0.1, loss=1.0)
    clusterdeck.log_epoch(epoch=1, top1=0.5)
    assert list(outside_a_job.iterdir()) == []
    metrics = outside_a_job / "metrics.jsonl"
    monkeypatch.setenv(taskenv.METRICS, str(metrics))
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")
    clusterdeck.log(step=1, epoch=0.1, loss=1.0)
    assert not metrics.exists()


@pytest.mark.parametrize(
    ("call", "error", "message"),
    [
        (lambda: clusterdeck.log("val", step=1, epoch=0.5, loss=1.0), ValueError, r"^kind: 'val' is not one of"),
        (lambda: clusterdeck.log(step=1, loss=1.0), ValueError, r"^epoch: a 'train' record needs step, epoch, loss"),
        (lambda: clusterdeck.log(step=1, epoch=0.5, loss="low"), TypeError, r"^loss: 'low' is a str, not a number"),
        (lambda: clusterdeck.log(step=1, epoch=0.5, loss=True), TypeError, r"^loss: True is a bool"),
        (lambda: clusterdeck.log(step=1.5, epoch=0.5, loss=1.0), ValueError, r"^step: 1.5 must be a whole number"),
        (lambda: clusterdeck.log(step=1, epoch=0.5, loss=torch.tensor(1.0)), TypeError, r"^loss: .* pass .item\(\)"),
        (lambda: clusterdeck.log_epoch(epoch=0, top1=0.5), ValueError, r"^epoch: 0 — epochs count from 1"),
        (lambda: clusterdeck.log_epoch(epoch=1, top1=[0.5]), TypeError, r"^top1: \[0.5\] is a list"),
        (lambda: clusterdeck.log(step=1, epoch=0.5, loss=1.0, time=0.2), ValueError, r"^time: set by clusterdeck"),
        (lambda: clusterdeck.log_epoch(epoch=1, rank=0), ValueError, r"^rank: set by clusterdeck"),
    ],
)
def test_bad_figures_are_refused_naming_the_argument(
    call: Any, error: type[Exception], message: str, outside_a_job: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(taskenv.METRICS, str(outside_a_job / "metrics.jsonl"))
    with pytest.raises(error, match=message):
        call()
    assert not (outside_a_job / "metrics.jsonl").exists()


# --- checkpoints -----------------------------------------------------------------------------------------------


@pytest.fixture
def umask() -> Iterator[None]:
    old = os.umask(0o022)
    yield
    os.umask(old)


def test_a_checkpoint_round_trips_with_the_umasks_mode(
    outside_a_job: Path, monkeypatch: pytest.MonkeyPatch, umask: None
) -> None:
    assert clusterdeck.load_checkpoint("last.pt") is None  # the first attempt: nothing to resume from
    state = {"model": nn.Linear(3, 2).state_dict(), "epoch": 4, "loader": {"epoch": 4, "step": 7}}
    path = clusterdeck.save_checkpoint(state, "last.pt")
    assert path == outside_a_job / "checkpoints" / "last.pt"  # ./checkpoints outside a job
    assert path.stat().st_mode & 0o777 == 0o644
    loaded = clusterdeck.load_checkpoint("last.pt")
    assert loaded["epoch"] == 4 and loaded["loader"] == {"epoch": 4, "step": 7}
    assert all(torch.equal(loaded["model"][k], v) for k, v in state["model"].items())

    monkeypatch.setenv(taskenv.CHECKPOINT_DIR, str(outside_a_job / "run" / "checkpoints"))
    os.umask(0o002)
    again = clusterdeck.save_checkpoint({"epoch": 5}, "last.pt")
    assert again == outside_a_job / "run" / "checkpoints" / "last.pt" and again.stat().st_mode & 0o777 == 0o664
    assert clusterdeck.load_checkpoint("last.pt") == {"epoch": 5}
    assert sorted(p.name for p in again.parent.iterdir()) == ["last.pt"]  # no temporary file left


@pytest.mark.parametrize("name", ["", ".", "..", "../last.pt", "sub/last.pt", "/tmp/last.pt"])
def test_a_checkpoint_name_must_be_a_plain_file_name(name: str, outside_a_job: Path) -> None:
    with pytest.raises(ValueError, match=r"^name: .* is not a plain file name"):
        clusterdeck.save_checkpoint({}, name)
    with pytest.raises(ValueError, match=r"^name: "):
        clusterdeck.load_checkpoint(name)
    assert list(outside_a_job.iterdir()) == []


# --- ShardLoader -----------------------------------------------------------------------------------------------


def shard_index(root: Path) -> dict[str, Any]:
    index: dict[str, Any] = json.loads((root / "index.json").read_text())
    return index


def test_the_loader_gives_normalised_batches_an_epoch_of_steps(learnable_shards: Path, outside_a_job: Path) -> None:
    train = clusterdeck.ShardLoader(learnable_shards, batch_size=16, image_size=32, workers=2)
    samples = sum(s["samples"] for s in shard_index(learnable_shards)["splits"]["train"]["shards"])
    assert len(train) == samples // 16
    batches = list(train)
    assert len(batches) == len(train) and train.state_dict()["epoch"] == 1
    images, labels = batches[0]
    assert images.shape == (16, 3, 32, 32) and images.dtype == torch.float32
    assert labels.shape == (16,) and labels.dtype == torch.int64 and 0 <= int(labels.min()) <= int(labels.max()) < 6
    assert -2.2 < float(images.min()) < 0 < float(images.max()) < 2.7  # ImageNet-normalised, not 0 … 255

    val = clusterdeck.ShardLoader(learnable_shards, "val", batch_size=32, image_size=32, train=False, workers=2)
    sizes = [len(y) for _, y in val]
    assert len(sizes) == len(val) and sum(sizes) == 120

    with pytest.raises(ValueError, match=r"^split: .* has no nope split"):
        clusterdeck.ShardLoader(learnable_shards, "nope", batch_size=4)
    with pytest.raises(ValueError, match=r"^shards: none given and CLUSTERDECK_SHARDS is not set"):
        clusterdeck.ShardLoader(batch_size=4)
    with pytest.raises(ValueError, match=r"^batch_size: 1000 per task"):
        clusterdeck.ShardLoader(learnable_shards, batch_size=1000)
    with pytest.raises(ValueError, match=r"^batch_size: 0 must be"):
        clusterdeck.ShardLoader(learnable_shards, batch_size=0)


def test_device_decoding_gives_the_same_kind_of_batches(learnable_shards: Path, outside_a_job: Path) -> None:
    """decode='device' as on a GPU node: the workers only read bytes and plan crops, the process decodes (torchvision
    on the CPU here, nvJPEG on CUDA), as the trainer's on_device does."""
    val = clusterdeck.ShardLoader(
        learnable_shards, "val", batch_size=32, image_size=24, train=False, workers=1, decode="device"
    )
    assert val.decoder == "device"
    batches = list(val)
    assert sum(len(labels) for _, labels in batches) == 120
    images, labels = batches[0]
    assert images.shape == (32, 3, 24, 24) and images.dtype == torch.float32 and labels.dtype == torch.int64
    cpu = clusterdeck.ShardLoader(learnable_shards, "val", batch_size=32, image_size=24, train=False, workers=1)
    cpu_images, cpu_labels = next(iter(cpu))
    assert torch.equal(cpu_labels, labels)  # the same samples in the same order
    assert (cpu_images - images).abs().mean() < 0.1  # decoded at a reduced scale by the workers: close, not equal


RANK_VIEW = """
import hashlib, json, sys, clusterdeck
train = clusterdeck.ShardLoader(batch_size=8, image_size=16, workers=1)
val = clusterdeck.ShardLoader(split="val", batch_size=8, image_size=16, train=False, workers=1)
hashes = [hashlib.sha1(x.numpy().tobytes()).hexdigest() for images, _ in val for x in images]
batches = sum(1 for _ in train)
print(json.dumps({"len": len(train), "batches": batches, "shards": train.epoch_shards(0), "val": hashes}))
"""


def test_two_ranks_read_disjoint_samples(learnable_shards: Path, tmp_path: Path) -> None:
    def start(rank: int) -> subprocess.Popen[str]:
        env = clean_env(RANK=str(rank), WORLD_SIZE="2", CLUSTERDECK_SHARDS=str(learnable_shards))
        pipe = subprocess.PIPE
        return subprocess.Popen(
            [sys.executable, "-c", RANK_VIEW], cwd=tmp_path, stdout=pipe, stderr=pipe, text=True, env=env
        )

    procs = [start(0), start(1)]  # at once: two ranks of one job
    views = []
    for proc in procs:
        out, err = proc.communicate(timeout=180)
        assert proc.returncode == 0, err
        views.append(json.loads(out))
    index = shard_index(learnable_shards)["splits"]
    train_samples = sum(s["samples"] for s in index["train"]["shards"])
    assert views[0]["len"] == views[1]["len"] == views[0]["batches"] == train_samples // (2 * 8)
    assert not set(views[0]["shards"]) & set(views[1]["shards"])
    assert set(views[0]["shards"]) | set(views[1]["shards"]) == {s["name"] for s in index["train"]["shards"]}
    assert not set(views[0]["val"]) & set(views[1]["val"])
    assert len(views[0]["val"]) + len(views[1]["val"]) == 120 == len(set(views[0]["val"]) | set(views[1]["val"]))


def digest(batch: tuple[torch.Tensor, torch.Tensor]) -> str:
    return hashlib.sha1(batch[0].numpy().tobytes() + batch[1].numpy().tobytes()).hexdigest()


def test_a_resumed_loader_gives_exactly_the_rest_of_the_epoch(learnable_shards: Path, outside_a_job: Path) -> None:
    def loader() -> Any:
        return clusterdeck.ShardLoader(learnable_shards, batch_size=16, image_size=16, workers=2, seed=3)

    whole = loader()
    whole.set_epoch(1)
    expected = [digest(b) for b in whole]
    interrupted = loader()
    interrupted.set_epoch(1)
    for i, batch in enumerate(interrupted):
        assert digest(batch) == expected[i]
        if i == 6:
            state = interrupted.state_dict()  # saved with the checkpoint after training on batch 6
            break
    assert state["epoch"] == 1 and state["step"] == 7
    resumed = loader()
    resumed.load_state_dict(state)
    assert [digest(b) for b in resumed] == expected[7:]
    assert resumed.state_dict()["epoch"] == 2 and resumed.state_dict()["step"] == 0


def test_a_tiny_model_trained_with_the_loader_beats_twice_chance(learnable_shards: Path, outside_a_job: Path) -> None:
    torch.manual_seed(0)

    def block(cin: int, cout: int, stride: int) -> nn.Module:
        return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU())

    model = nn.Sequential(
        block(3, 16, 1), block(16, 32, 2), block(32, 64, 2), block(64, 64, 2), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        nn.Linear(64, 6),
    )  # fmt: skip
    train = clusterdeck.ShardLoader(learnable_shards, batch_size=16, image_size=32, workers=1)
    val = clusterdeck.ShardLoader(learnable_shards, "val", batch_size=64, image_size=32, train=False, workers=1)
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.003)
    started = time.monotonic()
    for _ in range(8):
        model.train()
        for images, labels in train:
            loss = nn.functional.cross_entropy(model(images), labels)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    model.eval()
    with torch.no_grad():
        right = sum(int((model(images).argmax(1) == labels).sum()) for images, labels in val)
    assert right / 120 > 2 / 6, f"top-1 {right / 120:.2f} after {time.monotonic() - started:.0f} s"


def test_the_loader_adds_to_the_steps_shared_pipeline(
    learnable_shards: Path, outside_a_job: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pipeline = Pipeline.shared()  # as the [script] step makes it, passing its name on
    try:
        monkeypatch.setenv(taskenv.PIPELINE, pipeline.name)
        val = clusterdeck.ShardLoader(learnable_shards, "val", batch_size=16, image_size=16, train=False, workers=2)
        assert sum(len(labels) for _, labels in val) == 120
        nbytes, samples = pipeline.totals()  # added in the loader's two worker processes
    finally:
        pipeline.unlink()
    shards = shard_index(learnable_shards)["splits"]["val"]["shards"]
    assert samples == 120 and 0.9 * sum(s["bytes"] for s in shards) < nbytes <= sum(s["bytes"] for s in shards)


def test_a_pipeline_that_cannot_be_attached_costs_the_counters_not_the_loader(
    learnable_shards: Path, outside_a_job: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another /dev/shm (a container) hides the step's segment: telemetry is never a reason to fail."""
    monkeypatch.setenv(taskenv.PIPELINE, "psm_clusterdeck_gone")
    with pytest.warns(UserWarning, match="no pipeline counters"):
        val = clusterdeck.ShardLoader(learnable_shards, "val", batch_size=16, image_size=16, train=False, workers=0)
    assert sum(len(labels) for _, labels in val) == 120


def test_under_stage_scope_node_a_loader_other_than_the_staged_one_is_refused(
    learnable_shards: Path, outside_a_job: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in (("RANK", "0"), ("WORLD_SIZE", "2"), (taskenv.SHARD_NODES, "2")):
        monkeypatch.setenv(name, value)
    clusterdeck.ShardLoader(learnable_shards, batch_size=8, image_size=16, workers=0)  # the staged reading
    for other in ({"seed": 1}, {"world_size": 1, "rank": 0}):
        with pytest.raises(ValueError, match=r"^seed/world_size: .*stage scope 'node'"):
            clusterdeck.ShardLoader(learnable_shards, batch_size=8, image_size=16, workers=0, **other)


def waiting_for(thread: threading.Thread, name: str) -> bool:
    """Whether ``thread`` is inside ``wait_staged``, waiting for the file ``name``."""
    frame = sys._current_frames().get(thread.ident or 0)
    while frame is not None:
        if frame.f_code.co_name == "wait_staged":
            return Path(frame.f_locals["path"]).name == name
        frame = frame.f_back
    return False


def test_under_staging_ahead_the_loader_waits_for_the_index_and_each_shard(
    learnable_shards: Path, outside_a_job: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    view = outside_a_job / "view-1-0"  # a node's staging view, as jobs.stage.job names it
    staged = view / "set"
    staged.mkdir(parents=True)
    monkeypatch.setenv(taskenv.STAGING, str(view))
    monkeypatch.setenv(taskenv.SHARDS, str(staged))
    counted: list[int] = []

    def read() -> None:
        val = clusterdeck.ShardLoader(split="val", batch_size=16, image_size=16, train=False, workers=0)
        counted.append(sum(len(labels) for _, labels in val))

    def arrive(name: str) -> None:  # as the stager does: copied beside, renamed in
        shutil.copyfile(learnable_shards / name, staged / f".{name}.part")
        (staged / f".{name}.part").rename(staged / name)

    reader = threading.Thread(target=read)
    reader.start()
    wait_for("the loader to wait for index.json", lambda: waiting_for(reader, "index.json"), timeout=60)
    arrive("index.json")
    for shard in shard_index(learnable_shards)["splits"]["val"]["shards"]:
        wait_for(f"the loader to wait for {shard['file']}", lambda s=shard: waiting_for(reader, s["file"]), 60)
        arrive(shard["file"])
    reader.join(timeout=120)
    assert counted == [120]
