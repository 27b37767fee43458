"""Region decoding in the loader: a crop's box decoded alone gives the whole decode's pixels there, batches stay
within the PIL reference's tolerance, a resumed epoch is bit-identical, nothing is printed about GPU codecs, and
without nvImageCodec the loader decodes as before and says so once."""

from __future__ import annotations

import functools
import hashlib
import io
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from PIL import Image
from torchvision.io import ImageReadMode, decode_jpeg

from clusterdeck.jobs.sample_data import SampleData
from clusterdeck.jobs.train.crops import Plan, _decode_reduced, read_header, train_plan
from clusterdeck.jobs.train.data import Augment, BatchBuilder, TrainStream
from clusterdeck.jobs.train.loaders import make_loader
from clusterdeck.jobs.train.order import steps_per_epoch, train_shares
from clusterdeck.jobs.train.region_decode import decode_region, draft_scale, region_cheaper, region_if_cheaper
from clusterdeck.jobs.train.shardset import ShardReadError, read_shardset
from tests.conftest import REPO
from tests.test_loader import jpegs, mean_abs_diff, smooth_jpeg


def variants(data: SampleData) -> list[tuple[str, bytes]]:
    """Sample JPEGs, and one re-encoded in each layout a region decode must handle: progressive, 4:4:4 chroma,
    grey, and sizes that are no multiple of the 16-pixel MCU."""
    samples = jpegs(data)[:12]
    image = Image.open(io.BytesIO(samples[0][1])).convert("RGB")
    out = []
    for name, made, options in [
        ("progressive", image, {"progressive": True}),
        ("444", image, {"subsampling": 0}),
        ("grey", image.convert("L"), {}),
        ("odd", image.crop((0, 0, 333, 251)), {}),
    ]:
        buffer = io.BytesIO()
        made.save(buffer, "JPEG", quality=90, **options)
        out.append((name, buffer.getvalue()))
    return samples + out


def test_a_region_is_the_whole_decode_cut_to_its_box(sample_data: SampleData) -> None:
    for key, data in variants(sample_data):
        whole = decode_jpeg(torch.frombuffer(bytearray(data), dtype=torch.uint8), mode=ImageReadMode.RGB)
        height, width = whole.shape[1:]
        for seed in range(6):
            plan = train_plan(width, height, torch.Generator().manual_seed(seed))
            region = decode_region(data, plan)
            assert region is not None, key
            box = whole[:, plan.top : plan.top + plan.height, plan.left : plan.left + plan.width]
            assert torch.equal(region, box), (key, plan)
        corner = Plan(height - 3, width - 5, 3, 5)  # a box ending at the image's last row and column
        assert torch.equal(decode_region(data, corner), whole[:, height - 3 :, width - 5 :]), key  # type: ignore[arg-type]


@pytest.mark.parametrize("size", [224, 64])
def test_region_decoded_batches_stay_within_the_pil_references_tolerance(sample_data: SampleData, size: int) -> None:
    samples = variants(sample_data)
    fast = BatchBuilder(Augment(size, "cpu", train=True), len(samples))
    reference = BatchBuilder(Augment(size, "pil", train=True), len(samples))
    assert fast.augment.region
    regions = 0
    for n, (key, data) in enumerate(samples):
        fast.add(key, data, n, torch.Generator().manual_seed(n))
        reference.add(key, data, n, torch.Generator().manual_seed(n))
        plan = train_plan(*read_header(data, key)[:2], torch.Generator().manual_seed(n))
        regions += region_if_cheaper(data, plan, size, key) is not None
    got, _ = fast.take()  # type: ignore[misc]
    want, _ = reference.take()  # type: ignore[misc]
    diffs = [mean_abs_diff(a, b) for a, b in zip(got, want, strict=True)]
    # the tolerances of test_the_cpu_decoder_gives_the_pil_references_pixels
    assert max(diffs) < 6 and sum(diffs) / len(diffs) < 1.5, (size, diffs)
    # every crop at 224 px; at 64 px the large crops go to DCT scaling where the model finds that cheaper
    assert regions == len(samples) if size == 224 else 0 < regions < len(samples), regions


def test_the_cost_model_picks_dct_scaling_for_large_crops_of_large_images() -> None:
    data = smooth_jpeg(1600, 1200)
    for plan, size in [(Plan(0, 0, 1200, 1600), 64), (Plan(100, 300, 600, 800), 200), (Plan(10, 10, 300, 300), 64)]:
        pixels, _ = _decode_reduced(data, plan, size)
        scale = 1600 // pixels.shape[2]
        assert draft_scale(1600, 1200, plan, size) == scale  # what PIL's draft picked
    whole = Plan(0, 0, 1200, 1600)
    assert not region_cheaper(1600, 1200, len(data), whole, 8)  # every pixel at full size, against 1/64 of them
    assert region_if_cheaper(data, whole, 64, "big") is None
    top = Plan(0, 0, 200, 1600)  # a strip at the top: the decode stops after its rows
    assert region_cheaper(1600, 1200, len(data), top, 2)
    assert region_if_cheaper(data, top, 64, "big") is not None


def test_a_stream_cut_below_the_crop_is_still_named_as_broken(sample_data: SampleData) -> None:
    key, data = jpegs(sample_data)[0]
    cut = data[: len(data) * 2 // 3]
    augment = Augment(64, "cpu", train=True)
    top = Plan(0, 0, 16, 16)  # rows a region decode reads before the cut
    assert region_if_cheaper(cut, top, 64, "cut") is None
    with pytest.raises(ShardReadError, match=r"sample cut: cannot decode image: .*(truncated|incomplete)"):
        augment.pixels(cut, "cut", top, 0)
    assert torch.equal(augment.pixels(data + bytes(100), key, top, 0), augment.pixels(data, key, top, 0))  # padding


def epoch_batches(shards_dir: Path, done: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    shards = read_shardset(shards_dir, "t").splits["train"]
    steps = steps_per_epoch(sum(s.samples for s in shards), 1, 8, 1)
    shares = functools.partial(train_shares, shards, seed=3, world=1, rank=0, workers=2, batches=steps)
    augment = Augment(48, "cpu", train=True)
    assert augment.region
    stream = TrainStream(shares, epoch=1, done=done, batch_size=8, augment=augment, seed=3, shuffle_buffer=20)
    return [(x.clone(), y) for x, y in make_loader(stream, 2, pin_memory=False, seed=0)]


def test_a_resumed_epoch_is_bit_identical_with_region_decoding(sample_shards: Path) -> None:
    full = epoch_batches(sample_shards, 0)
    resumed = epoch_batches(sample_shards, 3)
    assert len(full) > 5 and len(resumed) == len(full) - 3
    for (a, b), (c, d) in zip(full[3:], resumed, strict=True):
        assert torch.equal(a, c) and torch.equal(b, d)


RUN_A_BATCH = """
import hashlib, sys
import torch
from clusterdeck.jobs.train.crops import read_header
from clusterdeck.jobs.train.data import Augment, BatchBuilder
sys.stdout.write("start\\n")
for size in (224, 64):
    builder = BatchBuilder(Augment(size, "cpu", train=True), len(sys.argv) - 1)
    for n, path in enumerate(sys.argv[1:]):
        builder.add(str(n), open(path, "rb").read(), n, torch.Generator().manual_seed(n))
    images, _ = builder.take()
    print(size, hashlib.sha256(images.contiguous().numpy().tobytes()).hexdigest())
"""

BLOCK_NVIMGCODEC = """
import importlib.abc, sys
class Absent(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "nvidia.nvimgcodec" or name.startswith("nvidia.nvimgcodec."):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None
sys.meta_path.insert(0, Absent())
"""


def run_a_batch(files: list[Path], *, block: bool) -> subprocess.CompletedProcess[str]:
    code = (BLOCK_NVIMGCODEC if block else "") + RUN_A_BATCH
    return subprocess.run(
        [sys.executable, "-c", code, *map(str, files)], cwd=REPO, capture_output=True, text=True, timeout=120
    )


def batch_digest(files: list[Path], size: int, *, region: bool) -> str:
    augment = Augment(size, "cpu", train=True)
    augment.region = region and augment.region
    builder = BatchBuilder(augment, len(files))
    for n, path in enumerate(files):
        builder.add(str(n), path.read_bytes(), n, torch.Generator().manual_seed(n))
    images, _ = builder.take()  # type: ignore[misc]
    return hashlib.sha256(images.contiguous().numpy().tobytes()).hexdigest()


def test_a_fresh_process_decodes_regions_with_nothing_on_stderr(sample_data: SampleData) -> None:
    files = sorted(sample_data.train.rglob("*.JPEG"))[:10]
    done = run_a_batch(files, block=False)
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""  # nvImageCodec loaded there, its GPU codecs' messages included, prints nothing
    assert done.stdout.splitlines() == [
        "start",
        f"224 {batch_digest(files, 224, region=True)}",
        f"64 {batch_digest(files, 64, region=True)}",
    ]
    # loaded by the first region decode, not by importing the loader, the API or the CLI
    imports = "import sys, clusterdeck, clusterdeck.app.cli, clusterdeck.jobs.train.data; print(sorted(sys.modules))"
    loaded = subprocess.run([sys.executable, "-c", imports], cwd=REPO, capture_output=True, text=True, check=True)
    assert "'clusterdeck.jobs.train.data'" in loaded.stdout and "nvidia.nvimgcodec" not in loaded.stdout


def test_without_nvimgcodec_the_loader_decodes_as_before_and_says_so_once(sample_data: SampleData) -> None:
    files = sorted(sample_data.train.rglob("*.JPEG"))[:10]
    done = run_a_batch(files, block=True)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    said = [line for line in lines if "nvImageCodec" in line]
    assert len(said) == 1 and "not installed" in said[0] and lines.index(said[0]) == 1  # at the first Augment
    others = [line for line in lines if line not in said]
    assert others == [
        "start",
        f"224 {batch_digest(files, 224, region=False)}",
        f"64 {batch_digest(files, 64, region=False)}",
    ]
    assert done.stderr == ""
