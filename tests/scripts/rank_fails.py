"""Rank 0 fails at once; every other rank waits, as a peer in a collective would, until it is ended."""

import os
import sys
import time

if os.environ["RANK"] == "0":
    print("rank 0: giving up", file=sys.stderr, flush=True)
    sys.exit(3)
while True:  # srun's --kill-on-bad-exit ends this once rank 0's task has failed
    time.sleep(0.5)
