"""The train and evaluate steps: data order, exact resume, checkpoints, and what bad input gets."""

from __future__ import annotations

import json
import os
import signal
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import torch
import torchvision

from clusterdeck.jobs.errors import RequeueJob, UserError
from clusterdeck.jobs.model_names import MODEL_NAMES
from clusterdeck.jobs.rundir import RunPaths
from clusterdeck.jobs.runspec import validate
from clusterdeck.jobs.spec import RunSpec
from clusterdeck.jobs.train import checkpoint
from clusterdeck.jobs.train.order import steps_per_epoch, train_shares, val_shares
from clusterdeck.jobs.train.shardset import Shard, read_shardset
from clusterdeck.jobs.train.step import run_train
from tests.conftest import SMALL_TRAIN, run_cli, train_section


def spec_for(shards: Path, **train: Any) -> RunSpec:
    table = {"name": "t", "train": {"train_shards": str(shards), **SMALL_TRAIN, **train}}
    return validate(table)


def records(paths: RunPaths, kind: str) -> list[dict[str, Any]]:
    lines = paths.metrics.read_text().splitlines() if paths.metrics.exists() else []
    return [r for r in map(json.loads, lines) if r["kind"] == kind]


def test_model_names_are_torchvisions_classification_models() -> None:
    assert list(MODEL_NAMES) == torchvision.models.list_models(module=torchvision.models)


def fake_shards(counts: list[int]) -> list[Shard]:
    return [Shard(f"train-{i:06d}", Path(f"/x/{i}.tar"), n, n * 100, "") for i, n in enumerate(counts)]


@pytest.mark.parametrize("world", [1, 2, 3])
def test_every_rank_runs_the_same_batches_and_val_sees_each_sample_once(world: int) -> None:
    shards = fake_shards([50, 50, 50, 50, 50, 50, 31])
    steps = steps_per_epoch(331, world, batch_size=8, grad_accum=2)
    assert steps == 331 // (world * 16)
    for epoch in range(3):
        per_rank = []
        for rank in range(world):
            shares = train_shares(shards, seed=1, epoch=epoch, world=world, rank=rank, workers=4, batches=steps * 2)
            per_rank.append(sum(s.batches for s in shares))
            assert all(s.skip == 0 and s.shards for s in shares)
        assert per_rank == [steps * 2] * world
    assert train_shares(shards, seed=1, epoch=0, world=1, rank=0, workers=2, batches=10) != train_shares(
        shards, seed=1, epoch=1, world=1, rank=0, workers=2, batches=10
    )
    read = Counter(s.name for r in range(world) for w in val_shares(shards, world=world, rank=r, workers=3) for s in w)
    assert read == Counter(s.name for s in shards)


def test_resume_skips_exactly_the_batches_already_trained() -> None:
    shards = fake_shards([40] * 6)
    full = train_shares(shards, seed=0, epoch=2, world=2, rank=1, workers=2, batches=9)
    resumed = train_shares(shards, seed=0, epoch=2, world=2, rank=1, workers=2, batches=9, done=5)
    assert [s.shards for s in full] == [s.shards for s in reversed(resumed)]
    assert [s.batches for s in full] == [5, 4]  # batch j comes from worker j % 2
    assert [(s.batches, s.skip) for s in resumed] == [(4, 2), (5, 3)]  # 1, 3 and 0, 2, 4 done; 5 comes first


def test_batch_larger_than_the_data_is_a_clear_error() -> None:
    with pytest.raises(UserError, match=r"train.batch_size: 64 per task × 2 task\(s\) × grad_accum 1 = 128 .* only 72"):
        steps_per_epoch(72, 2, 64, 1)


def test_a_stopped_run_resumes_mid_epoch_and_ends_with_the_same_weights(sample_shards: Path, tmp_path: Path) -> None:
    """SIGUSR2 (SLURM's warning before the time limit) mid-epoch: checkpoint, stop, resume, same result."""
    spec = spec_for(sample_shards, epochs=2, checkpoint_every_min=10, mixup_alpha=0.2, cutmix_alpha=1.0)
    straight = RunPaths(tmp_path / "straight")
    straight.root.mkdir()
    run_train(spec, straight, 1, lambda progress: None)

    stopped = RunPaths(tmp_path / "stopped")
    stopped.root.mkdir()

    def signal_at_step_5(progress: dict[str, float]) -> None:
        if progress.get("step") == 5:
            os.kill(os.getpid(), signal.SIGUSR2)

    with pytest.raises(RequeueJob, match="stopped at step 5 after SIGUSR2"):
        run_train(spec, stopped, 1, signal_at_step_5)
    saved = checkpoint.load(stopped.checkpoints / "last.pt")
    steps = len(records(straight, "train")) // 2
    assert (saved["epoch"], saved["step_in_epoch"], saved["global_step"]) == (0, 5, 5)
    assert steps > 5  # the stop was mid-epoch

    run_train(spec, stopped, 2, lambda progress: None)
    done = records(stopped, "train")
    assert [r["step"] for r in done] == list(range(1, 2 * steps + 1))  # no step twice, none missing
    assert [r["attempt"] for r in done] == [1] * 5 + [2] * (2 * steps - 5)
    assert records(stopped, "final")[0]["weights_sha256"] == records(straight, "final")[0]["weights_sha256"]
    assert [r["top1"] for r in records(stopped, "epoch")] == [r["top1"] for r in records(straight, "epoch")]


def test_a_full_disk_while_writing_a_checkpoint_leaves_the_last_one_whole(tmp_path: Path) -> None:
    """A real write failure: the writing process may not grow a file past 64 kB (RLIMIT_FSIZE, EFBIG)."""
    import resource
    import subprocess
    import sys

    from tests.conftest import REPO

    path = tmp_path / "last.pt"
    checkpoint.save(path, {"global_step": 1, "model": {"w": torch.ones(3)}})
    script = (
        "import sys, torch\n"
        "from pathlib import Path\n"
        "from clusterdeck.jobs.train import checkpoint\n"
        "checkpoint.save(Path(sys.argv[1]), {'global_step': 2, 'model': {'w': torch.ones(100_000)}})\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", script, str(path)],
        cwd=REPO,
        capture_output=True,
        text=True,
        preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (65_536, 65_536)),
    )
    assert proc.returncode == 1 and "File too large" in proc.stderr, proc.stderr
    assert checkpoint.load(path)["global_step"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]  # no temporary file left behind


def test_out_of_memory_names_the_fix(sample_shards: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No GPU here: the allocator's error is raised at the boundary, from the model's forward."""

    def forward(self: Any, x: Any) -> Any:
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(torchvision.models.ResNet, "forward", forward)
    paths = RunPaths(tmp_path / "run")
    paths.root.mkdir()
    with pytest.raises(UserError, match=r"out of memory .* lower train.batch_size and raise train.grad_accum"):
        run_train(spec_for(sample_shards), paths, 1, lambda progress: None)
    assert not paths.checkpoints.exists()


def test_weights_with_another_class_count_are_refused(sample_shards: Path, tmp_path: Path) -> None:
    weights = tmp_path / "resnet18-1000.pth"
    torch.save(torchvision.models.resnet18(num_classes=1000).state_dict(), weights)
    paths = RunPaths(tmp_path / "run")
    paths.root.mkdir()
    with pytest.raises(UserError, match=r"resnet18-1000.pth has 1000 classes, the model is built for 6"):
        run_train(spec_for(sample_shards, weights=str(weights)), paths, 1, lambda progress: None)


def test_a_corrupt_shard_is_named(sample_shards: Path, tmp_path: Path) -> None:
    import shutil

    copy = tmp_path / "set"
    shutil.copytree(sample_shards, copy)
    victim = sorted(copy.glob("train-*.tar"))[1]
    data = bytearray(victim.read_bytes())
    data[0:512] = b"\x00garbage" * 64  # the first tar header: same size, unreadable
    victim.write_bytes(bytes(data))
    paths = RunPaths(tmp_path / "run")
    paths.root.mkdir()
    with pytest.raises(UserError, match=f"shard {victim} is unreadable or corrupt"):
        run_train(spec_for(copy, workers=0), paths, 1, lambda progress: None)


def test_shard_set_problems_are_found_at_submit(sample_shards: Path, tmp_path: Path, home: Path) -> None:
    import shutil

    copy = tmp_path / "set"
    shutil.copytree(sample_shards, copy)
    spec = tmp_path / "spec.toml"

    def submit(**train: Any) -> Any:
        spec.write_text('name = "bad"\n' + train_section(copy, **train))
        return run_cli("submit", str(spec))

    result = submit(model="resnet51")
    assert result.code == 2
    assert "train.model: unknown torchvision classification model 'resnet51'; did you mean 'resnet50'" in result.err
    result = submit(batch_size=100)
    assert result.code == 2 and "train.batch_size: 100 per task × 1 task(s)" in result.err
    assert "Traceback" not in result.err
    victim = sorted(copy.glob("train-*.tar"))[0]
    victim.write_bytes(victim.read_bytes()[:-1024])
    result = submit()
    assert result.code == 2 and f"shard {victim} is " in result.err and "the index says" in result.err
    victim.unlink()
    result = submit()
    assert result.code == 2 and f"shard {victim} is missing" in result.err
    assert not (home / "runs").exists() or not any((home / "runs").iterdir())  # nothing was submitted


def topk_by_hand(weights: dict[str, torch.Tensor], model: str, shards: Path, size: int) -> tuple[float, float, int]:
    """Top-1 and top-5 over a shard set's val split, worked out here from the model's logits: each sample read with
    ``tarfile``, cut as the val transform cuts it (Resize(size·256/224) + CenterCrop), normalised, run as one batch."""
    import tarfile

    from clusterdeck.jobs.train.crops import decode_crop, read_header, val_plan

    shard_set = read_shardset(shards, "x")
    net = torchvision.models.get_model(model, num_classes=len(shard_set.classes))
    net.load_state_dict(weights)
    net.eval()
    images, labels = [], []
    for shard in shard_set.split("val", "x"):
        members: dict[str, dict[str, bytes]] = {}
        with tarfile.open(shard.path) as tar:
            for member in tar.getmembers():
                key, ext = member.name.split(".", 1)
                data = tar.extractfile(member)
                assert data is not None
                members.setdefault(key, {})[ext] = data.read()
        for key, sample in members.items():
            jpeg = sample["jpg"]
            header = read_header(jpeg, key)
            images.append(decode_crop(jpeg, val_plan(header.width, header.height, size), size, key))
            labels.append(int(sample["cls"]))
    x = torch.stack(images).float() / 255
    mean, std = torch.tensor([0.485, 0.456, 0.406]), torch.tensor([0.229, 0.224, 0.225])  # ImageNet's
    x = (x - mean.view(1, 3, 1, 1)) / std.view(1, 3, 1, 1)
    with torch.no_grad():
        logits = net(x)
    y = torch.tensor(labels)
    top5 = logits.topk(5, dim=1).indices
    n = len(labels)
    return (logits.argmax(dim=1) == y).sum().item() / n, (top5 == y[:, None]).any(dim=1).sum().item() / n, n


def test_shard_train_evaluate_on_the_local_executor(sample_data: Any, tmp_path: Path, home: Path) -> None:
    from tests.conftest import shard_spec

    spec = tmp_path / "spec.toml"
    spec.write_text(
        shard_spec(sample_data, tmp_path / "shards", name="pipeline")
        + train_section()
        + '[evaluate]\nworkers = 1\ndecode = "cpu"\n'  # the decoder topk_by_hand's crops are exact for
    )
    result = run_cli("submit", str(spec), "--wait", "--json", timeout=300)
    assert result.code == 0, result.err
    view = json.loads(result.out)
    assert [s["state"] for s in view["steps"]] == ["COMPLETED"] * 3
    paths = RunPaths(Path(view["path"]))
    train, evaluated = records(paths, "train"), records(paths, "evaluate")
    assert [r["step"] for r in train] == list(range(1, len(train) + 1))
    assert {r["node"] for r in train} == {os.uname().nodename} and {r["rank"] for r in train} == {0}
    assert [r["epoch"] for r in records(paths, "epoch")] == [1, 2]
    saved = checkpoint.load(paths.checkpoints / "last.pt")
    assert saved["epoch"] == 2 and saved["global_step"] == len(train)
    assert evaluated[0]["val_samples"] == 24 and evaluated[0]["checkpoint"].endswith("best.pt")
    best = torch.load(paths.checkpoints / "best.pt", map_location="cpu", weights_only=True)
    top1, top5, n = topk_by_hand(best["model"], "resnet18", tmp_path / "shards", 32)
    assert n == 24 and (evaluated[0]["top1"], evaluated[0]["top5"]) == pytest.approx((top1, top5))
    evaluate_part = view["steps"][2]["parts"][0]
    assert evaluate_part["progress"]["top1"] == evaluated[0]["top1"]
    assert read_shardset(tmp_path / "shards", "x").classes == saved["classes"]
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(paths.tensorboard))
    events.Reload()
    assert [e.step for e in events.Scalars("train/loss")] == [r["step"] for r in train]
    assert [e.value for e in events.Scalars("epoch/top1")] == pytest.approx(
        [r["top1"] for r in records(paths, "epoch")]
    )


def test_a_run_killed_between_checkpoints_resumes_from_the_last_one(
    sample_shards: Path, tmp_path: Path, home: Path
) -> None:
    """SIGKILL (the OOM killer, a node failure) gives no warning; ``clusterdeck resume`` starts from ``last``."""
    import time

    spec = tmp_path / "spec.toml"
    spec.write_text(
        'name = "killed"\n' + train_section(sample_shards, epochs=3, log_every_steps=1, checkpoint_every_min=0)
    )
    result = run_cli("submit", str(spec), "--json")
    assert result.code == 0, result.err
    view = json.loads(result.out)
    paths = RunPaths(Path(view["path"]))
    deadline = time.monotonic() + 120
    while len(records(paths, "checkpoint")) < 7 and time.monotonic() < deadline:
        time.sleep(0.05)
    os.killpg(int(view["steps"][0]["job_ids"][0]), signal.SIGKILL)
    killed = json.loads(run_cli("show", view["run_id"], "--json").out)
    assert killed["state"] == "FAILED"
    step = checkpoint.load(paths.checkpoints / "last.pt")["global_step"]
    assert 7 <= step < 27

    assert run_cli("resume", view["run_id"]).code == 0
    done = json.loads(run_cli("show", view["run_id"], "--json").out)
    deadline = time.monotonic() + 120
    while done["state"] != "COMPLETED" and time.monotonic() < deadline:
        time.sleep(0.5)
        done = json.loads(run_cli("show", view["run_id"], "--json").out)
    train = done["steps"][0]
    assert done["state"] == "COMPLETED" and train["attempt"] == 2
    assert [a["state"] for a in train["attempts"]] == ["FAILED", "COMPLETED"]
    assert train["parts"][0]["progress"]["resumed_from_step"] == step
    second = [r["step"] for r in records(paths, "train") if r["attempt"] == 2]
    assert second == list(range(step + 1, 28))  # 72 samples / 8 per step = 9 steps × 3 epochs
    shown = run_cli("show", done["run_id"]).out
    assert f"resumed from step {step}" in shown and "FAILED" in shown


def test_evaluate_a_plain_weights_file(sample_shards: Path, tmp_path: Path) -> None:
    """The evaluate-pretrained template's path: a torchvision state_dict, the model named in the spec."""
    from clusterdeck.jobs.train.step import run_evaluate

    weights = tmp_path / "resnet18-6.pth"
    torch.manual_seed(0)
    torch.save(torchvision.models.resnet18(num_classes=6).state_dict(), weights)
    paths = RunPaths(tmp_path / "run")
    paths.root.mkdir()
    section = {"checkpoint": str(weights), "val_shards": str(sample_shards), "workers": 0, "amp": "off"}
    section["decode"] = "cpu"  # the decoder whose crops topk_by_hand makes exactly
    with pytest.raises(UserError, match=r"evaluate.model: .* is a plain weights file; say which model"):
        run_evaluate(validate({"name": "e", "evaluate": section}), paths, 1, lambda progress: None)
    spec = validate({"name": "e", "evaluate": {**section, "model": "resnet18", "image_size": 32}})
    result = run_evaluate(spec, paths, 1, lambda progress: None)
    top1, top5, n = topk_by_hand(torch.load(weights, weights_only=True), "resnet18", sample_shards, 32)
    assert result["val_samples"] == n == 24 and (result["top1"], result["top5"]) == pytest.approx((top1, top5))
    assert 0 < top1 < top5 < 1  # a check that can tell top-1 from top-5 and from all or nothing
    assert records(paths, "evaluate")[0]["top5"] == result["top5"]

    torch.save(torchvision.models.resnet18(num_classes=1000).state_dict(), weights)
    with pytest.raises(UserError, match=r"resnet18-6.pth has 1000 classes, .* has 6"):
        run_evaluate(spec, paths, 2, lambda progress: None)


def test_submitting_and_showing_a_train_run_never_imports_torch(sample_shards: Path, tmp_path: Path) -> None:
    """The login node's CLI stays light: torch loads in the job, not in ``submit`` or ``show``."""
    import subprocess
    import sys

    from tests.conftest import REPO

    spec = tmp_path / "spec.toml"
    spec.write_text('name = "light"\n' + train_section(sample_shards, epochs=1) + "[evaluate]\nworkers = 0\n")
    probe = (
        "import sys; from clusterdeck.app.cli import main; main(['submit', sys.argv[1]]); main(['show', 'light']); "
        "sys.stderr.write(repr(sorted(m for m in sys.modules "
        'if m.split(".")[0] in ("torch", "torchvision", "webdataset", "textual"))))'
    )
    env = {**os.environ, "CLUSTERDECK_HOME": str(tmp_path / "home")}
    proc = subprocess.run([sys.executable, "-c", probe, str(spec)], capture_output=True, text=True, env=env, cwd=REPO)
    assert "submitted run" in proc.stdout and "step     train:" in proc.stdout, proc.stderr
    assert proc.stderr.strip().splitlines()[-1] == "[]"
    assert run_cli("cancel", "light", env={"CLUSTERDECK_HOME": str(tmp_path / "home")}).code == 0


@pytest.fixture
def torch_defaults_restored(monkeypatch: pytest.MonkeyPatch) -> Any:
    """``train.deterministic`` changes process-wide torch flags and the environment; later tests get them back."""
    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)
    cudnn = torch.backends.cudnn
    saved = (torch.are_deterministic_algorithms_enabled(), cudnn.deterministic, cudnn.benchmark)
    yield
    torch.use_deterministic_algorithms(saved[0])
    cudnn.deterministic, cudnn.benchmark = saved[1], saved[2]


DETERMINISTIC = {
    "deterministic_algorithms": True,
    "cudnn_deterministic": True,
    "cudnn_benchmark": False,
    "cublas_workspace_config": ":4096:8",
}


def test_deterministic_kernels_are_on_before_the_device_is_set_up(
    sample_shards: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: Any, torch_defaults_restored: Any
) -> None:
    """cuBLAS reads CUBLAS_WORKSPACE_CONFIG when CUDA starts: it must be set before ``setup()``, which starts it."""
    from clusterdeck.jobs.train import determinism, distributed

    at_setup: list[dict[str, object]] = []
    real_setup = distributed.setup

    def observed_setup() -> Any:
        at_setup.append(determinism.state())
        return real_setup()

    monkeypatch.setattr(distributed, "setup", observed_setup)  # process_group calls it
    paths = RunPaths(tmp_path / "run")
    paths.root.mkdir()
    run_train(spec_for(sample_shards, epochs=1, deterministic=True), paths, 1, lambda progress: None)
    assert at_setup == [DETERMINISTIC]
    out = capsys.readouterr().out
    assert f"deterministic kernels: {' '.join(f'{k}={v}' for k, v in DETERMINISTIC.items())}" in out
    assert len(records(paths, "final")) == 1  # it trained, under those flags


def test_deterministic_off_leaves_torch_as_it_is(torch_defaults_restored: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    from clusterdeck.jobs.train import determinism

    before = determinism.state()
    assert determinism.apply(False) is False and determinism.state() == before
    monkeypatch.setenv("CUBLAS_WORKSPACE_CONFIG", ":16:8")  # the other reproducible setting, exported by the user
    assert determinism.apply(True) is True
    assert determinism.state() == {**DETERMINISTIC, "cublas_workspace_config": ":16:8"}
    monkeypatch.setenv("CUBLAS_WORKSPACE_CONFIG", ":0:0")  # not reproducible: replaced
    determinism.apply(True)
    assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":4096:8"


def test_normalize_copies_the_mean_and_std_to_a_device_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """A host-to-device copy per batch blocks the host each step; the constants go to each device once."""
    from clusterdeck.jobs.train.data import IMAGENET_MEAN, IMAGENET_STD
    from clusterdeck.jobs.train.distributed import Dist
    from clusterdeck.jobs.train.evaluate import evaluate
    from clusterdeck.jobs.train.model_input import normalize
    from clusterdeck.jobs.train.precision import Precision

    made: list[str] = []
    real_tensor = torch.tensor

    def counting_tensor(data: Any, *args: Any, **kwargs: Any) -> torch.Tensor:
        if isinstance(data, tuple | list) and tuple(data) in (tuple(IMAGENET_MEAN), tuple(IMAGENET_STD)):
            made.append(str(kwargs.get("device")))
        return real_tensor(data, *args, **kwargs)

    monkeypatch.setattr(torch, "tensor", counting_tensor)
    g = torch.Generator().manual_seed(0)
    batches = [
        (torch.randint(0, 256, (4, 3, 8, 8), dtype=torch.uint8, generator=g), torch.arange(4)) for _ in range(30)
    ]
    mean = real_tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = real_tensor(IMAGENET_STD).view(1, 3, 1, 1)
    for images, _ in batches:
        x = normalize(images, torch.device("cpu"), channels_last=True)
        assert torch.equal(x, ((images.float() / 255 - mean) / std).contiguous(memory_format=torch.channels_last))
        assert normalize(images, torch.device("meta"), channels_last=False).device.type == "meta"
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 8 * 8, 5))
    cpu = Dist(0, 1, 0, torch.device("cpu"))
    result = evaluate(model, batches, cpu, precision=Precision("off", cpu.device), channels_last=False)
    assert result["val_samples"] == 120
    # a device never used before gets exactly one of each; the CPU one at most (an earlier test may have made it)
    assert made.count("meta") == 2 and made.count("cpu") <= 2, made
