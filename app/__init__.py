"""clusterdeck's front ends: the headless CLI (``app.cli``, ``app.commands``) and the Textual app (``app.tui``)."""
