"""Following a run's files until it ends: what ``clusterdeck logs -f``, ``metrics -f`` and ``watch`` share.

Files are read every ``FILES_S``, the run's state every ``STATE_S`` (one ``sacct`` on SLURM).
When the run has ended, reading goes on until the files stop growing (a job's last lines
can land after its status says it is done), then a partial last line is printed too.
On a remote deck a dropped connection is waited out: the deck reconnects, and the tails go
on from their offsets.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from clusterdeck.jobs.deck.base import Deck
    from clusterdeck.jobs.rundir import RunPaths
    from clusterdeck.jobs.status import RunView

FILES_S, STATE_S = 0.5, 2.0
SETTLE_POLLS, JOBS_MAX_S, FINAL_MAX_S = 4, 60.0, 30.0


def follow(
    deck: Deck,
    paths: RunPaths,
    poll: Callable[[bool], bool],
    *,
    keep_going: bool,
    on_view: Callable[[RunView], None] | None = None,
) -> RunView | None:
    """Calls ``poll(final)`` (True when it found something) until the run ends; returns the last view.

    ``on_view`` gets each fresh view of the run. Without ``keep_going``, reads what is there now
    and returns None. After the run has ended: until the scheduler no longer has its jobs (they
    print after their status says done), then until the files are quiet for ``SETTLE_POLLS``.
    """
    poll = _riding_out_drops(poll)
    if not keep_going:
        _drain(poll)
        return None
    checked, view, ended_at = 0.0, None, 0.0
    while True:
        if time.monotonic() - checked >= STATE_S:
            view, checked = deck.view(paths), time.monotonic()
            if on_view is not None:
                on_view(view)
            if view.ended:
                ended_at = ended_at or time.monotonic()
                if not view.jobs_alive or time.monotonic() - ended_at > JOBS_MAX_S:
                    break
        if not poll(False):
            time.sleep(FILES_S)
    quiet = 0
    while quiet < SETTLE_POLLS:
        quiet = 0 if poll(False) else quiet + 1
        time.sleep(FILES_S)
    _drain(poll)
    return view


def _riding_out_drops(poll: Callable[[bool], bool]) -> Callable[[bool], bool]:
    """``poll``, but a dropped connection counts as "more to read": the next call reconnects and goes on."""

    def ride(final: bool) -> bool:
        try:
            return poll(final)
        except ConnectionError:
            time.sleep(FILES_S)
            return True

    return ride


def _drain(poll: Callable[[bool], bool]) -> None:
    """Reads to the end, partial last lines included; a writer that never stops is left after FINAL_MAX_S."""
    deadline = time.monotonic() + FINAL_MAX_S
    while poll(True) and time.monotonic() < deadline:
        pass
