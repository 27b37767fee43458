"""One node's stager: checks space, then copies or re-verifies each shard with a few parallel streams.

A shard already at its destination is hashed again before it is trusted; one that does not
match is copied again (``repaired``). Each shard is handled under its lock; a shard another
stager is busy with is put back at the end of the queue, so two stagers filling one cache
split the work, and the second finds the first's copies and reuses them.
"""

from __future__ import annotations

import socket
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from clusterdeck.jobs.checksum import CRYPTO, FAST, expected
from clusterdeck.jobs.diskspace import free_text, is_full, require_free
from clusterdeck.jobs.errors import UserError
from clusterdeck.jobs.stage.cache import locked
from clusterdeck.jobs.stage.copy import Cancelled, Mismatch, Throttle, copy_verified, file_digest
from clusterdeck.jobs.train.shardset import Shard


@dataclass(frozen=True)
class Item:
    shard: Shard
    dest: Path


@dataclass
class Tally:
    files_total: int
    bytes_total: int
    files_done: int = 0
    bytes_done: int = 0
    """Bytes of shards verified, including those of shards still being copied or checked."""
    copied: int = 0
    reused: int = 0
    repaired: int = 0
    started: float = field(default_factory=time.monotonic)
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _last: tuple[float, int] | None = field(default=None, repr=False)

    def add(self, n: int) -> None:
        with self.lock:
            self.bytes_done += n

    def record(self, final: bool = False) -> dict[str, Any]:
        """Progress now; MB/s over the time since the last record (since the start for the final one)."""
        with self.lock:
            now = time.monotonic()
            seconds = max(now - self.started, 1e-9)
            since, before = (self.started, 0) if final or self._last is None else self._last
            rate = max(self.bytes_done - before, 0) / max(now - since, 1e-9)
            self._last = (now, self.bytes_done)
            left = self.bytes_total - self.bytes_done
            return {
                "bytes_done": self.bytes_done,
                "bytes_total": self.bytes_total,
                "files_done": self.files_done,
                "files_total": self.files_total,
                "copied": self.copied,
                "reused": self.reused,
                "repaired": self.repaired,
                "seconds": round(seconds, 3),
                "mb_s": round(rate / 1e6, 6),  # to the byte a second: a slow, small copy is not "0 MB/s"
                "eta_s": round(left / rate, 1) if rate > 0 else None,
                "done": self.files_done == self.files_total,
            }


class Stager:
    def __init__(
        self,
        items: list[Item],
        *,
        streams: int,
        max_mb_s: float = 0,
        field: str = "train.stage.to",
        on_ready: Callable[[Item], None] = lambda item: None,
        on_progress: Callable[[dict[str, Any]], None] = lambda record: None,
        interrupted: Callable[[], bool] = lambda: False,
        interval: float = 1.0,
    ) -> None:
        self.items = items
        self.streams = streams
        self.throttle = Throttle(max_mb_s)
        self.field = field
        self.on_ready = on_ready
        self.on_progress = on_progress
        self.interrupted = interrupted
        self.interval = interval
        self.stop = threading.Event()
        self.tally = Tally(len(items), sum(item.shard.bytes for item in items))
        self._queue: deque[tuple[Item, bool]] = deque((item, False) for item in items)
        self._queue_lock = threading.Lock()
        self._errors: list[BaseException] = []
        self._running = 0
        self._finished = threading.Event()

    def check_space(self) -> None:
        """Before the first byte is copied: the shards not there yet must fit in the space free."""
        for parent in {item.dest.parent for item in self.items}:
            try:
                parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise UserError(f"{self.field}: cannot create {parent}: {exc.strerror}") from None
        if not self.items:
            return
        missing = [i for i in self.items if not _has_size(i.dest, i.shard.bytes)]
        fewer = "stage fewer splits"
        if self.field.endswith(".stage.to"):
            fewer = f"use {self.field.removesuffix('.to')}.scope = 'node'"
        require_free(
            self.field,
            self.items[0].dest.parent,
            sum(i.shard.bytes for i in missing),
            f"staging {len(missing)} shard(s)",
            f"free some space, stage elsewhere, or {fewer}",
        )

    def run(self) -> Tally:
        """Stages every item; raises the first error, or ``Cancelled`` when stopped before the end."""
        self.check_space()
        threads = [
            threading.Thread(target=self._worker, daemon=True) for _ in range(min(self.streams, len(self.items)))
        ]
        self._running = len(threads)
        try:
            for t in threads:
                t.start()
            while threads and not self._finished.wait(self.interval):
                if self.interrupted():
                    self.stop.set()
                else:
                    self.on_progress(self.tally.record())
        finally:
            if not self._finished.is_set():  # an error here (in on_progress, say): stop the streams too
                self.stop.set()
            for t in threads:
                t.join()
        if self._errors:
            raise self._errors[0]
        self.on_progress(self.tally.record(final=True))  # where it stopped, or the end
        if self.tally.files_done < self.tally.files_total:
            raise Cancelled
        return self.tally

    def _next(self) -> tuple[Item, bool] | None:
        with self._queue_lock:
            return self._queue.popleft() if self._queue else None

    def _worker(self) -> None:
        try:
            while not self.stop.is_set() and (entry := self._next()) is not None:
                item, deferred = entry
                with locked(item.dest, wait=deferred, stop=self.stop) as mine:
                    if not mine:  # another stager has it: come back to it last, then wait for it
                        with self._queue_lock:
                            self._queue.append((item, True))
                        continue
                    outcome = self._provide(item)
                    self.on_ready(item)
                with self.tally.lock:
                    self.tally.files_done += 1
                    setattr(self.tally, outcome, getattr(self.tally, outcome) + 1)
        except BaseException as exc:
            if not isinstance(exc, Cancelled):
                self._errors.append(exc)
            self.stop.set()
        finally:
            with self._queue_lock:
                self._running -= 1
                if self._running == 0:
                    self._finished.set()

    def _provide(self, item: Item) -> str:
        """Makes ``item.dest`` a verified copy; says whether it was reused, copied or repaired."""
        shard, dest = item.shard, item.dest
        for stale in dest.parent.glob(f"{dest.name}.tmp-*"):  # left by a stager that was killed
            stale.unlink(missing_ok=True)
        repaired = False
        if dest.exists():
            if _has_size(dest, shard.bytes):
                counted = [0]

                def count(n: int) -> None:
                    counted[0] += n
                    self.tally.add(n)

                algorithm, want = digest_of(shard)
                if file_digest(dest, count, self.stop, algorithm) == (shard.bytes, want):
                    return "reused"
                self.tally.add(-counted[0])
            dest.unlink()
            repaired = True
        try:
            copy_verified(
                shard.path,
                dest,
                size=shard.bytes,
                digest=digest_of(shard),
                progress=self.tally.add,
                stop=self.stop,
                throttle=self.throttle,
            )
        except Mismatch as exc:
            raise UserError(str(exc)) from None
        return "repaired" if repaired else "copied"

    def _explained(self, exc: OSError) -> BaseException:
        """An OSError as a UserError naming the file, host and cause; what it cannot place is kept as is."""
        host = socket.gethostname()
        name = Path(exc.filename) if exc.filename else None
        sources = {item.shard.path for item in self.items}
        if is_full(exc) and name not in sources:
            where = name.parent if name else self.items[0].dest.parent
            return UserError(
                f"{self.field}: {where} on {host} ran out of space while staging ({free_text(where)}): "
                "another process filled it; free space and resume"
            )
        if name in sources:
            return UserError(f"cannot read shard {name} on {host}: {exc.strerror}")
        if name is not None:
            return UserError(f"{self.field}: {name} on {host}: {exc.strerror}")
        return exc


def _has_size(path: Path, size: int) -> bool:
    try:
        return path.stat().st_size == size
    except FileNotFoundError:
        return False


def digest_of(shard: Shard) -> tuple[str, str]:
    """What a copy of ``shard`` is verified by: the fast checksum when the index has it, else sha256."""
    return expected({FAST: shard.xxh3, CRYPTO: shard.sha256})
