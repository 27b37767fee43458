"""How staging copies a shard, chosen by measuring: four ways to copy and hash files against `cp -r`, in-process.

    python bench/copy_methods.py [--files 6] [--mb 256] [--streams 4] [--rounds 3]

Writes --files random files of --mb MB, then, in each of --rounds rounds, copies them all with --streams
threads by each method (the page cache dropped before each, as root), to the end of a ``sync``:

- ``buffer``:   read into a reused 16 MiB buffer, hash it (xxh3-128), write it (what staging did before);
- ``range``:    ``copy_file_range`` per 16 MiB chunk, then the chunk read back from the copy and hashed (staging now);
- ``sendfile``: the same with ``sendfile`` (what staging falls back to between filesystems);
- ``mmap``:     the source mapped, hashed and written from the mapping;
- ``cp``:       ``cp -r`` of the directory.

Prints each method's times. The hashes are checked equal across methods.
"""

from __future__ import annotations

import argparse
import contextlib
import mmap
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import xxhash

CHUNK = 16 * 2**20


def drop_caches() -> None:
    subprocess.run(["sync"], check=True)
    with contextlib.suppress(OSError):  # not root: the sources stay warm
        Path("/proc/sys/vm/drop_caches").write_text("3\n")


def buffer(src: Path, dst: Path) -> str:
    h, buf = xxhash.xxh3_128(), bytearray(CHUNK)
    view = memoryview(buf)
    with open(src, "rb", buffering=0) as f, open(dst, "wb", buffering=0) as o:
        while n := f.readinto(buf):
            h.update(view[:n])
            rest = view[:n]
            while rest:
                rest = rest[o.write(rest) :]
    return h.hexdigest()


def kernel(copy: Callable[[int, int, int], int]) -> Callable[[Path, Path], str]:
    def run(src: Path, dst: Path) -> str:
        h, buf = xxhash.xxh3_128(), bytearray(CHUNK)
        view = memoryview(buf)
        with open(src, "rb", buffering=0) as f, open(dst, "w+b", buffering=0) as o:
            at = 0
            while n := copy(f.fileno(), o.fileno(), CHUNK):
                got = os.preadv(o.fileno(), [view[:n]], at)
                h.update(view[:got])
                at += n
        return h.hexdigest()

    return run


def mapped(src: Path, dst: Path) -> str:
    h = xxhash.xxh3_128()
    with open(src, "rb", buffering=0) as f, open(dst, "wb", buffering=0) as o:
        m = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
        with memoryview(m) as view:
            for start in range(0, len(view), CHUNK):
                with view[start : start + CHUNK] as piece:
                    h.update(piece)
                    done = 0
                    while done < len(piece):
                        done += o.write(piece[done:])
        m.close()
    return h.hexdigest()


METHODS: dict[str, Callable[[Path, Path], str]] = {
    "buffer": buffer,
    "range": kernel(lambda a, b, n: os.copy_file_range(a, b, n)),
    "sendfile": kernel(lambda a, b, n: os.sendfile(b, a, None, n)),
    "mmap": mapped,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=6)
    parser.add_argument("--mb", type=int, default=256)
    parser.add_argument("--streams", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-copy-", dir=os.environ.get("BENCH_DIR")) as tmp:
        src = Path(tmp) / "src"
        src.mkdir()
        for k in range(args.files):
            with open(src / f"s{k}.tar", "wb") as f:
                for _ in range(args.mb):
                    f.write(os.urandom(2**20))
        files = sorted(src.iterdir())
        times: dict[str, list[float]] = {name: [] for name in [*METHODS, "cp"]}
        digests: dict[str, list[str]] = {}
        for _ in range(args.rounds):
            for name in times:
                dest = Path(tmp) / f"dest-{name}"
                dest.mkdir()
                drop_caches()
                started = time.perf_counter()
                if name == "cp":
                    subprocess.run(["cp", "-r", str(src), str(dest / "src")], check=True)
                else:
                    with ThreadPoolExecutor(args.streams) as pool:
                        got = list(pool.map(lambda p, m=METHODS[name], d=dest: m(p, d / p.name), files))
                    assert digests.setdefault("first", got) == got, name
                subprocess.run(["sync"], check=True)
                times[name].append(time.perf_counter() - started)
                shutil.rmtree(dest)
        print(f"{args.files} × {args.mb} MB, {args.streams} streams, cold, to the end of sync:")
        for name, each in times.items():
            print(f"  {name:<9} " + " ".join(f"{t:.2f}" for t in each) + " s")


if __name__ == "__main__":
    main()
