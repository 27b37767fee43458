"""The shard step: list an image dataset, shuffle it globally, write webdataset tars and an index."""
