"""Appending records to a run's ``metrics.jsonl``: one JSON object per line, written whole, never rewritten.

Every record carries ``time``, ``kind``, ``node``, ``rank`` and ``attempt``; the rest are the kind's
values. Each kind is a typed class in ``jobs.tail.records``, which every reader parses with: a
new kind, or a new field, goes there too (a change old readers would misread: a new major).
Only the first node appends (rank 0 gathers what the other ranks measured; the stager
there writes ``stage`` records), each line in one ``O_APPEND`` write, so lines never
interleave or overwrite each other, on NFS or Lustre as on a local disk.
"""

from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path
from typing import Any

from clusterdeck.jobs import atomic


class MetricsWriter:
    def __init__(self, path: Path, *, rank: int = 0, attempt: int = 1, enabled: bool = True) -> None:
        self.path = path
        self.rank = rank
        self.attempt = attempt
        self.enabled = enabled
        self.node = socket.gethostname()

    def write(self, kind: str, **values: Any) -> None:
        if not self.enabled:
            return
        record = {"time": time.time(), "kind": kind, "node": self.node, "rank": self.rank, "attempt": self.attempt}
        record.update(values)
        line = (json.dumps(record, separators=(",", ":")) + "\n").encode()
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, atomic.FILE_MODE)
        try:
            os.write(fd, line)  # one write of the whole line: a reader never sees half of it for long
        finally:
            os.close(fd)
