"""The device decoder's guards, run on the CPU: the host barrier before each decode, out of memory kept as such,
chunked decoding that frees each full-size image once cropped, and broken JPEGs named as the CPU path names them.

Only the CUDA boundary is faked: ``torch.cuda.current_stream`` (there is no GPU here) and, where a GPU's
behaviour is the point, the ``decode_jpeg`` the module calls (wrapping the real CPU decoder where pixels matter).
"""

from __future__ import annotations

import io
import weakref
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from PIL import Image
from torchvision.io import decode_jpeg

from clusterdeck.jobs.errors import UserError
from clusterdeck.jobs.rundir import RunPaths
from clusterdeck.jobs.sample_data import SampleData
from clusterdeck.jobs.train import device_decode
from clusterdeck.jobs.train.crops import decode_whole
from clusterdeck.jobs.train.data import Augment, BatchBuilder
from clusterdeck.jobs.train.device_decode import Encoded, decode_batch, decode_jpegs
from clusterdeck.jobs.train.jpeg_check import BrokenJpeg, check_jpeg
from clusterdeck.jobs.train.shardset import ShardReadError
from clusterdeck.jobs.train.step import run_train
from tests.test_loader import jpegs
from tests.test_train import spec_for

Decoder = Callable[..., Any]


def tensor(data: bytes) -> torch.Tensor:
    return torch.frombuffer(bytearray(data), dtype=torch.uint8)


def encoded(samples: list[tuple[str, bytes]], size: int) -> Encoded:
    builder = BatchBuilder(Augment(size, "device", train=True), len(samples))
    for n, (key, data) in enumerate(samples):
        builder.add(key, data, n, torch.Generator().manual_seed(n))
    batch = builder.take()
    assert isinstance(batch, Encoded) and len(batch.at) == len(samples)
    return batch


# --- 1. the host barrier before every device decode -----------------------------------------------------


class Events:
    """What crossed the CUDA boundary, in order."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, refuse_batches: bool = False) -> None:
        self.log: list[str] = []
        self.streams_of: list[torch.device] = []
        events = self

        class Stream:
            def synchronize(self) -> None:
                events.log.append("sync")

        def current_stream(device: torch.device) -> Stream:
            self.streams_of.append(device)
            return Stream()

        def decode(data: Any, mode: Any, device: Any) -> Any:
            batched = isinstance(data, list) and len(data) > 1
            self.log.append("decode batch" if batched else "decode")
            if batched and refuse_batches:
                raise RuntimeError("Error while decoding JPEG images: unsupported")  # as nvJPEG refuses a batch
            return decode_jpeg(data, mode=mode)  # the pixels from the CPU decoder

        monkeypatch.setattr(torch.cuda, "current_stream", current_stream)
        monkeypatch.setattr(device_decode, "decode_jpeg", decode)


@pytest.mark.parametrize("refuse_batches", [False, True])
def test_the_callers_stream_is_drained_before_every_cuda_decode(
    sample_data: SampleData, monkeypatch: pytest.MonkeyPatch, refuse_batches: bool
) -> None:
    samples = jpegs(sample_data)[:6]
    events = Events(monkeypatch, refuse_batches)
    budget = 3 * max(check_jpeg(data).width * check_jpeg(data).height for _, data in samples)
    got = decode_jpegs([tensor(d) for _, d in samples], [k for k, _ in samples], "cuda:1", pixel_budget=budget)
    decodes = [n for n, event in enumerate(events.log) if event.startswith("decode")]
    assert len(decodes) >= (6 if refuse_batches else 2)  # chunks, or each image after a refused batch
    assert all(events.log[n - 1] == "sync" for n in decodes), events.log
    assert events.log.count("sync") == len(decodes)
    assert set(events.streams_of) == {torch.device("cuda:1")}  # the caller's stream on the decoding device
    assert all(torch.equal(a, decode_whole(data)) for a, (_, data) in zip(got, samples, strict=True))


def test_no_barrier_off_cuda_or_when_asked_for_none(sample_data: SampleData, monkeypatch: pytest.MonkeyPatch) -> None:
    samples = jpegs(sample_data)[:3]
    blobs, keys = [tensor(d) for _, d in samples], [k for k, _ in samples]
    events = Events(monkeypatch)
    decode_jpegs(blobs, keys, "cpu")
    decode_jpegs(blobs, keys, "cuda", sync=False)  # what bench/gpu_check.py runs to show the unguarded decoder
    assert events.log == ["decode batch", "decode batch"] and events.streams_of == []


# --- 2. out of memory is out of memory, not a bad sample ---------------------------------------------------

OUT_OF_MEMORY = [
    torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 1.50 GiB"),
    RuntimeError("Error while decoding JPEG images: CUDA out of memory. Tried to allocate 1.50 GiB"),  # torchvision's
]


def failing(exc: Exception) -> Decoder:
    def decode(data: Any, mode: Any, device: Any) -> Any:
        raise exc

    return decode


@pytest.mark.parametrize("exc", OUT_OF_MEMORY, ids=["OutOfMemoryError", "wrapped"])
def test_out_of_memory_while_decoding_is_raised_as_such(
    sample_data: SampleData, monkeypatch: pytest.MonkeyPatch, exc: Exception
) -> None:
    monkeypatch.setattr(device_decode, "decode_jpeg", failing(exc))
    with pytest.raises(torch.OutOfMemoryError, match=r"CUDA out of memory\. Tried to allocate 1.50 GiB") as info:
        decode_batch(encoded(jpegs(sample_data)[:4], 64), torch.device("cpu"), 64, None)
    assert not isinstance(info.value, ShardReadError) and "sample" not in str(info.value)


@pytest.mark.parametrize("exc", OUT_OF_MEMORY, ids=["OutOfMemoryError", "wrapped"])
def test_the_trainer_reports_out_of_memory_in_the_decoder_as_out_of_memory(
    sample_shards: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, exc: Exception
) -> None:
    monkeypatch.setattr(device_decode, "decode_jpeg", failing(exc))
    paths = RunPaths(tmp_path / "run")
    paths.root.mkdir()
    with pytest.raises(UserError) as info:
        run_train(spec_for(sample_shards, decode="device", workers=0), paths, 1, lambda progress: None)
    assert str(info.value).startswith("CUDA out of memory on cpu (rank 0): lower train.batch_size")
    assert "cannot decode" not in str(info.value)


# --- 6. chunks, and each full-size image freed once cropped ------------------------------------------------


def test_full_size_images_live_a_chunk_at_a_time_and_crop_as_one_batch(
    sample_data: SampleData, monkeypatch: pytest.MonkeyPatch
) -> None:
    samples = jpegs(sample_data)[:12]
    pixels = [check_jpeg(data).width * check_jpeg(data).height for _, data in samples]
    budget = 3 * max(pixels)  # at least three images a call, at most budget // min(pixels)
    batch = encoded(samples, 64)
    unchunked, labels = decode_batch(batch, torch.device("cpu"), 64, None)
    alive: list[weakref.ref[torch.Tensor]] = []
    calls: list[tuple[int, int]] = []  # (full-size images alive from earlier calls, images this call) per call

    def decode(data: Any, mode: Any, device: Any) -> Any:
        out = decode_jpeg(data, mode=mode)
        out = out if isinstance(out, list) else [out]
        calls.append((sum(ref() is not None for ref in alive), len(out)))
        alive.extend(weakref.ref(image) for image in out)
        return out if isinstance(data, list) else out[0]

    monkeypatch.setattr(device_decode, "decode_jpeg", decode)
    chunked, chunked_labels = decode_batch(batch, torch.device("cpu"), 64, None, pixel_budget=budget)
    assert torch.equal(chunked, unchunked) and torch.equal(chunked_labels, labels)
    assert len(calls) >= 3 and sum(n for _, n in calls) == 12, calls
    assert all(earlier == 0 for earlier, _ in calls), calls  # the last chunk's images were all freed, once cropped
    assert max(n for _, n in calls) <= budget // min(pixels)
    assert all(ref() is None for ref in alive)


def test_chunks_keep_to_the_pixel_budget() -> None:
    assert list(device_decode._chunks([4, 4, 4, 9, 1, None, 1], 8)) == [(0, 2), (2, 3), (3, 4), (4, 7)]
    assert list(device_decode._chunks([], 8)) == []


# --- 7. truncated and corrupt JPEGs: the device path names them as the CPU path does -----------------------


def broken(data: bytes) -> dict[str, bytes]:
    """The sample JPEG cut short or with bytes overwritten, each a way libjpeg refuses and nvJPEG may not."""
    scan = data.index(b"\xff\xda")

    def put(at: int, new: bytes) -> bytes:
        return data[:at] + new + data[at + len(new) :]

    return {
        "cut-in-half": data[: len(data) // 2],
        "cut-before-eoi": data[:-2],
        "cut-in-headers": data[: scan - 20],
        "marker-in-scan": put(scan + len(data) // 4, b"\xff\xc9"),
        "second-soi": put(scan + len(data) // 4, b"\xff\xd8"),
        "segment-length": put(4, b"\xff\xf0"),
        "no-scan-header": put(scan, b"\0\0"),
    }


def named_error(run: Callable[[], object]) -> str:
    with pytest.raises(ShardReadError) as info:
        run()
    return str(info.value)


def cpu_and_device_errors(key: str, bad: bytes, good: list[tuple[str, bytes]]) -> tuple[str, str]:
    samples = [*good, (key, bad)]
    cpu = BatchBuilder(Augment(256, "cpu", train=True), len(samples))  # 256 px: the CPU decodes every pixel

    def on_cpu() -> None:
        for n, (k, data) in enumerate(samples):
            cpu.add(k, data, n, torch.Generator().manual_seed(n))

    return named_error(on_cpu), named_error(lambda: decode_batch(encoded(samples, 256), torch.device("cpu"), 256, None))


def test_broken_jpegs_are_named_alike_by_the_device_and_cpu_paths(sample_data: SampleData) -> None:
    good = jpegs(sample_data)[:3]
    for name, bad in broken(good[0][1]).items():
        cpu, device = cpu_and_device_errors(name, bad, good)
        assert cpu.startswith(f"sample {name}: cannot decode image: ") and device == cpu, name


def test_a_decoder_that_accepts_broken_jpegs_silently_never_sees_them(
    sample_data: SampleData, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As nvJPEG's hardware path may: whatever it is given, it returns an image of the frame header's size."""
    good = jpegs(sample_data)[:3]
    seen: list[bytes] = []

    def silent(data: Any, mode: Any, device: Any) -> Any:
        blobs = data if isinstance(data, list) else [data]
        seen.extend(blob.numpy().tobytes() for blob in blobs)
        sizes = [Image.open(io.BytesIO(blob.numpy().tobytes())).size for blob in blobs]  # PIL reads cut headers too
        out = [torch.zeros((3, height, width), dtype=torch.uint8) for width, height in sizes]
        return out if isinstance(data, list) else out[0]

    monkeypatch.setattr(device_decode, "decode_jpeg", silent)
    cases = broken(good[0][1])
    for name, bad in cases.items():
        cpu, device = cpu_and_device_errors(name, bad, good)
        assert device == cpu and cpu.startswith(f"sample {name}: cannot decode image: "), name
    assert seen and not set(seen) & set(cases.values())  # only the whole JPEGs reached the device decoder


def kinds_of_valid_jpeg(data: bytes) -> dict[str, bytes]:
    image = Image.open(io.BytesIO(data)).convert("RGB")
    out: dict[str, bytes] = {}
    for name, mode, options in [
        ("progressive", "RGB", {"progressive": True}),
        ("grey", "L", {}),
        ("grey-progressive", "L", {"progressive": True}),
        ("restart-markers", "RGB", {"restart_marker_blocks": 1}),
        ("restart-progressive", "RGB", {"restart_marker_rows": 1, "progressive": True}),
        ("444-optimized-exif", "RGB", {"subsampling": 0, "optimize": True, "exif": b"Exif\0\0" + b"\0" * 40}),
        ("with-comment", "RGB", {"comment": b"a comment"}),
    ]:
        buffer = io.BytesIO()
        image.convert(mode).save(buffer, "JPEG", quality=90, **options)
        out[name] = buffer.getvalue()
    out["zero-padding"] = out["progressive"] + b"\0" * 300
    out["appended-jpeg"] = out["grey"] + out["progressive"]  # multi-picture files append their other images
    return out


def test_every_kind_of_whole_jpeg_goes_to_the_device_decoder(sample_data: SampleData) -> None:
    kinds = kinds_of_valid_jpeg(jpegs(sample_data)[4][1])
    for name, data in kinds.items():
        assert check_jpeg(data) == Image.open(io.BytesIO(data)).size, name  # BrokenJpeg: sent to the CPU
    got = decode_jpegs([tensor(d) for d in kinds.values()], list(kinds), "cpu")
    assert all(torch.equal(a, decode_whole(d)) for a, d in zip(got, kinds.values(), strict=True))


def test_the_check_finds_every_cut(sample_data: SampleData) -> None:
    data = jpegs(sample_data)[0][1]
    for cut in [*range(0, len(data) - 2, 37), *range(len(data) - 40, len(data))]:
        with pytest.raises(BrokenJpeg):
            check_jpeg(data[:cut])
    assert check_jpeg(data) == Image.open(io.BytesIO(data)).size
    frame = data.index(b"\xff\xc0")
    with pytest.raises(BrokenJpeg, match="no size"):  # the workers' header read refuses this one already
        check_jpeg(data[: frame + 5] + b"\0\0\0\0" + data[frame + 9 :])
