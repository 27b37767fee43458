"""Errors the user can fix. The CLI prints them without a traceback."""


class UserError(Exception):
    """A problem with the user's input: exit code 2, one line per problem."""

    exit_code = 2

    def __init__(self, *problems: str) -> None:
        super().__init__("\n".join(problems))
        self.problems = list(problems)


class RunNotFound(UserError):
    """A run address that matches no run, or more than one."""
