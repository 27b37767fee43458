"""The shard set's index file: its name and format tag, shared by the writer and every reader (no heavy imports)."""

INDEX = "index.json"
INDEX_FORMAT = "clusterdeck-shards/1"
