"""The shards' checksum, chosen by measuring (``jobs.checksum``): sha256, xxh3-128 and BLAKE3 over the same
random bytes in memory, best of ``--repeat``, each on one core (BLAKE3 also on every core).

    python bench/checksum.py [--mb 256] [--repeat 3]

Prints GB/s of each and xxh3-128 / sha256. ``blake3`` is not a dependency: its rows are left out without it.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import time
from collections.abc import Callable

import xxhash


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--mb", type=int, default=256)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    data = os.urandom(args.mb << 20)
    contenders: dict[str, Callable[[], str]] = {
        "sha256": lambda: hashlib.sha256(data).hexdigest(),
        "xxh3-128": lambda: xxhash.xxh3_128_hexdigest(data),
    }
    try:
        import blake3

        contenders["blake3, 1 core"] = lambda: blake3.blake3(data).hexdigest()
        contenders["blake3, every core"] = lambda: blake3.blake3(data, max_threads=blake3.blake3.AUTO).hexdigest()
    except ImportError:
        pass
    rates = {}
    for name, digest in contenders.items():
        best = float("inf")
        for _ in range(args.repeat):
            started = time.perf_counter()
            digest()
            best = min(best, time.perf_counter() - started)
        rates[name] = len(data) / best / 1e9
        print(f"{name}: {rates[name]:.2f} GB/s", flush=True)
    print(f"xxh3-128 / sha256: {rates['xxh3-128'] / rates['sha256']:.1f}")


if __name__ == "__main__":
    main()
