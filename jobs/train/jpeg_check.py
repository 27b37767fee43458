"""A structural check of a JPEG stream before it goes to the GPU decoder, which may not notice what is missing.

libjpeg (the CPU path) stops at a truncated or mangled stream and says why; nvJPEG's hardware
decoder can fill the missing part in silently and return a picture. So before the device
decode each stream is walked in Python: the start-of-image marker, every marker segment's
length, a frame header with a size, each scan's header, the entropy-coded data up to the next
marker, and an end-of-image marker after the last scan, followed by nothing but zero padding
(or a further JPEG, as multi-picture files append). It reads the headers and searches the scan
data for markers in C (``re``), so it costs microseconds, not a decode. A stream that fails is
not an error by itself: the caller decodes it on the CPU, which names what is wrong, or, where
libjpeg accepts it, gives the same pixels the CPU path would.
"""

from __future__ import annotations

import re
from typing import NamedTuple

SOI, EOI, SOS = 0xD8, 0xD9, 0xDA
_FRAMES = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}  # SOF0–SOF15 but DHT, JPG and DAC
_STANDALONE = frozenset([0x01, *range(0xD0, 0xD8)])  # TEM, RST0–7: markers without a length field
_MARKER_IN_SCAN = re.compile(rb"\xff[^\x00\xd0-\xd7\xff]")
"""A marker ending entropy-coded data: 0xFF not followed by a stuffed zero, a restart marker or a fill byte."""


class BrokenJpeg(ValueError):
    """The stream is not a whole JPEG; the message says where it breaks."""


class Frame(NamedTuple):
    width: int
    height: int


def check_jpeg(data: bytes | memoryview) -> Frame:
    """The frame's size if ``data`` is a structurally whole JPEG; ``BrokenJpeg`` otherwise."""
    if bytes(data[:2]) != b"\xff\xd8":
        raise BrokenJpeg("no start-of-image marker")
    i, n, frame, scans = 2, len(data), None, 0
    while True:
        if i + 2 > n:
            raise BrokenJpeg(f"truncated: ends in the headers at byte {n}")
        if data[i] != 0xFF:
            raise BrokenJpeg(f"no marker where one must be, at byte {i}")
        marker = data[i + 1]
        if marker == 0xFF or marker in _STANDALONE:  # a fill byte, or a marker without a length
            i += 1 if marker == 0xFF else 2
            continue
        if marker == EOI:
            if frame is None or not scans:
                raise BrokenJpeg("end-of-image marker before any image data")
            _check_trailer(data, i + 2)
            return frame
        if marker == SOI:
            raise BrokenJpeg(f"a second start-of-image marker at byte {i}")
        if i + 4 > n:
            raise BrokenJpeg(f"truncated: ends in a marker at byte {n}")
        end = i + 2 + ((data[i + 2] << 8) | data[i + 3])
        if end < i + 4 or end > n:
            raise BrokenJpeg(f"truncated or corrupt: the segment at byte {i} runs to byte {end} of {n}")
        if marker in _FRAMES:
            frame = _frame(data, i, end)
        elif marker == SOS:
            if frame is None:
                raise BrokenJpeg("image data before the frame header")
            components = data[i + 4]
            if not 1 <= components <= 4 or end != i + 8 + 2 * components:
                raise BrokenJpeg(f"corrupt scan header at byte {i}")
            found = _MARKER_IN_SCAN.search(data, end)
            if found is None:
                raise BrokenJpeg("truncated: no end-of-image marker after the image data")
            end, scans = found.start(), scans + 1
        i = end


def _frame(data: bytes | memoryview, i: int, end: int) -> Frame:
    height, width, components = (data[i + 5] << 8) | data[i + 6], (data[i + 7] << 8) | data[i + 8], data[i + 9]
    if not 1 <= components <= 4 or end != i + 10 + 3 * components:
        raise BrokenJpeg(f"corrupt frame header at byte {i}")
    if not (width and height):
        raise BrokenJpeg(f"the frame header gives no size ({width} × {height})")
    return Frame(width, height)


def _check_trailer(data: bytes | memoryview, start: int) -> None:
    rest = bytes(data[start:])
    if rest.strip(b"\x00") and not rest.startswith(b"\xff\xd8"):
        raise BrokenJpeg(f"{len(rest)} bytes after the end-of-image marker")
