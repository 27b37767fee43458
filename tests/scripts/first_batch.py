"""Reads one epoch through ``clusterdeck.ShardLoader`` from a set being staged 'ahead', noting when the first
batch came and how many of the split's shards had landed by then."""

import json
import os
import time

import clusterdeck

task = clusterdeck.task()
loader = clusterdeck.ShardLoader(batch_size=8, image_size=32, workers=1)
landed = None
for _batch in loader:
    if landed is None:
        first = time.time()
        landed = sum(shard.path.exists() for shard in loader.shard_list)
staging = os.environ["CLUSTERDECK_STAGING"]
note = {"first_batch_at": first, "landed": landed, "shards": len(loader.shard_list), "staging": staging}
(task.checkpoint_dir / "first_batch.json").write_text(json.dumps(note))
print(f"first batch with {landed} of {len(loader.shard_list)} shards staged", flush=True)
