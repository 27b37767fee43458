"""Where the runs are and what can be done to them: this machine (``LocalDeck``) or a login node (``SshDeck``)."""
