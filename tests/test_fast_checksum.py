"""The fast checksum (xxh3-128, ``jobs.checksum``): written into the index beside sha256, equal to an independent
computation, what staging verifies by; a shard set indexed before it existed still stages, by sha256."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import xxhash

from tests.test_stage import assert_one_good_copy, stage_json


def test_the_index_holds_both_checksums_of_every_shard(sample_shards: Path) -> None:
    index = json.loads((sample_shards / "index.json").read_text())
    shards = [s for split in index["splits"].values() for s in split["shards"]]
    assert shards
    for shard in shards:
        data = (sample_shards / shard["file"]).read_bytes()
        assert shard["xxh3_128"] == xxhash.xxh3_128_hexdigest(data)
        assert shard["sha256"] == hashlib.sha256(data).hexdigest()


def test_an_index_without_the_fast_checksum_stages_and_repairs_by_sha256(sample_shards: Path, tmp_path: Path) -> None:
    old = tmp_path / "old"
    shutil.copytree(sample_shards, old)
    index = json.loads((old / "index.json").read_text())
    for split in index["splits"].values():
        for shard in split["shards"]:
            del shard["xxh3_128"]  # as a shard set written before it was
    (old / "index.json").write_text(json.dumps(index))
    first = stage_json(old, tmp_path / "ssd")
    assert first["copied"] == first["files_total"] > 0
    cache = Path(first["cache"])
    flipped = sorted(cache.glob("*.tar"))[0]
    data = bytearray(flipped.read_bytes())
    data[len(data) // 3] ^= 0x01  # the same size: only a checksum can tell
    flipped.write_bytes(bytes(data))
    again = stage_json(old, tmp_path / "ssd")
    assert (again["repaired"], again["reused"]) == (1, again["files_total"] - 1)
    assert_one_good_copy(old, cache)
