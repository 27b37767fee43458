"""Errors the user can fix (printed without a traceback), and the request of a job to be requeued."""

from __future__ import annotations

from collections.abc import Callable


class UserError(Exception):
    """A problem with the user's input: exit code 2, one line per problem."""

    exit_code = 2

    def __init__(self, *problems: str) -> None:
        super().__init__("\n".join(problems))
        self.problems = list(problems)


class RunNotFound(UserError):
    """A run address that matches no run, or more than one."""


class RequeueJob(BaseException):
    """A payload saved its state and asks the scheduler to run it again (SLURM timeout or preemption).

    A BaseException, so that no ``except Exception`` on the way up mistakes it for a failure.
    ``requeue()`` hands over to submitit, which requeues the job and exits the process.
    """

    def __init__(self, message: str, requeue: Callable[[], None]) -> None:
        super().__init__(message)
        self.requeue = requeue
