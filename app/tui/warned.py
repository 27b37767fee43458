"""A submission's warnings in the app: each ``SchedulerWarning`` a deck call raises becomes a notification.

``Deck.submit`` and ``Deck.resume`` warn of what the user may know better (``Backend.preflight``: scontrol that
setup lines may bring, a scheduler too slow to check against), as Python warnings, which the CLI prints
(``app.commands.base.scheduler_warnings``). In the app the call runs in a worker thread: ``scheduler_warnings``
catches them there and posts them in one ``Warned``, which bubbles up to the app; the app notifies each one.
"""

from __future__ import annotations

import contextlib
import threading
import warnings
from collections.abc import Callable, Iterator

from textual.message import Message

from clusterdeck.app.tui.messages import Warned

_CATCHING = threading.Lock()
"""``warnings.catch_warnings`` swaps module-wide state: two blocks at once in two threads could restore it out of
order and leave warnings going to a list no one reads, so the app's submissions and resumes catch one at a time."""


@contextlib.contextmanager
def scheduler_warnings(post: Callable[[Message], object]) -> Iterator[None]:
    """Posts the ``SchedulerWarning``s raised in the block (in any thread meanwhile) as one ``Warned`` once the block
    is over, failed or not; other warnings are issued again as they would have been."""
    from clusterdeck.jobs.dispatch.base import SchedulerWarning

    caught: list[warnings.WarningMessage] = []
    with _CATCHING:
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always", SchedulerWarning)
                yield
        finally:
            texts = []
            for w in caught:
                if issubclass(w.category, SchedulerWarning):
                    texts.append(str(w.message))
                else:
                    warnings.warn_explicit(w.message, w.category, w.filename, w.lineno, source=w.source)
            if texts:
                post(Warned(texts))
