"""A command that asks for a requeue every time it runs (a startup error mistaken for a stop)."""

import os
import sys

print(f"attempt {os.environ['CLUSTERDECK_ATTEMPT']}: requeue please", flush=True)
sys.exit(75)
