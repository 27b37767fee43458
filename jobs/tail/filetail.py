"""Following one file from a byte offset: whole lines only, bounded memory, replacement and truncation noticed.

A poll reads at most ``budget`` bytes and returns the lines they complete; ``more`` says the
file has more already (call again). A partial last line waits for its newline, unless the
poll is ``final`` (the writer is done). A line longer than ``MAX_LINE`` is cut, never held
whole.

The file stays open between polls, so when the path comes to name another file (log
rotation, a job requeued without append mode) the old one is read to its end first. When a
poll finds nothing new, the path is opened afresh: that shows a replacement, and on NFS it
makes the client fetch the file's current size (close-to-open consistency). A file cut
short or rewritten in place (its first bytes changed) is read again from its start.
``restarts`` counts both. ``close`` gives the handle back and keeps the place: the next
poll opens the path again and goes on, or starts over if it is another file now.
"""

from __future__ import annotations

import contextlib
import time

from clusterdeck.jobs.tail.access import FileAccess, FileStat, Handle

CHUNK = 1 << 20
MAX_LINE = 1 << 20
HEAD = 256
"""How many first bytes are compared to notice a file rewritten in place."""


class FileTail:
    def __init__(self, access: FileAccess, path: str) -> None:
        self.access = access
        self.path = path
        self.offset = 0
        self.restarts = 0
        self.more = False
        self.active = 0.0
        """When a poll last found something (monotonic), so a reader of many files can close idle ones."""
        self._handle: Handle | None = None
        self._identity: object = None
        self._head = b""
        self._pending = b""
        self.error = ""
        """Why the last poll could not read the file, or empty."""

    @property
    def is_open(self) -> bool:
        return self._handle is not None

    def poll(self, final: bool = False, budget: int = 4 * CHUNK) -> list[str]:
        lines: list[str] = []
        self.more = False
        try:
            if self._handle is None:
                self._reopen(lines)
            if self._handle is not None:
                if not self._same_head():
                    self._start_over(lines)
                self.more = self._read(lines, budget)
                if not lines and not self.more and self._reopen(lines):  # nothing new: still the same file?
                    self.more = self._read(lines, budget)
            self.error = ""
        except OSError as exc:  # unreadable now (permissions, a stale NFS handle): say so, try again next poll
            self.close()
            self.error = f"{self.path}: {exc.strerror or exc}"
            if isinstance(exc, ConnectionError):  # the way to the file, not the file: more to read once it is back
                self.more = True
                return lines  # a partial last line stays pending, whole when its rest arrives
        if final and not self.more:
            self._flush(lines)
        if lines:
            self.active = time.monotonic()
        return lines

    def close(self) -> None:
        if self._handle is not None:
            with contextlib.suppress(OSError):
                self._handle.close()
            self._handle = None

    def _reopen(self, lines: list[str]) -> bool:
        """Opens the path again; True if it is another file than the one being read (now being read instead)."""
        try:
            handle, stat = self.access.open(self.path)
        except FileNotFoundError:
            return False  # removed: what is left of the open file can still be read
        old = self._handle
        if self._identity is None and old is None and not self._head:  # the first open
            self._handle, self._identity = handle, stat.identity
            return False
        if self._same_file(handle, stat):
            self.close()
            self._handle = handle  # the fresh handle: on NFS, it sees the file's current size
            if stat.size < self.offset:
                self._start_over(lines)  # cut short in place
                return True
            return False
        self.close()  # another file: the old one was read to its end (or is gone)
        self._handle, self._identity = handle, stat.identity
        self._start_over(lines)
        return True

    def _same_file(self, handle: Handle, stat: FileStat) -> bool:
        if stat.identity is not None and self._identity is not None:
            return bool(stat.identity == self._identity)
        return self._read_head(handle, len(self._head)) == self._head  # no identity (SFTP): its first bytes

    def _same_head(self) -> bool:
        assert self._handle is not None
        return not self._head or self._read_head(self._handle, len(self._head)) == self._head

    def _start_over(self, lines: list[str]) -> None:
        self._flush(lines)
        self.offset, self._head, self.restarts = 0, b"", self.restarts + 1

    @staticmethod
    def _read_head(handle: Handle, size: int) -> bytes:
        if size <= 0:
            return b""
        handle.seek(0)
        return handle.read(size)

    def _read(self, lines: list[str], budget: int) -> bool:
        """Reads from ``offset`` up to ``budget`` bytes; True if it stopped at the budget, not the end."""
        assert self._handle is not None
        self._handle.seek(self.offset)
        while budget > 0:
            data = self._handle.read(min(CHUNK, budget))
            if not data:
                return False
            if self.offset < HEAD:
                self._head += data[: HEAD - self.offset]
            self.offset += len(data)
            budget -= len(data)
            self._split(data, lines)
        return True

    def _split(self, data: bytes, lines: list[str]) -> None:
        parts = (self._pending + data).split(b"\n")
        self._pending = parts.pop()
        for part in parts:
            lines += [_text(part[i : i + MAX_LINE]) for i in range(0, max(len(part), 1), MAX_LINE)]
        while len(self._pending) > MAX_LINE:
            lines.append(_text(self._pending[:MAX_LINE]))
            self._pending = self._pending[MAX_LINE:]

    def _flush(self, lines: list[str]) -> None:
        if self._pending:
            lines.append(_text(self._pending))
            self._pending = b""


def _text(line: bytes) -> str:
    return line.removesuffix(b"\r").decode(errors="replace")
