"""Rows as bytes: CSV text or float32 pixels, one-hot labels, and SystemDS's ``.mtd`` metadata.

A pixel ``k`` is the value k / 255. In CSV it is written with ``decimals`` digits after the
point and trailing zeros dropped (``0``, ``1``, ``0.5``, ``0.392157``), so a dark image makes a
shorter row than a bright one: sizes are measured, not computed. Labels are 0/1, one column
per class. In ``.npy`` pixels are float32 and labels uint8.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np

LEVELS = 256
SEPARATOR = ","


def flatten(pixels: np.ndarray, layout: str) -> np.ndarray:
    """n × S × S × 3 uint8 → n × 3S² in ``layout`` order: 'chw' (colour planes) or 'hwc' (pixel by pixel)."""
    n = len(pixels)
    return (pixels.transpose(0, 3, 1, 2) if layout == "chw" else pixels).reshape(n, -1)


def level_text(level: int, decimals: int) -> str:
    text = f"{level / (LEVELS - 1):.{decimals}f}".rstrip("0").rstrip(".")
    return text or "0"


class CsvEncoder:
    def __init__(self, decimals: int, classes: int) -> None:
        self._levels = [level_text(k, decimals).encode() for k in range(LEVELS)]
        self._one_hot = bytearray((b"0" + SEPARATOR.encode()) * classes)
        self._one_hot[-1:] = b"\n"

    def features(self, rows: np.ndarray) -> Iterator[bytes]:
        """Each row's line in turn: a chunk's text never exists whole (a 1024 px row alone is 28 MB)."""
        levels, sep = self._levels, SEPARATOR.encode()
        for row in rows:
            yield sep.join([levels[v] for v in row.tolist()]) + b"\n"

    def labels(self, labels: np.ndarray) -> bytes:
        out = bytearray()
        for label in labels.tolist():
            row = bytearray(self._one_hot)
            row[2 * label] = ord("1")
            out += row
        return bytes(out)


class NpyEncoder:
    FEATURE_DTYPE = np.dtype("<f4")
    LABEL_DTYPE = np.dtype("u1")

    def __init__(self, classes: int) -> None:
        self._levels = (np.arange(LEVELS, dtype=np.float64) / (LEVELS - 1)).astype(self.FEATURE_DTYPE)
        self._classes = classes

    def features(self, rows: np.ndarray) -> Iterator[bytes]:
        yield self._levels[rows].tobytes()

    def labels(self, labels: np.ndarray) -> bytes:
        one_hot = np.zeros((len(labels), self._classes), self.LABEL_DTYPE)
        one_hot[np.arange(len(labels)), labels] = 1
        return one_hot.tobytes()


def npy_header(rows: int, cols: int, dtype: np.dtype) -> bytes:
    """The .npy header of a C-ordered rows × cols array, written before its data is known."""
    import io

    buffer = io.BytesIO()
    np.lib.format.write_array_header_1_0(buffer, {"descr": dtype.str, "fortran_order": False, "shape": (rows, cols)})
    return buffer.getvalue()


def mtd(rows: int, cols: int, nnz: int) -> dict[str, Any]:
    """SystemDS metadata of a headerless comma-separated matrix of doubles."""
    return {
        "data_type": "matrix",
        "value_type": "double",
        "rows": rows,
        "cols": cols,
        "nnz": nnz,
        "format": "csv",
        "header": False,
        "sep": SEPARATOR,
    }
