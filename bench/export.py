"""Export throughput and memory: ``clusterdeck export`` against the obvious numpy script, and from JPEG shards.

npz: --rows photo-like 64×64 images (1/f noise, as bench/loader.py draws them) in one
``np.savez`` batch become the four CSV files of an 80/20 split, 6 decimals, CHW rows:

- numpy: the whole ``data`` as float32 / 255, permuted, ``np.savetxt(fmt="%.6f")`` for pixels
  and ``np.savetxt(fmt="%d")`` for one-hot labels: what a script does when it fits in memory;
- ours: ``clusterdeck export --samples ROWS``, streaming.

Each runs in its own process, alternating for --repeat rounds; wall time (process start
included), peak RSS (the process's VmHWM) and bytes written are measured (numpy's files are larger:
``%.6f`` keeps trailing zeros). Prints rows/s, MB/s, peak RSS, and numpy's time over ours (above 1:
ours is faster) as the median of the rounds' ratios.

``--jpegs N`` also shards N photo-like JPEGs at ImageNet's sizes (bench/loader.py's) and
times ``clusterdeck export`` of all of them at 64 px with 1 and 2 decoding workers.

    python bench/export.py [--rows 5000] [--repeat 3] [--jpegs 2000]
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from loader import make_tree, photo  # bench/loader.py
from shard import ours as shard_tree  # bench/shard.py

REPO = Path(__file__).resolve().parent.parent
NUMPY_SCRIPT = """
import sys
import numpy as np
npz, out, classes = sys.argv[1], sys.argv[2], int(sys.argv[3])
with np.load(npz) as z:
    data, labels = z["data"], z["labels"] - 1
x = data.astype(np.float32) / 255
order = np.random.default_rng(0).permutation(len(x))
train, val = order[: len(x) * 4 // 5], order[len(x) * 4 // 5 :]
one_hot = np.eye(classes, dtype=np.int8)[labels]
for name, rows in (("train", train), ("val", val)):
    np.savetxt(f"{out}/numpy_{name}.csv", x[rows], fmt="%.6f", delimiter=",")
    np.savetxt(f"{out}/numpy_{name}_labels.csv", one_hot[rows], fmt="%d", delimiter=",")
"""


PEAK = "\nprint(next(l for l in open('/proc/self/status') if l.startswith('VmHWM')), file=sys.stderr)"


def timed(code: str, *args: str) -> tuple[float, int]:
    """(wall seconds, peak RSS bytes) of ``python -c code args``: VmHWM, this process image's own peak (a fork's
    ``ru_maxrss`` would count this benchmark's memory too)."""
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", code + PEAK, *args], cwd=REPO, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    peak = re.search(r"VmHWM:\s+(\d+) kB", proc.stderr)
    if proc.returncode != 0 or peak is None:
        raise SystemExit(f"{code[:40]}… {args} failed: {proc.stderr[-2000:]}")
    return seconds, int(peak.group(1)) * 1024


def export(*args: str) -> tuple[float, int]:
    return timed("import sys\nfrom clusterdeck.app.cli import main\nassert main(['export', *sys.argv[1:]]) == 0", *args)


def written(out: Path) -> int:
    return sum(p.stat().st_size for p in out.glob("*.csv"))


def make_npz(path: Path, rows: int, classes: int, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    data = np.stack([np.asarray(photo(rng, 64, 64)).transpose(2, 0, 1).reshape(-1) for _ in range(rows)])
    np.savez(path, data=data, labels=rng.integers(1, classes + 1, rows))


def npz_rounds(root: Path, rows: int, repeat: int, classes: int) -> None:
    npz = root / "batch.npz"
    make_npz(npz, rows, classes)
    print(f"{rows} rows of 64×64×3, {classes} classes, {npz.stat().st_size / 1e6:.0f} MB npz, {os.cpu_count()} cores")
    ratios, rates = [], {"numpy": [], "ours": []}  # type: ignore[var-annotated]
    for r in range(repeat):
        figures = {}
        for name in ("numpy", "ours") if r % 2 == 0 else ("ours", "numpy"):
            out = root / name
            shutil.rmtree(out, ignore_errors=True)
            out.mkdir()
            if name == "numpy":
                seconds, peak = timed(NUMPY_SCRIPT, str(npz), str(out), str(classes))
            else:
                seconds, peak = export(str(npz), "--out", str(out), "--samples", str(rows), "--workers", "1")
            size = written(out)
            figures[name] = seconds
            rates[name].append(size / 1e6 / seconds)
            print(f"  round {r + 1} {name:<5} {seconds:6.1f} s  {rows / seconds:6.0f} rows/s  {size / 1e9:.3f} GB  "
                  f"{size / 1e6 / seconds:5.0f} MB/s  peak RSS {peak / 2**20:6.0f} MiB")  # fmt: skip
        ratios.append(figures["numpy"] / figures["ours"])
    print(f"numpy {statistics.median(rates['numpy']):.0f} MB/s, ours {statistics.median(rates['ours']):.0f} MB/s")
    spread = f"rounds {min(ratios):.2f}–{max(ratios):.2f}"
    print(f"numpy time / ours: {statistics.median(ratios):.2f} (median of {repeat}; {spread})")


def jpeg_export(root: Path, images: int) -> None:
    tree = make_tree(root / "jpegs", images)
    shard_tree(tree, root / "shards", 16.0, 2)
    for workers in (1, 2):
        out = root / f"jpeg-out-{workers}"
        seconds, peak = export(str(root / "shards"), "--out", str(out), "--samples", str(images), "--workers",
                               str(workers))  # fmt: skip
        print(f"JPEG shards → 64 px CSV, {workers} worker(s): {images / seconds:.0f} images/s "
              f"({seconds:.1f} s, peak RSS of the main process {peak / 2**20:.0f} MiB)")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=5000)
    parser.add_argument("--classes", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--jpegs", type=int, default=2000, help="0 skips the JPEG shard export")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-export-", dir=os.environ.get("BENCH_DIR")) as tmp:
        npz_rounds(Path(tmp), args.rows, args.repeat, args.classes)
        if args.jpegs:
            jpeg_export(Path(tmp), args.jpegs)


if __name__ == "__main__":
    main()
