"""Text renderings of the documents ``jobs`` makes (an inspect report, an export plan) for a terminal."""
