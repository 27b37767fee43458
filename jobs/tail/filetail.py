"""Following one file from a byte offset: whole lines only, bounded memory, replacement and truncation noticed.

A poll reads at most ``budget`` bytes and returns the lines they complete; ``more`` says the
file has more already (call again). A partial last line waits for its newline, unless the
poll is ``final`` (the writer is done). A line longer than ``MAX_LINE`` is cut, never held
whole. When the path comes to name another file (log rotation, a job requeued without
append mode) the old file is read to its end first, then the new one from its start; when
the file is cut short or rewritten in place (its first bytes changed), reading starts again
from the start. Either way ``restarts`` counts it.
"""

from __future__ import annotations

import contextlib

from jobs.tail.access import FileAccess, Handle

CHUNK = 1 << 20
MAX_LINE = 1 << 20
HEAD = 256
"""How many first bytes are compared to notice a file rewritten in place."""


class FileTail:
    def __init__(self, access: FileAccess, path: str, offset: int = 0) -> None:
        self.access = access
        self.path = path
        self.offset = offset
        self.restarts = 0
        self.more = False
        self._handle: Handle | None = None
        self._identity: object = None
        self._head = b""
        self._pending = b""

    def poll(self, final: bool = False, budget: int = 4 * CHUNK) -> list[str]:
        lines: list[str] = []
        if self._handle is None and not self._open():
            return lines
        budget = self._follow_path(lines, budget)
        self.more = self._read(lines, budget)
        if final and not self.more:
            self._flush(lines)
        return lines

    def close(self) -> None:
        if self._handle is not None:
            with contextlib.suppress(OSError):
                self._handle.close()
            self._handle = None

    def _open(self) -> bool:
        try:
            identity = self.access.stat(self.path).identity
            self._handle = self.access.open(self.path)
        except FileNotFoundError:
            return False
        self._identity = identity
        self._head = self._read_head(self._handle, min(self.offset, HEAD))
        return True

    def _follow_path(self, lines: list[str], budget: int) -> int:
        """Notices a replaced, truncated or rewritten file; returns the budget left."""
        try:
            now = self.access.stat(self.path)
        except FileNotFoundError:
            return budget  # removed: what is left of it can still be read through the open handle
        replaced = now.identity is not None and self._identity is not None and now.identity != self._identity
        if replaced:
            more = self._read(lines, budget)  # the old file's last lines, written before it was replaced
            if more:
                return 0  # the rest next poll, still before switching
        elif now.size >= self.offset and self._same_head(now.identity is not None):
            return budget
        self._flush(lines)
        self.close()
        self.offset, self._head, self.restarts = 0, b"", self.restarts + 1
        self._open()
        return budget

    def _same_head(self, same_file: bool) -> bool:
        if not self._head:
            return True
        if same_file:
            assert self._handle is not None
            return self._read_head(self._handle, len(self._head)) == self._head
        try:  # no identity (SFTP): the path's own first bytes tell whether it is still the file being read
            handle = self.access.open(self.path)
        except FileNotFoundError:
            return True
        try:
            return self._read_head(handle, len(self._head)) == self._head
        finally:
            handle.close()

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
