"""The runs root on this machine: the engine's own calls, as ``clusterdeck`` runs them on a login node."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from clusterdeck.jobs.deck.base import Deck
from clusterdeck.jobs.tail.access import LocalFiles

if TYPE_CHECKING:
    from clusterdeck.jobs.cluster import ClusterView
    from clusterdeck.jobs.compare import Comparison
    from clusterdeck.jobs.overview import Overview
    from clusterdeck.jobs.rundir import RunPaths
    from clusterdeck.jobs.status import RunView


class LocalDeck(Deck):
    def __init__(self, root: Path, *, root_given: bool = False) -> None:
        self.root = root
        self.root_given = root_given
        """``--runs-root`` was given: runs submitted go there, whatever a spec's ``cluster.runs_root`` says."""
        self.files = LocalFiles()
        self._overview: Overview | None = None

    @property
    def where(self) -> str:
        return str(self.root)

    @property
    def submit_root(self) -> Path | None:
        return self.root if self.root_given else None

    def unlisted_root(self, paths: RunPaths) -> str:
        parent = paths.root.parent
        return "" if parent.resolve() == self.root.resolve() else str(parent)

    def listing(self) -> list[dict[str, Any]]:
        from clusterdeck.jobs.overview import Overview

        if self._overview is None:  # kept: it remembers each run's spec and each finished run's figures
            self._overview = Overview(self.root)
        return self._overview.listing()

    def resolve(self, address: str) -> RunPaths:
        from clusterdeck.jobs.runs import resolve_run

        return resolve_run(self.root, address)

    def view(self, paths: RunPaths) -> RunView:
        from clusterdeck.jobs.status import view_run

        return view_run(paths)

    def submit(self, table: dict[str, Any], source: str) -> RunPaths:
        from clusterdeck.jobs.errors import UserError
        from clusterdeck.jobs.runspec import validate
        from clusterdeck.jobs.submit import nothing_to_run, submit_run

        table, filled = with_user_defaults(table)
        spec = validate(table, source=source)
        if not spec.steps:  # said here too, so that the line names the file rather than "spec"
            raise UserError(f"{source}: {nothing_to_run()}")
        return submit_run(spec, self.root if self.root_given else None, filled)

    def cancel(self, paths: RunPaths) -> RunView:
        from clusterdeck.jobs.submit import cancel_run

        return cancel_run(paths)

    def resume(self, paths: RunPaths) -> bool:
        from clusterdeck.jobs.submit import resume_run

        return resume_run(paths) is not None

    def compare(self, addresses: list[str]) -> Comparison:
        from clusterdeck.jobs.compare import compare_runs
        from clusterdeck.jobs.errors import UserError

        found, problems = [], []
        for address in addresses:
            try:
                found.append(self.resolve(address))
            except UserError as exc:
                problems += exc.problems
        if problems:
            raise UserError(*problems)
        return compare_runs(found)

    def cluster(self) -> ClusterView:
        from clusterdeck.jobs.cluster import cluster_view

        return cluster_view()


def with_user_defaults(table: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """``table`` with this machine's user's ``[defaults]`` under its values, and what they filled."""
    from clusterdeck.jobs.steps.registry import steps
    from clusterdeck.jobs.userconfig import apply_defaults, load_defaults

    return apply_defaults(table, load_defaults(), [s.name for s in steps()])
