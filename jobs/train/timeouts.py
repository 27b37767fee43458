"""How long a rank waits for its peers, and how long it may wait for anything before it reaches them.

One place, without torch (the stager's wait reads it, and ``clusterdeck stage`` runs on a login node):
a rank that waits for a staged shard ('ahead' mode) while its peers sit in a collective must give up,
with an error that says why, before their collective times out with one that does not.
"""

from __future__ import annotations

COLLECTIVE_TIMEOUT_S = 600.0
"""The process group's timeout: a collective that waits longer for a peer fails (NCCL's watchdog aborts it)."""

STAGED_WAIT_MARGIN_S = 60.0
"""Left to the waiting rank, after it gives up, to finish the step it was on, say why and leave the group."""

STAGED_WAIT_S = COLLECTIVE_TIMEOUT_S - STAGED_WAIT_MARGIN_S
"""The longest a rank waits for one shard this node's stager has not verified yet ('ahead' mode)."""
