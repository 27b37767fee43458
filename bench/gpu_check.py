"""What only a GPU can show about clusterdeck, checked in one run and printed as one table: row, what, result, figure.

    python bench/gpu_check.py              # a GPU node: every row, under 8 minutes on one GPU
    python bench/gpu_check.py --cpu        # no GPU: the rows that can run on the CPU; the others say "no GPU"
    python bench/gpu_check.py --rows bf    # only some rows

a  decode race: long kernels read tensors, the tensors are freed, 64 JPEGs are decoded on the device; the readers'
   sums must be what they read before (the project's decode); says whether the same decoder without its host
   barrier corrupts them
b  device decode against the loader workers' CPU decode on baseline, progressive, grey, CMYK (kept for the CPU),
   truncated and corrupt JPEGs: close pixels, or the same named error
c  a device decode that cannot fit under ``set_per_process_memory_fraction`` ends in the job's one-line
   out-of-memory message, not a sample error
d  peak memory of decoding 64 12-MP JPEGs: torch's allocator against NVML
e  ``Dist.max/sum/gather/sync_buffers/barrier`` over a one-rank NCCL group (gloo on the CPU)
f  ResNet-18 runs with ``deterministic = true``: bf16 with device decode, fp16 with CPU decode (fp32 on the CPU),
   channels-last; SIGUSR2 at step 5, resume: the steps continue, the scaler and RNG states and the weights equal
   an uninterrupted run's
g  the ``gpu`` telemetry record comes from the NVML device whose UUID ``nvidia-smi -L`` lists for this GPU
h  ResNet-50 bf16 on the real loader against synthetic batches (bench/loader.py --train): images/s ratio,
   target >= 0.95 (on the CPU: ResNet-18, tiny, no target)

Exit status: 0 when no row fails, 1 otherwise. The device decode is called in one place, ``device_decode``.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's jobs/, installed or not

import numpy as np
import torch
from PIL import Image

from clusterdeck.jobs.errors import RequeueJob, UserError
from clusterdeck.jobs.metrics import MetricsWriter
from clusterdeck.jobs.rundir import RunPaths
from clusterdeck.jobs.runspec import validate
from clusterdeck.jobs.sample_data import make_sample_data
from clusterdeck.jobs.spec import RunSpec
from clusterdeck.jobs.train import checkpoint
from clusterdeck.jobs.train.crops import read_header
from clusterdeck.jobs.train.data import Augment, BatchBuilder
from clusterdeck.jobs.train.device_decode import NVJPEG_MODES, decode_batch, decode_jpegs
from clusterdeck.jobs.train.distributed import Dist
from clusterdeck.jobs.train.shardset import ShardReadError

MB = 1e6
SIZE = 224
"""Crop size of the decode rows: below twice a 400×300 image's val crop, so the CPU side decodes at full size too."""
PIXEL_TOLERANCE = 3.0
"""Mean absolute difference (of 255) allowed between nvJPEG's and libjpeg-turbo's pixels."""
SLEEP_CYCLES = 2**30
"""GPU clock cycles the race's readers wait before reading (about half a second)."""

warnings.filterwarnings("ignore", message="The image decoding and encoding capabilities of TorchVision")


class Failed(Exception):
    """A row's check did not hold; the message is its figure."""


@dataclass
class Check:
    """What the rows share: the device, a scratch directory, and inputs made once."""

    device: torch.device
    root: Path
    _made: dict[str, Any] = field(default_factory=dict)

    @property
    def cuda(self) -> bool:
        return self.device.type == "cuda"

    def once(self, name: str, make: Callable[[], Any]) -> Any:
        if name not in self._made:
            self._made[name] = make()
        return self._made[name]


# --- the one call into the project's device decoder ------------------------------------------------------------


def device_decode(blobs: list[bytes], keys: list[str], device: torch.device, size: int = SIZE) -> torch.Tensor:
    """``blobs`` as the trainer gets them with ``decode = "device"``: uint8 (n, 3, size, size) val crops.

    A loader worker's ``Encoded`` batch (``BatchBuilder``) through ``decode_batch``, the trainer's own path: every
    guard of ``jobs.train.device_decode`` (stream barrier, pixel-budget chunks, OOM kept as OOM) and the crop."""
    builder = BatchBuilder(Augment(size, "device", train=False), len(blobs))
    for key, blob in zip(keys, blobs, strict=True):
        builder.add(key, blob, 0, None)
    images, _ = decode_batch(builder.take(), device, size, None)  # type: ignore[arg-type]
    return images


def cpu_decode(blobs: list[bytes], keys: list[str], size: int = SIZE) -> torch.Tensor:
    """The same samples as the loader workers decode them with ``decode = "cpu"``."""
    builder = BatchBuilder(Augment(size, "cpu", train=False), len(blobs))
    for key, blob in zip(keys, blobs, strict=True):
        builder.add(key, blob, 0, None)
    images, _ = builder.take()
    return images  # type: ignore[return-value]


# --- inputs ----------------------------------------------------------------------------------------------------


def picture(seed: int, width: int, height: int) -> Image.Image:
    """Smooth colour fields with some detail: decodes like a photograph, compresses like one."""
    rng = np.random.default_rng(seed)
    coarse = Image.fromarray(rng.integers(0, 256, (height // 40 + 2, width // 40 + 2, 3), dtype=np.uint8))
    fine = rng.normal(0, 6, (height, width, 3))
    base = np.asarray(coarse.resize((width, height), Image.Resampling.BICUBIC), dtype=np.float64)
    return Image.fromarray(np.clip(base + fine, 0, 255).astype(np.uint8))


def jpeg(image: Image.Image, **options: Any) -> bytes:
    out = io.BytesIO()
    image.save(out, "JPEG", quality=90, **options)
    return out.getvalue()


def kinds() -> dict[str, bytes]:
    """One JPEG of each kind the decode row compares."""
    image = picture(1, 400, 300)
    baseline = jpeg(image)
    corrupt = bytearray(baseline)
    tables = corrupt.find(b"\xff\xc4")  # the first Huffman table: made invalid, the rest left as it was
    corrupt[tables + 4 : tables + 40] = b"\xff" * 36
    return {
        "baseline": baseline,
        "progressive": jpeg(image, progressive=True),
        "grey": jpeg(image.convert("L")),
        "CMYK": jpeg(image.convert("CMYK")),
        "truncated": baseline[: len(baseline) // 2],
        "corrupt": bytes(corrupt),
    }


def twelve_megapixel(count: int) -> list[bytes]:
    distinct = [jpeg(picture(seed, 4000, 3000)) for seed in range(4)]
    return [distinct[k % len(distinct)] for k in range(count)]


def sample_shards(check: Check) -> Path:
    """The sample dataset (make_sample_data) sharded by the real shard step; made once."""

    def make() -> Path:
        from clusterdeck.jobs.shard.step import run_shard_part

        classes, per_class = (10, 40) if check.cuda else (4, 16)
        data = make_sample_data(check.root / "data", classes=classes, train_per_class=per_class, val_per_class=4)
        output = check.root / "shards"
        shard = {"output": str(output), "shard_size_mb": 0.3, "seed": 0, "workers": 2, **data.shard_inputs()}
        spec = validate({"name": "gpu-check", "cluster": {"executor": "local"}, "shard": shard})
        assert spec.shard is not None
        with contextlib.redirect_stdout(io.StringIO()):
            run_shard_part(spec.shard, "main", lambda progress: None)
        return output

    return check.once("shards", make)


# --- rows ------------------------------------------------------------------------------------------------------


def row_a(check: Check) -> str:
    blobs = check.once("race", lambda: [jpeg(picture(k % 8, 400, 300)) for k in range(64)])
    keys = [f"race/{k}" for k in range(len(blobs))]
    project = readers_corrupted(check.device, lambda: device_decode(blobs, keys, check.device))

    def bare() -> Any:  # the same decoder without its host barrier: what the fix is for
        data = [torch.frombuffer(bytearray(b), dtype=torch.uint8) for b in blobs]
        return decode_jpegs(data, keys, check.device, sync=False)

    unfixed = readers_corrupted(check.device, bare)
    figure = (
        f"project's decode: {project} of {RACE_READERS * RACE_ROUNDS} reads wrong; without the barrier: {unfixed} "
        f"wrong ({'corrupts' if unfixed else 'no corruption seen'} on this GPU)"
    )
    if project:
        raise Failed(figure)
    return figure


RACE_READERS = 64
RACE_ROUNDS = 5


def readers_corrupted(device: torch.device, decode: Callable[[], Any]) -> int:
    """Reads queued behind a sleeping kernel, of tensors freed before ``decode`` runs: how many saw other bytes.

    The caching allocator hands a freed block to the next allocation of the same stream at once, trusting stream
    order; a decoder that writes from elsewhere without waiting for that stream writes under the queued reads."""
    wrong = 0
    for _ in range(RACE_ROUNDS):
        torch.cuda.synchronize(device)
        sources = [torch.full((3, 300, 400), 7, dtype=torch.uint8, device=device) for _ in range(RACE_READERS)]
        expected = 7 * sources[0].numel()
        torch.cuda._sleep(SLEEP_CYCLES)
        sums = [s.sum(dtype=torch.int64) for s in sources]
        del sources
        decode()
        torch.cuda.synchronize(device)
        wrong += sum(int(s.item()) != expected for s in sums)
    return wrong


def row_b(check: Check) -> str:
    shown, bad = [], []
    for kind, data in check.once("kinds", kinds).items():
        key = f"kinds/{kind}"
        on_device = attempt(lambda data=data, key=key: device_decode([data], [key], check.device))
        on_cpu = attempt(lambda data=data, key=key: cpu_decode([data], [key]))
        if isinstance(on_device, torch.Tensor) and isinstance(on_cpu, torch.Tensor):
            diff = float((on_device.cpu().float() - on_cpu.float()).abs().mean())
            kept = " (CPU)" if read_header(data, key).mode not in NVJPEG_MODES else ""
            shown.append(f"{kind}{kept} {diff:.2f}")
            if diff > PIXEL_TOLERANCE:
                bad.append(f"{kind}: pixels differ by {diff:.2f}")
        elif isinstance(on_device, ShardReadError) and isinstance(on_cpu, ShardReadError):
            prefix = f"sample {key}: cannot decode image"
            shown.append(f"{kind}: named")
            if not (str(on_device).startswith(prefix) and str(on_cpu).startswith(prefix)):
                bad.append(f"{kind}: {on_device} / {on_cpu}")
        else:
            bad.append(f"{kind}: device {describe(on_device)}, CPU {describe(on_cpu)}")
    if bad:
        raise Failed("; ".join(bad))
    return "mean |device − CPU|: " + ", ".join(shown)


def attempt(work: Callable[[], torch.Tensor]) -> torch.Tensor | Exception:
    try:
        return work()
    except Exception as exc:
        return exc


def describe(outcome: torch.Tensor | Exception) -> str:
    return "decoded" if isinstance(outcome, torch.Tensor) else f"{type(outcome).__name__}: {outcome}"


def row_c(check: Check) -> str:
    blobs = check.once("12mp", lambda: twelve_megapixel(64))
    keys = [f"big/{k}" for k in range(len(blobs))]
    torch.cuda.empty_cache()
    total = torch.cuda.get_device_properties(check.device).total_memory
    budget = torch.cuda.memory_allocated(check.device) + 256 * 2**20
    torch.cuda.set_per_process_memory_fraction(budget / total, check.device)
    try:
        device_decode(blobs, keys, check.device)
    except torch.OutOfMemoryError as exc:
        line = job_line(exc, check)
        if not line.startswith("CUDA out of memory on"):
            raise Failed(f"out of memory, but the job would say: {line}") from None
        return f"{budget / MB:.0f} MB allowed: {line}"
    except ShardReadError as exc:  # the job would fail naming a sample that is fine
        raise Failed(f"a sample error instead of the out-of-memory line: {str(exc)[:200]}") from None
    finally:
        torch.cuda.set_per_process_memory_fraction(1.0, check.device)
        torch.cuda.empty_cache()
    raise Failed(f"64 × 12 MP decoded within {budget / MB:.0f} MB: the limit did not bind")


def job_line(exc: Exception, check: Check) -> str:
    """The line the train step's error handling makes of ``exc`` (what the job log and ``show`` say)."""
    from clusterdeck.jobs.train.step import _errors_explained

    try:
        with _errors_explained(Dist(0, 1, 0, check.device)):
            raise exc
    except UserError as explained:
        return str(explained)
    except Exception as unexplained:  # kept with its traceback by the job
        return f"{type(unexplained).__name__}: {unexplained}"
    return ""


def row_d(check: Check) -> str:
    from clusterdeck.jobs.telemetry.gpu import GpuProbe

    blobs = check.once("12mp", lambda: twelve_megapixel(64))
    keys = [f"big/{k}" for k in range(len(blobs))]
    index = check.device.index or 0
    probe = GpuProbe.open(index)
    if probe is None or probe.handle is None:
        raise Failed("NVML unavailable: nothing to compare the allocator with")
    torch.cuda.synchronize(check.device)
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats(check.device)
    before = probe.nvml.nvmlDeviceGetMemoryInfo(probe.handle).used
    peak = [before]
    done = threading.Event()

    def watch() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], probe.nvml.nvmlDeviceGetMemoryInfo(probe.handle).used)
            time.sleep(0.002)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        device_decode(blobs, keys, check.device)
        torch.cuda.synchronize(check.device)
    finally:
        done.set()
        watcher.join()
    allocated = torch.cuda.max_memory_allocated(check.device)
    reserved = torch.cuda.max_memory_reserved(check.device)
    pixels = sum(3 * h * w for h, w in (read_header(b, "x")[1::-1] for b in blobs))
    return (
        f"decoded pixels {pixels / MB:.0f} MB; allocator peak {allocated / MB:.0f} MB (reserved {reserved / MB:.0f}); "
        f"NVML peak +{(peak[0] - before) / MB:.0f} MB"
    )


def row_e(check: Check) -> str:
    import torch.distributed as torch_dist
    import torchvision

    backend = "nccl" if check.cuda else "gloo"
    if check.cuda:
        torch.cuda.set_device(check.device)
    torch_dist.init_process_group(backend, init_method=f"file://{check.root / 'rendezvous'}", rank=0, world_size=1)
    try:
        # a one-rank group, and a Dist told of two ranks: every method takes the branch that calls the collective
        d = Dist(0, 2, 0, check.device)
        started = time.perf_counter()
        if d.max([1.0, 0.0]) != [1.0, 0.0]:
            raise Failed("Dist.max changed the values of a one-rank group")
        summed = d.sum(torch.tensor([2.0, 3.0], dtype=torch.float64, device=check.device))
        if summed.tolist() != [2.0, 3.0]:
            raise Failed(f"Dist.sum gave {summed.tolist()}")
        if d.gather({"digest": "abc"})[0] != {"digest": "abc"}:
            raise Failed("Dist.gather lost rank 0's object")
        model = torchvision.models.resnet18(num_classes=10).to(check.device)
        before = [b.clone() for b in model.buffers()]
        d.sync_buffers(model)
        if not all(torch.equal(a, b) for a, b in zip(before, model.buffers(), strict=True)):
            raise Failed("Dist.sync_buffers changed rank 0's buffers")
        d.barrier()
        if check.cuda:
            torch.cuda.synchronize(check.device)
        took = time.perf_counter() - started
    finally:
        torch_dist.destroy_process_group()
    return (
        f"{backend}: max, sum (float64), gather, sync_buffers ({len(before)} buffers), barrier in {took * 1000:.0f} ms"
    )


def row_f(check: Check) -> str:
    shards = sample_shards(check)
    # on the CPU fp32 only: bf16 autocast there triples the row's time and shows nothing a GPU run does not
    variants = [("bf16", "device"), ("fp16", "cpu")] if check.cuda else [("off", "cpu")]
    shown = []
    for amp, decode in variants:
        spec = validate(
            {
                "name": "gpu-check",
                "train": {
                    "train_shards": str(shards),
                    "model": "resnet18",
                    "image_size": 64 if check.cuda else 32,
                    "epochs": 2 if check.cuda else 1,
                    "batch_size": 16 if check.cuda else 8,
                    "lr": 0.05,
                    "amp": amp,
                    "channels_last": True,
                    "decode": decode,
                    "deterministic": True,
                    "workers": 2,
                    "log_every_steps": 1,
                    "checkpoint_every_min": 10,
                },
            }
        )
        try:
            shown.append(f"{amp}/{decode}: " + stop_and_resume(check, spec, f"{amp}-{decode}"))
        finally:  # deterministic kernels are for this row only: row h measures the default ones
            torch.use_deterministic_algorithms(False)
            torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = False, False
    return "; ".join(shown)


def stop_and_resume(check: Check, spec: RunSpec, name: str) -> str:
    """An uninterrupted run, and one stopped by SIGUSR2 at step 5 and resumed: the same steps, states and weights."""
    from clusterdeck.jobs.train.step import run_train

    straight, stopped = RunPaths(check.root / f"{name}-straight"), RunPaths(check.root / f"{name}-stopped")
    for paths in (straight, stopped):
        paths.root.mkdir()

    def signal_at_step_5(progress: dict[str, float]) -> None:
        if progress.get("step") == 5:
            os.kill(os.getpid(), signal.SIGUSR2)

    with contextlib.redirect_stdout(io.StringIO()):
        run_train(spec, straight, 1, lambda progress: None)
        try:
            run_train(spec, stopped, 1, signal_at_step_5)
            raise Failed("SIGUSR2 at step 5 did not stop the run")
        except RequeueJob as stop:
            if "stopped at step 5" not in str(stop):
                raise Failed(f"stopped otherwise: {stop}") from None
        at_stop = checkpoint.load(stopped.checkpoints / "last.pt")
        run_train(spec, stopped, 2, lambda progress: None)
    steps = [r["step"] for r in records(stopped, "train")]
    if steps != list(range(1, len(records(straight, "train")) + 1)):
        raise Failed(f"the resumed steps are {steps}")
    if check.cuda and "cuda" not in at_stop["rng"][0]:
        raise Failed("the checkpoint at step 5 holds no CUDA RNG state")
    a, b = checkpoint.load(straight.checkpoints / "last.pt"), checkpoint.load(stopped.checkpoints / "last.pt")
    if a["scaler"] != b["scaler"]:
        raise Failed(f"scaler {b['scaler']} after resuming, {a['scaler']} uninterrupted")
    for source in a["rng"][0]:
        if not equal(a["rng"][0][source], b["rng"][0][source]):
            raise Failed(f"the {source} RNG state differs from the uninterrupted run's")
    digests = [records(p, "final")[0]["weights_sha256"][0] for p in (straight, stopped)]
    if digests[0] != digests[1]:
        raise Failed(f"weights differ after the resume ({digests[1][:12]} vs {digests[0][:12]})")
    scale = f", scale {a['scaler'].get('scale')}" if a["scaler"] else ""
    return f"steps 1–{len(steps)}, stop at 5, scaler{scale} and RNG equal, weights equal ({digests[0][:12]})"


def equal(a: Any, b: Any) -> bool:
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and torch.equal(a, b)
    if isinstance(a, tuple | list):
        return isinstance(b, tuple | list) and len(a) == len(b) and all(map(equal, a, b))
    return bool(a == b)


def records(paths: RunPaths, kind: str) -> list[dict[str, Any]]:
    import json

    lines = paths.metrics.read_text().splitlines() if paths.metrics.exists() else []
    return [r for r in map(json.loads, lines) if r["kind"] == kind]


def row_g(check: Check) -> str:
    import json

    from clusterdeck.jobs.telemetry.sampler import Sampler

    index = check.device.index or 0
    out = check.root / "telemetry.jsonl"
    sampler = Sampler(MetricsWriter(out), None, interval=0.1, node_wide=False)
    sampler.watch_gpu(index)
    deadline = time.monotonic() + 30
    with sampler:
        while sampler.samples < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
    gpu = [r for r in map(json.loads, out.read_text().splitlines()) if r["kind"] == "gpu"]
    probe = sampler.gpu
    if not gpu or probe is None or probe.handle is None or "used_mb" not in gpu[-1]:
        raise Failed("no gpu record with NVML's figures")
    uuid = probe.nvml.nvmlDeviceGetUUID(probe.handle)
    uuid = uuid.decode() if isinstance(uuid, bytes) else uuid
    torch_uuid = str(torch.cuda.get_device_properties(index).uuid)
    listed = re.findall(
        r"UUID: ((?:GPU|MIG)-[0-9a-fA-F-]+)",
        subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True).stdout,
    )
    if uuid not in listed:
        raise Failed(f"NVML's {uuid} is not in nvidia-smi -L ({', '.join(listed)})")
    if uuid.split("-", 1)[1] != torch_uuid.removeprefix("GPU-").removeprefix("MIG-"):
        raise Failed(f"NVML's {uuid} is not torch's {torch_uuid}")
    return f"{uuid} (nvidia-smi -L, torch); record: used {gpu[-1]['used_mb']:.0f} of {gpu[-1]['total_mb']:.0f} MB"


def row_h(check: Check) -> str:
    import loader  # bench/loader.py: the trainer on the real loader and on synthetic batches

    args = argparse.Namespace(
        train="resnet50" if check.cuda else "resnet18",
        images=3000 if check.cuda else 48,
        image_size=224 if check.cuda else 32,
        batch=96 if check.cuda else 8,
        workers=(os.cpu_count() or 2) if check.cuda else 1,
        amp="bf16" if check.cuda else "off",
        decode="device" if check.cuda else "cpu",
        device=str(check.device),
    )
    root = check.root / "h"
    root.mkdir()
    with contextlib.redirect_stdout(io.StringIO()):
        real, fake, steps = loader.train_ratio(args, root)
    figure = (
        f"{args.train} {args.amp}, decode {args.decode}, {steps} steps: "
        f"real {real:.0f} / synthetic {fake:.0f} images/s = {real / fake:.2f}"
    )
    if not check.cuda:
        return figure + " (CPU, tiny: the 0.95 target is for a GPU)"
    if real / fake < 0.95:
        raise Failed(figure + " < 0.95")
    return figure + " (target ≥ 0.95)"


@dataclass(frozen=True)
class Row:
    letter: str
    what: str
    run: Callable[[Check], str]
    gpu_only: bool


ROWS = [
    Row("a", "decode race: freed tensors, 64 JPEGs", row_a, True),
    Row("b", "device vs CPU decode, 6 kinds of JPEG", row_b, False),
    Row("c", "decode out of memory: one-line message", row_c, True),
    Row("d", "peak memory, 64 × 12 MP: allocator vs NVML", row_d, True),
    Row("e", "Dist collectives, one rank", row_e, False),
    Row("f", "ResNet-18: USR2 at step 5, resume, same weights", row_f, False),
    Row("g", "gpu record's NVML device = nvidia-smi -L UUID", row_g, True),
    Row("h", "real loader / synthetic images/s", row_h, False),
]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cpu", action="store_true", help="no GPU: run what the CPU can, mark the rest 'no GPU'")
    parser.add_argument("--rows", default="abcdefgh", help="the rows to run, e.g. 'bf'")
    args = parser.parse_args()
    if not args.cpu and not torch.cuda.is_available():
        print("gpu_check: no CUDA device here; --cpu runs the rows that need none", file=sys.stderr)
        return 2
    # what train.deterministic does in a job before CUDA starts; here CUDA starts in row a, before row f needs it
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    device = torch.device("cpu") if args.cpu else torch.device("cuda", 0)
    started = time.monotonic()
    table: list[tuple[str, str, str, str]] = []
    root = Path(tempfile.mkdtemp(prefix="gpu-check-", dir=os.environ.get("BENCH_DIR")))
    try:
        check = Check(device, root)
        for row in (r for r in ROWS if r.letter in args.rows):
            took = time.monotonic()
            if row.gpu_only and not check.cuda:
                result, figure = "no GPU", ""
            else:
                try:
                    result, figure = "pass", row.run(check)
                except Failed as failed:
                    result, figure = "FAIL", str(failed)
                except Exception as exc:  # a row that breaks is a failed row; the others still run
                    last = (str(exc).strip().splitlines() or [""])[-1]
                    result, figure = "FAIL", f"{type(exc).__name__}: {last}"
            print(f"[gpu_check] {row.letter} {result} in {time.monotonic() - took:.1f} s", file=sys.stderr, flush=True)
            table.append((row.letter, row.what, result, figure))
    finally:
        shutil.rmtree(root, ignore_errors=True)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    print(f"gpu_check on {name}, torch {torch.__version__}, {time.monotonic() - started:.0f} s")
    width = max(len(r[1]) for r in table)
    print(f"{'row':<4}{'what':<{width + 2}}{'result':<8}figure")
    for letter, what, result, figure in table:
        print(f"{letter:<4}{what:<{width + 2}}{result:<8}{figure}")
    return 1 if any(r[2] == "FAIL" for r in table) else 0


if __name__ == "__main__":
    sys.exit(main())
