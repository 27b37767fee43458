"""``FileAccess`` over the connection's SFTP session, so the tailing readers follow a login node's run files.

A read that fails because the connection dropped becomes ``ConnectionLost`` (an OSError):
the tail keeps its offset and tries again at its next poll, which reconnects, so no line is
lost or read twice. SFTP gives no inode, so a tail tells a replaced file by its first bytes.
"""

from __future__ import annotations

import contextlib
import fnmatch
import posixpath
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from clusterdeck.jobs.remote.ssh import ConnectionLost
from clusterdeck.jobs.tail.access import FileStat, Handle

if TYPE_CHECKING:
    from clusterdeck.jobs.remote.ssh import SshConnection


class SftpHandle:
    def __init__(self, conn: SshConnection, file: Any, generation: int) -> None:
        self.conn = conn
        self.file = file
        self.generation = generation
        """The connection it was opened on: after a reconnect it is dead, and says so without touching the new one."""

    def seek(self, offset: int) -> object:
        return self._call(self.file.seek, offset)

    def read(self, size: int) -> bytes:
        data: bytes = self._call(self.file.read, size)
        return data

    def close(self) -> None:
        if self.generation == self.conn.generation:  # a file of a dropped session needs no closing
            with contextlib.suppress(OSError):
                self._call(self.file.close)

    def _call(self, fn: Any, *args: Any) -> Any:
        if self.generation != self.conn.generation:
            raise ConnectionLost(f"connection to {self.conn.target.name} was made again since this file was opened")
        with self.conn.sftp_lock, _telling_drops(self.conn, self.generation):
            return fn(*args)


@contextlib.contextmanager
def _telling_drops(conn: SshConnection, generation: int) -> Iterator[None]:
    """A failure that is the connection's (not the server's answer) becomes ``ConnectionLost``."""
    try:
        yield
    except Exception as exc:
        if _lost(conn, exc):
            raise conn.lost(exc, generation) from None
        raise


def _lost(conn: SshConnection, exc: BaseException) -> bool:
    """Whether ``exc`` means the connection failed (rather than the server refusing this one request)."""
    import paramiko

    if isinstance(exc, FileNotFoundError | PermissionError):
        return False
    return isinstance(exc, paramiko.SSHException | EOFError | ConnectionError | TimeoutError) or not conn.is_up()


class SftpFiles:
    def __init__(self, conn: SshConnection) -> None:
        self.conn = conn

    def open(self, path: str) -> tuple[Handle, FileStat]:
        with self.conn.sftp_lock:
            sftp, generation = self.conn.sftp()
            with _telling_drops(self.conn, generation):
                file = sftp.open(path, "rb")
                try:
                    size = file.stat().st_size or 0
                except Exception:
                    with contextlib.suppress(Exception):
                        file.close()
                    raise
        return SftpHandle(self.conn, file, generation), FileStat(size, None)

    def list(self, directory: str, pattern: str) -> list[str]:
        with self.conn.sftp_lock:
            sftp, generation = self.conn.sftp()
            try:
                with _telling_drops(self.conn, generation):
                    names = sftp.listdir(directory)
            except FileNotFoundError:
                return []
        return sorted(posixpath.join(directory, n) for n in fnmatch.filter(names, pattern))
