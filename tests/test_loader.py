"""The training loader's decoders: the same crops as torchvision draws, pixels that match the PIL reference,
device decoding that gives the workers' batch, sizing from the task's CPUs, and training that learns as well."""

from __future__ import annotations

import contextlib
import functools
import io
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader
from torchvision import transforms
from torchvision.transforms import v2
from webdataset.tariterators import group_by_keys, tar_file_iterator

from clusterdeck.jobs.errors import UserError
from clusterdeck.jobs.metrics import MetricsWriter
from clusterdeck.jobs.rundir import RunPaths
from clusterdeck.jobs.runspec import load_spec, validate
from clusterdeck.jobs.sample_data import SampleData
from clusterdeck.jobs.shard.tarwrite import ShardTarWriter
from clusterdeck.jobs.train.crops import Plan, _decode_reduced, read_header, train_plan, val_plan
from clusterdeck.jobs.train.data import Augment, BatchBuilder, TrainStream, decode
from clusterdeck.jobs.train.device_decode import Encoded, decode_batch
from clusterdeck.jobs.train.distributed import Dist
from clusterdeck.jobs.train.loaders import make_loader
from clusterdeck.jobs.train.loop import Job, Trainer
from clusterdeck.jobs.train.order import steps_per_epoch, train_shares
from clusterdeck.jobs.train.shardread import read_shard
from clusterdeck.jobs.train.shardset import Shard, ShardReadError, read_shardset, train_inputs
from clusterdeck.jobs.train.sizing import CPUS_FOR_CPU_DECODE, DEVICE_WORKERS, size_loader, task_cpus
from clusterdeck.jobs.train.step import run_train
from tests.conftest import SMALL_TRAIN


def jpegs(data: SampleData) -> list[tuple[str, bytes]]:
    return [(p.stem, p.read_bytes()) for p in sorted(data.train.rglob("*.JPEG"))]


def mean_abs_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    assert a.shape == b.shape and a.dtype == b.dtype == torch.uint8
    return float((a.int() - b.int()).abs().float().mean())


def smooth_jpeg(width: int, height: int) -> bytes:
    """A large, smooth photograph-like JPEG: colour gradients and a few discs."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    pixels = np.stack([x / width * 255, y / height * 255, (x + y) / (width + height) * 255], axis=-1)
    for cx, cy, r in [(0.3, 0.4, 0.15), (0.7, 0.6, 0.2)]:
        pixels[(x - cx * width) ** 2 + (y - cy * height) ** 2 < (r * height) ** 2] = (250, 30, 60)
    out = io.BytesIO()
    Image.fromarray(pixels.astype(np.uint8)).save(out, "JPEG", quality=90)
    return out.getvalue()


# --- crops ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("size", [(500, 375), (375, 500), (64, 64), (3, 2), (2000, 100), (100, 2000)])
def test_train_plans_are_what_torchvisions_random_resized_crop_draws(size: tuple[int, int]) -> None:
    width, height = size
    image = Image.new("RGB", size)
    for seed in range(200):
        torch.manual_seed(seed)
        top, left, h, w = transforms.RandomResizedCrop.get_params(image, [0.08, 1.0], [3 / 4, 4 / 3])
        flip = torch.rand(1).item() < 0.5  # RandomHorizontalFlip, drawn next
        plan = train_plan(width, height, torch.Generator().manual_seed(seed))
        assert plan == Plan(top, left, h, w, flip), (size, seed)
        assert plan.top >= 0 and plan.left >= 0
        assert plan.top + plan.height <= height and plan.left + plan.width <= width


def test_val_plans_keep_what_resize_then_center_crop_keeps(sample_data: SampleData) -> None:
    for size in (32, 64, 224):
        reference = v2.Compose([v2.Resize(size * 256 // 224, antialias=True), v2.CenterCrop(size), v2.PILToTensor()])
        ours = Augment(size, "pil", train=False)
        for key, data in jpegs(sample_data)[::7]:
            plan = ours.plan(read_header(data, key), None)
            assert not plan.flip
            assert mean_abs_diff(ours.pixels(data, key, plan, 0), reference(decode(data, key))) < 4, (key, size)
    # 500 × 375 → Resize(256) → 341 × 256 → CenterCrop(224) from (58, 16): × 500/341 and 375/256 in the original
    assert val_plan(500, 375, 224) == Plan(23, 85, 328, 328)


def test_the_cpu_decoder_gives_the_pil_references_pixels(sample_data: SampleData) -> None:
    for size, auto_augment in [(224, ""), (64, ""), (64, "imagenet")]:
        fast = Augment(size, "cpu", train=True, auto_augment=auto_augment)
        reference = Augment(size, "pil", train=True, auto_augment=auto_augment)
        diffs = []
        for n, (key, data) in enumerate(jpegs(sample_data)):
            plan = fast.plan(read_header(data, key), torch.Generator().manual_seed(n))
            diffs.append(mean_abs_diff(fast.pixels(data, key, plan, n), reference.pixels(data, key, plan, n)))
        # the same crop, flip and policy; only the decoder's scale (and so the box's rounding) and the resize kernel
        # differ: at 64 px most of these crops are decoded at 1/2 or 1/4 scale, the worst ones are stripes
        assert max(diffs) < (12 if auto_augment else 6), (size, auto_augment, max(diffs))
        assert sum(diffs) / len(diffs) < (3 if auto_augment else 1.5), (size, auto_augment)


def test_a_crop_much_larger_than_its_output_is_decoded_at_reduced_scale() -> None:
    data = smooth_jpeg(1600, 1200)
    whole = Plan(0, 0, 1200, 1600)
    pixels, scaled = _decode_reduced(data, whole, 64)
    assert pixels.shape == (3, 150, 200)  # libjpeg's 1/8 scale: still >= 64 px a side
    assert scaled == Plan(0, 0, 150, 200)
    pixels, scaled = _decode_reduced(data, Plan(100, 300, 600, 800, True), 200)
    assert pixels.shape == (3, 600, 800)  # 1/2: 800 × 600 / 2 >= 200 a side, 1/4 would not be
    assert scaled == Plan(50, 150, 300, 400, True)
    fast, reference = Augment(64, "cpu", train=True), Augment(64, "pil", train=True)
    for plan in (whole, Plan(100, 300, 600, 800, True), Plan(700, 10, 480, 500)):
        assert mean_abs_diff(fast.pixels(data, "big", plan, 0), reference.pixels(data, "big", plan, 0)) < 2, plan


def other_formats(data: SampleData) -> dict[str, bytes]:
    """One sample image as each kind the shard step keeps its bytes for, and the two torchvision.io gives oddly."""
    image = Image.open(io.BytesIO(jpegs(data)[0][1])).convert("RGB")
    out: dict[str, bytes] = {}
    for name, save in [
        ("bmp", lambda f: image.save(f, "BMP")),
        ("tiff", lambda f: image.save(f, "TIFF")),
        ("gif-animated", lambda f: image.save(f, "GIF", save_all=True, append_images=[image.rotate(90)])),
        ("png-16bit", lambda f: Image.fromarray(np.asarray(image.convert("L"), np.uint16) * 257).save(f, "PNG")),
        ("jpeg-cmyk", lambda f: image.convert("CMYK").save(f, "JPEG", quality=95)),
        ("jpeg-grey", lambda f: image.convert("L").save(f, "JPEG", quality=95)),
    ]:
        buffer = io.BytesIO()
        save(buffer)
        out[name] = buffer.getvalue()
    return out


def test_headers_read_as_pil_reads_them(sample_data: SampleData) -> None:
    progressive = io.BytesIO()
    Image.open(io.BytesIO(jpegs(sample_data)[2][1])).save(progressive, "JPEG", progressive=True, exif=b"Exif\0\0")
    samples = [*jpegs(sample_data), *other_formats(sample_data).items(), ("progressive", progressive.getvalue())]
    for key, data in samples:
        with Image.open(io.BytesIO(data)) as image:
            assert read_header(data, key) == (image.size[0], image.size[1], image.mode), key


def test_every_kind_the_shard_step_keeps_decodes_as_the_reference_does(sample_data: SampleData) -> None:
    for name, data in other_formats(sample_data).items():
        for train in (True, False):
            fast, reference = Augment(64, "cpu", train=train), Augment(64, "pil", train=train)
            plan = fast.plan(read_header(data, name), torch.Generator().manual_seed(1) if train else None)
            got, want = fast.pixels(data, name, plan, 0), reference.pixels(data, name, plan, 0)
            assert mean_abs_diff(got, want) < 3, (name, train)


# --- decoding on the device (run here on the CPU) ------------------------------------------------


def test_device_decoding_gives_the_workers_batch(sample_data: SampleData) -> None:
    samples = jpegs(sample_data)[:10]
    png = io.BytesIO()
    Image.open(io.BytesIO(samples[3][1])).save(png, "PNG")
    samples[3] = ("as_png", png.getvalue())  # not JPEG: decoded in the worker either way
    for auto_augment in ("", "imagenet"):
        # 256 px: none of these crops is 512 px a side, so the worker decodes every pixel too
        worker = BatchBuilder(Augment(256, "cpu", train=True, auto_augment=auto_augment), len(samples))
        device = BatchBuilder(Augment(256, "device", train=True, auto_augment=auto_augment), len(samples))
        for n, (key, data) in enumerate(samples):
            worker.add(key, data, n, torch.Generator().manual_seed(n))
            device.add(key, data, n, torch.Generator().manual_seed(n))
        expected, labels = worker.take()  # type: ignore[misc]
        encoded = device.take()
        assert isinstance(encoded, Encoded)
        assert encoded.at.tolist() == [0, 1, 2, 4, 5, 6, 7, 8, 9] and encoded.ready_at.tolist() == [3]
        images, device_labels = decode_batch(
            encoded, torch.device("cpu"), 256, Augment(256, "device", train=True, auto_augment=auto_augment).extra
        )
        assert torch.equal(device_labels, labels)
        assert torch.equal(images, expected), auto_augment


def test_batches_without_an_rgb_jpeg_are_decoded_in_the_workers(sample_data: SampleData) -> None:
    kinds = other_formats(sample_data)
    png = io.BytesIO()
    Image.open(io.BytesIO(jpegs(sample_data)[1][1])).save(png, "PNG")
    for samples in ([("a.png", png.getvalue()), ("b.png", png.getvalue())], list(kinds.items())):
        for train in (True, False):
            worker = BatchBuilder(Augment(64, "cpu", train=train), 8)
            device = BatchBuilder(Augment(64, "device", train=train), 8)
            for n, (key, data) in enumerate(samples):
                worker.add(key, data, n, torch.Generator().manual_seed(n) if train else None)
                device.add(key, data, n, torch.Generator().manual_seed(n) if train else None)
            expected, labels = worker.take()  # type: ignore[misc]
            encoded = device.take()
            assert isinstance(encoded, Encoded)
            shipped = [samples[k][0] for k in encoded.at.tolist()]
            assert shipped == [k for k, _ in samples if k == "jpeg-grey"]  # CMYK stays in the worker
            images, device_labels = decode_batch(encoded, torch.device("cpu"), 64, None)
            assert torch.equal(device_labels, labels)
            for k, (key, _) in enumerate(samples):  # the grey JPEG: decoded whole on the device, maybe reduced here
                assert mean_abs_diff(images[k], expected[k]) < (3 if key == "jpeg-grey" else 1e-9), key


def test_val_batches_decoded_on_the_device_equal_the_workers(sample_data: SampleData) -> None:
    samples = jpegs(sample_data)[:5]
    worker = BatchBuilder(Augment(224, "cpu", train=False), 8)
    device = BatchBuilder(Augment(224, "device", train=False), 8)
    for n, (key, data) in enumerate(samples):
        worker.add(key, data, n, None)
        device.add(key, data, n, None)
    expected, _ = worker.take()  # type: ignore[misc]
    images, labels = decode_batch(device.take(), torch.device("cpu"), 224, None)  # type: ignore[arg-type]
    assert images.shape == expected.shape == (5, 3, 224, 224)  # a short last batch
    assert torch.equal(images, expected) and labels.tolist() == [0, 1, 2, 3, 4]


@pytest.mark.parametrize("decoder", ["cpu", "device", "pil"])
def test_an_undecodable_sample_is_named(sample_data: SampleData, decoder: str) -> None:
    key, data = jpegs(sample_data)[0]
    builder = BatchBuilder(Augment(64, decoder, train=True), 2)  # type: ignore[arg-type]
    with pytest.raises(ShardReadError, match="sample not_an_image: cannot decode image"):
        builder.add("not_an_image", b"\xff\xd8 not a JPEG at all", 0, torch.Generator().manual_seed(0))

    def run() -> None:
        builder.add(key, data, 0, torch.Generator().manual_seed(0))
        builder.add("truncated", data[: len(data) // 3], 0, torch.Generator().manual_seed(1))  # the header is intact
        batch = builder.take()
        if isinstance(batch, Encoded):
            decode_batch(batch, torch.device("cpu"), 64, None)

    with pytest.raises(
        ShardReadError, match=r"sample truncated: cannot decode image: .*(truncated|incomplete)"
    ) as info:
        run()
    assert ".cpp" not in str(info.value) and not str(info.value).endswith(": ")


# --- reading shards --------------------------------------------------------------------------------


def webdataset_samples(path: Path) -> list[dict[str, Any]]:
    with open(path, "rb") as f:
        files = (
            {**s, "__url__": str(path)} for s in tar_file_iterator(f, select_files=lambda n: not n.endswith(".json"))
        )
        return list(group_by_keys(files))


def shard_at(path: Path) -> Shard:
    return Shard(path.name, path, 0, path.stat().st_size, "")


def test_shards_read_as_webdataset_reads_them(sample_shards: Path) -> None:
    paths = sorted(sample_shards.glob("*.tar"))
    assert paths
    for path in paths:
        ours = list(read_shard(shard_at(path)))
        assert ours and ours == webdataset_samples(path), path


def test_a_shard_with_other_header_kinds_is_read_whole(sample_data: SampleData, tmp_path: Path) -> None:
    images = [data for _, data in jpegs(sample_data)[:5]]
    keys = ["s0", "s1", "k" * 120, "s3", "s4"]  # a 124-character member name: a GNU long-name header mid-shard
    path = tmp_path / "mixed.tar"
    with ShardTarWriter(path) as tar:
        for n, (key, data) in enumerate(zip(keys, images, strict=True)):
            tar.add_sample(key, {"jpg": data, "cls": str(n).encode()})
        tar.close()
    samples = list(read_shard(shard_at(path)))
    assert [s["__key__"] for s in samples] == keys
    assert [s["jpg"] for s in samples] == images and [s["cls"] for s in samples] == [b"0", b"1", b"2", b"3", b"4"]
    assert samples == webdataset_samples(path)


def test_a_pax_shard_and_odd_member_names_read_as_webdataset_reads_them(
    sample_data: SampleData, tmp_path: Path
) -> None:
    """A shard written by tarfile in PAX format (another tool's), with names grouping has to get right."""
    import tarfile

    images = [data for _, data in jpegs(sample_data)[:3]]
    members = [
        ("a/é-0.jpg", images[0]), ("a/é-0.CLS", b"1"),  # non-ASCII: a PAX header; upper-case extension
        ("b.x.y/k1.seg.jpg", images[1]), ("b.x.y/k1.seg.cls", b"2"),  # dots in folders and in extensions
        ("noext", b"skipped"), ("__meta__", b"skipped too"), ("k2.jpg", images[2]), ("k2.json", b"{}"),
    ]  # fmt: skip
    path = tmp_path / "pax.tar"
    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    samples = list(read_shard(shard_at(path)))
    assert samples == webdataset_samples(path)
    assert [sorted(k for k in s if not k.startswith("__")) for s in samples] == [
        ["cls", "jpg"],
        ["seg.cls", "seg.jpg"],
        ["jpg"],
    ]


def test_damaged_shards_are_errors_not_fewer_samples(sample_shards: Path, tmp_path: Path) -> None:
    whole = sorted(sample_shards.glob("train-*.tar"))[0].read_bytes()
    first_size = int(whole[124:136].rstrip(b"\0 "), 8)
    second = 512 + (first_size + 511) // 512 * 512  # the second member's header
    damaged = bytearray(whole)
    damaged[second + 10] ^= 0xFF  # its name, so only the checksum tells
    for name, data, reason in [
        ("bad-checksum.tar", bytes(damaged), "bad tar header checksum at byte"),
        ("cut-in-member.tar", whole[: 512 + 1000], "truncated tar member"),
        ("cut-in-header.tar", whole[: second + 200], "truncated tar header"),
        ("cut-between-members.tar", whole[:second], f"truncated at byte {second}"),
    ]:
        path = tmp_path / name
        path.write_bytes(data)
        with pytest.raises(ShardReadError, match=f"shard {path} is unreadable or corrupt: .*{reason}"):
            list(read_shard(shard_at(path)))
    path = tmp_path / "short.tar"
    path.write_bytes(whole)
    count = len(list(read_shard(shard_at(path))))
    shard = Shard(path.name, path, count + 1, len(whole), "")
    with pytest.raises(ShardReadError, match=f"shard {path} holds {count} samples, its index says {count + 1}"):
        list(read_shard(shard))


# --- sizing ----------------------------------------------------------------------------------------


def test_workers_and_decoder_follow_the_tasks_cpus(monkeypatch: pytest.MonkeyPatch) -> None:
    assert size_loader("auto", "auto", cuda=False, cpus=16).__dict__ == {"decoder": "cpu", "workers": 15, "cpus": 16}
    assert size_loader("auto", "auto", cuda=True, cpus=CPUS_FOR_CPU_DECODE).decoder == "cpu"
    few = size_loader("auto", "auto", cuda=True, cpus=CPUS_FOR_CPU_DECODE - 1)
    assert (few.decoder, few.workers) == ("device", min(CPUS_FOR_CPU_DECODE - 2, DEVICE_WORKERS))
    assert size_loader("auto", "auto", cuda=False, cpus=1).workers == 1  # one worker, beside the trainer
    assert size_loader(3, "pil", cuda=True, cpus=2).__dict__ == {"decoder": "pil", "workers": 3, "cpus": 2}
    assert size_loader(0, "device", cuda=False, cpus=4).workers == 0
    monkeypatch.setenv("SLURM_CPUS_PER_TASK", "1")
    assert task_cpus() == 1
    monkeypatch.setenv("SLURM_CPUS_PER_TASK", "4096")
    assert task_cpus() == len(__import__("os").sched_getaffinity(0))


def test_bad_loader_settings_name_their_key(tmp_path: Path) -> None:
    spec = tmp_path / "spec.toml"
    spec.write_text(
        'name = "t"\n[train]\ntrain_shards = "/x"\nworkers = "many"\ndecode = "gpu"\n'
        '[evaluate]\ncheckpoint = ""\nworkers = -1\n'
    )
    with pytest.raises(UserError) as info:
        load_spec(spec)
    problems = "\n".join(info.value.problems)
    assert (
        "train.workers: a number of loader processes (0: load in the training process) or 'auto', not 'many'"
        in problems
    )
    assert "train.decode: Input should be 'auto', 'cpu', 'device' or 'pil'" in problems
    assert "evaluate.workers: a number of loader processes" in problems and "not -1" in problems


# --- the loaders -------------------------------------------------------------------------------------


def train_loader(shards: list[Shard], *, epoch: int, workers: int, persistent: bool) -> DataLoader[Any]:
    steps = steps_per_epoch(sum(s.samples for s in shards), 1, 8, 1)
    shares = functools.partial(train_shares, shards, seed=5, world=1, rank=0, workers=workers, batches=steps)
    stream = TrainStream(
        shares, epoch=epoch, done=0, batch_size=8, augment=Augment(32, "cpu", train=True), seed=5, shuffle_buffer=20
    )
    return make_loader(stream, workers, pin_memory=False, seed=0, persistent=persistent)


def test_persistent_workers_read_the_next_epoch_each_time(sample_shards: Path) -> None:
    shards = read_shardset(sample_shards, "t").splits["train"]
    persistent = train_loader(shards, epoch=0, workers=2, persistent=True)
    epochs = [[(x.clone(), y) for x, y in persistent] for _ in range(3)]
    for epoch, got in enumerate(epochs):
        fresh = list(train_loader(shards, epoch=epoch, workers=2, persistent=False))
        assert len(got) == len(fresh) > 0
        assert all(torch.equal(a, c) and torch.equal(b, d) for (a, b), (c, d) in zip(got, fresh, strict=True)), epoch
    assert not torch.equal(epochs[0][0][0], epochs[1][0][0])  # the epochs differ


def test_a_resumed_auto_run_keeps_the_worker_count_its_data_order_was_made_with(
    sample_shards: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SLURM_CPUS_PER_TASK", "2")  # "auto": one worker beside the trainer
    spec = validate({"name": "t", "train": {**SMALL_TRAIN, "train_shards": str(sample_shards)}})
    classes, train, _ = train_inputs(spec)

    def trainer(workers: int | str) -> Trainer:
        assert spec.train is not None
        cfg = spec.train.model_copy(update={"workers": workers})
        dist = Dist(rank=0, world=1, local_rank=0, device=torch.device("cpu"))
        return Trainer(Job(cfg, classes, train, [], tmp_path / "ckpt", MetricsWriter(tmp_path / "m.jsonl"), dist))

    trainer(2).save()  # written by a job whose loader had two workers
    auto = trainer("auto")
    assert auto.workers == 1
    with contextlib.redirect_stdout(io.StringIO()) as out:
        auto.restore()
    assert auto.workers == 2
    assert f"train.workers: 2 as when {tmp_path / 'ckpt' / 'last.pt'} was written (not 1)" in out.getvalue()
    explicit = trainer(1)
    explicit.restore()
    assert explicit.workers == 1  # a number in the spec is the user's to change


# --- training ----------------------------------------------------------------------------------------


@pytest.mark.timeout(900)  # about 80 s on an idle CI machine; 290 s were seen with both cores busy elsewhere
def test_the_fast_decoders_train_as_well_as_the_reference(learnable_shards: Path, tmp_path: Path) -> None:
    """8 epochs of ResNet-18 at 64 px, the same seed, crops and data order; only the decoder differs."""
    results: dict[str, dict[str, Any]] = {}
    for decoder in ("pil", "cpu", "device"):
        train = {
            **SMALL_TRAIN,
            "train_shards": str(learnable_shards),
            "image_size": 64,
            "epochs": 8,
            "batch_size": 16,
            "optimizer": "adamw",
            "lr": 0.002,
            "weight_decay": 0.05,
            "schedule": "cosine",
            "log_every_steps": 100,
            "workers": 1,
            "decode": decoder,
        }
        progress: dict[str, Any] = {}
        with contextlib.redirect_stdout(io.StringIO()):
            run_train(validate({"name": "t", "train": train}), RunPaths(tmp_path / decoder), 1, progress.update)
        results[decoder] = progress
    print({decoder: {k: round(got[k], 4) for k in ("top1", "train_loss")} for decoder, got in results.items()})
    chance, n = 1 / 6, 120
    for decoder, got in results.items():
        assert got["top1"] > 2 * chance, (decoder, results)  # each learned, the reference too: a yardstick
    reference = results.pop("pil")  # PIL and torchvision's resized_crop, as torchvision's reference scripts
    # two accuracies on the same 120 images differ by sampling noise alone with this standard deviation
    noise = math.sqrt(2 * reference["top1"] * (1 - reference["top1"]) / n)
    assert sorted(results) == ["cpu", "device"]
    for decoder, got in results.items():  # each fast decoder against the reference, never the reference itself
        assert abs(got["top1"] - reference["top1"]) <= 3 * noise, (decoder, reference, got)
        assert abs(got["train_loss"] - reference["train_loss"]) <= 0.15 * reference["train_loss"], (decoder, got)
