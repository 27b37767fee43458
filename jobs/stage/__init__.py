"""Staging: copying shards to node-local disk, verified against the index, shared between jobs by file locks."""
