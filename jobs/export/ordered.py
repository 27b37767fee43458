"""Work items turned into streams of results by worker processes, yielded in item order, memory bounded.

Worker ``w`` takes items ``w, w + W, w + 2W …`` and puts each item's results on its own queue,
then an end mark. The reader takes item ``i`` from queue ``i mod W`` until its end mark, so
results come out in item order whatever the timing, and each queue holds at most ``QUEUED``
results: a worker that runs ahead waits. Memory is W × (QUEUED + 1) results, however many
items there are. A worker that fails puts its error on its queue; one that dies is noticed
within a second; and a worker whose reader died (SIGKILL, a node going away) exits within
a second instead of waiting on its full queue forever.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import queue
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from clusterdeck.jobs.errors import UserError
from clusterdeck.jobs.export import ExportFailed

T = TypeVar("T")
R = TypeVar("R")
QUEUED = 2
_POLL_S = 1.0


@dataclass(frozen=True)
class _End:
    pass


@dataclass(frozen=True)
class _Failed:
    message: str
    user_error: bool


def in_order(work: Callable[[T], Iterator[R]], items: Sequence[T], workers: int) -> Iterator[R]:
    """``work(item)``'s results for every item, in order; ``workers`` <= 1 runs them in this process."""
    workers = min(workers, len(items))
    if workers <= 1:
        for item in items:
            yield from work(item)
        return
    ctx = mp.get_context("spawn")  # no state of the caller (threads, open files) leaks into the workers
    queues = [ctx.Queue(maxsize=QUEUED) for _ in range(workers)]
    procs = [
        ctx.Process(
            target=_worker, args=(work, items[w::workers], queues[w], os.getpid()), daemon=True, name=f"export-{w}"
        )
        for w in range(workers)
    ]
    for proc in procs:
        proc.start()
    try:
        for i in range(len(items)):
            w = i % workers
            while True:
                result = _next(queues[w], procs[w])
                if isinstance(result, _End):
                    break
                if isinstance(result, _Failed):
                    raise UserError(result.message) if result.user_error else RuntimeError(result.message)
                yield result
    finally:
        for proc in procs:
            if proc.is_alive():
                proc.terminate()
        for proc in procs:
            proc.join(5)
        for q in queues:
            q.cancel_join_thread()
            q.close()


def _next(q: Any, proc: Any) -> Any:
    while True:
        try:
            return q.get(timeout=_POLL_S)
        except queue.Empty:
            if not proc.is_alive():
                raise ExportFailed(
                    f"decoding worker {proc.name} died (exit code {proc.exitcode}); if it was killed for memory, "
                    "give the job more memory or use fewer workers"
                ) from None


def _worker(work: Callable[[T], Iterator[R]], items: Sequence[T], out: Any, reader: int) -> None:
    threading.Thread(target=_exit_without, args=(reader,), daemon=True).start()
    put = out.put
    try:
        for item in items:
            for result in work(item):
                put(result)
            put(_End())
    except UserError as exc:
        put(_Failed(str(exc), True))
    except BaseException as exc:  # the reader re-raises it; a traceback here would go to a log nobody reads
        put(_Failed(f"{type(exc).__name__}: {exc}", False))
    out.close()
    out.join_thread()


def _exit_without(reader: int) -> None:
    """Ends this worker once its reader is gone, whatever it is doing: decoding, or blocked on a full queue."""
    while os.getppid() == reader:
        time.sleep(_POLL_S)
    os._exit(1)
