"""Incremental readers of a run's logs and metrics: from byte offsets, whole lines, bounded memory."""
