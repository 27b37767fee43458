"""A user's resumable training command that needs nothing of clusterdeck but its environment: it handles SIGUSR2
itself, saves its epoch and exits 75 (clusterdeck.REQUEUE) to be requeued, and counts each epoch it trains once.

The first run stops after its first epoch only when the signal has come (it waits for it there), so a test sends
the signal once the marker says the handler is in place, and nothing depends on timing.
"""

import json
import os
import signal
import sys
import time
from pathlib import Path

stopped: list[int] = []
signal.signal(signal.SIGUSR2, lambda signum, frame: stopped.append(signum))
checkpoints = Path(os.environ["CLUSTERDECK_CHECKPOINT_DIR"])
state, trained = checkpoints / "state.json", checkpoints / "epochs.txt"
epochs = int(sys.argv[1])
epoch = json.loads(state.read_text())["epoch"] if state.exists() else 0
print(f"resumable: attempt {os.environ['CLUSTERDECK_ATTEMPT']}, starting at epoch {epoch + 1}", flush=True)
while epoch < epochs:
    if epoch == 1 and not state.exists():
        (checkpoints / "waiting").touch()
        while not stopped:  # the test's signal; the job's time limit ends a run that never gets it
            time.sleep(0.05)
    if stopped:
        state.write_text(json.dumps({"epoch": epoch}))
        print(f"resumable: checkpoint at epoch {epoch}; requeue", flush=True)
        sys.exit(75)
    epoch += 1
    with trained.open("a") as out:
        out.write(f"{epoch}\n")
print("resumable: done", flush=True)
