"""A user's command that only reports what it was given: its environment, its directory and the shards it sees."""

import json
import os
import sys
from pathlib import Path

shards = os.environ.get("CLUSTERDECK_SHARDS", "")
seen = {}
if shards:
    index = json.loads((Path(shards) / "index.json").read_text())
    files = [s for split in index["splits"].values() for s in split["shards"]]
    seen = {s["file"]: (Path(shards) / s["file"]).stat().st_size for s in files}
report = {"env": dict(os.environ), "cwd": os.getcwd(), "argv": sys.argv[1:], "shard_sizes": seen}
out = Path(os.environ["CLUSTERDECK_CHECKPOINT_DIR"]) / f"probe-{os.environ['RANK']}.json"
out.write_text(json.dumps(report))
print(f"probe: rank {os.environ['RANK']} of {os.environ['WORLD_SIZE']} saw {len(seen)} shards", flush=True)
print("probe: a line on stderr", file=sys.stderr)
sys.exit(int(os.environ.get("PROBE_EXIT", "0")))
