"""Text renderings for a terminal of what ``jobs`` makes (an inspect report, an export plan) and of a run's
series (charts: ``chart``, ``axes``, ``traces``), for the CLI and the app alike; nothing here imports Textual."""
