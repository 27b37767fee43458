"""The CLI's commands, one module each: its arguments (``add_parser``) beside its handler (``run``).

``app.cli`` lists them (``COMMANDS``), builds the parser from them and dispatches; ``app.commands.base``
says what a command module holds and keeps what several of them share.
"""
