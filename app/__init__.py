"""clusterdeck's front ends: the headless CLI (and, later, the Textual app)."""
