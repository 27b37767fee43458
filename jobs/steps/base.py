"""What a step kind is: one object that knows its spec section, how it is split into jobs, what it checks before
submission, how the scheduler runs it, and how it runs.

``Step`` is the protocol everything else asks (submit, payloads, dispatch, decks, overview, the new-run form);
``StepBase`` gives the defaults most steps keep: one part, no outputs, no checks, no checkpointing. A step object
is light to import: it loads its payload (torch, webdataset …) inside ``run``, never at the top of its module,
because the CLI and the app import every step kind at start.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

from clusterdeck.jobs.rundir import RunPaths
from clusterdeck.jobs.spec import Resources, RunSpec, Section

if TYPE_CHECKING:  # psutil and the GPU probe load with it: only the payload needs them
    from clusterdeck.jobs.telemetry.sampler import Sampler

Progress = Mapping[str, float]
"""A part's progress as its status file keeps it: ``{"shards_done": 3, "shards_total": 8}``."""


@dataclass(frozen=True)
class PartContext:
    """What one part of a step gets when it runs inside its job (``jobs.payloads.run_part``)."""

    paths: RunPaths
    spec: RunSpec
    attempt: int
    part: str
    """``main``, ``task-<k>`` of an array, or ``merge``."""
    report: Callable[[dict[str, float]], None]
    """Saves the part's progress in its status file (rank 0's), where ``show`` and the app read it."""
    sampler: Sampler
    """This task's telemetry thread; ``sampler.pipeline`` is the data-pipeline counters' shared memory."""
    failed: Callable[[BaseException], None]
    """Records a rank's failure in its own status file before the rank leaves a process group."""


class Step(Protocol):
    """One step kind of a run (shard, export, train, evaluate, or a plugin's)."""

    name: str
    """The step's name and its spec section's key: ``[train]``."""
    section: type[Section]
    """The pydantic model of its section; it must have a ``resources`` field (a ``jobs.spec.Resources``)."""
    doc: str
    """One line on what the step does: the section's description in the spec and the form."""
    form_open: tuple[str, ...]
    """Keys, relative to the section, of the sections the new-run form shows open (``""``: the section itself)."""
    checkpoints: bool
    """The step saves its state and is requeued at the time limit (a submitit ``Checkpointable``)."""
    needs: tuple[str, ...]
    """Modules its payload imports that the core install lacks (``jobs.extras``): submit refuses without them."""

    def check_spec(self, spec: RunSpec) -> None:
        """Checks across sections, run when the spec is validated; a ValueError ``"<key>: <problem>"``."""

    def parts(self, spec: RunSpec) -> list[str]:
        """The parts it runs as, in order: ``["main"]``, or array tasks then ``merge``."""

    def outputs(self, spec: RunSpec, paths: RunPaths) -> dict[str, str]:
        """Where its results go, by name (``show`` lists them); empty when it leaves nothing to point at."""

    def preflight(self, spec: RunSpec, will_run: bool) -> None:
        """Checks that need the filesystem, before any job is submitted (a UserError); ``will_run`` is False
        when a resume leaves this step's completed results as they are."""

    def resources(self, spec: RunSpec) -> Resources:
        """The scheduler resources of its jobs."""

    def max_requeues(self, spec: RunSpec) -> int:
        """Times a job of this step may requeue itself at its time limit (submitit's ``max_num_timeout``)."""

    def sbatch_extras(self, spec: RunSpec) -> dict[str, Any]:
        """submitit parameters beyond the common resources (GPUs, the warning signal's delay)."""

    def srun_args(self, spec: RunSpec) -> list[str]:
        """Options of the ``srun`` that starts its tasks, beyond ``--cpus-per-task``."""

    def progress_text(self, progress: Progress) -> str:
        """A short text of one part's progress (``3/8 shards``), or ``""`` when it has none worth a line."""

    def run(self, ctx: PartContext) -> None:
        """Runs one part inside its job. Imports the payload here, so that naming the step stays cheap."""


class StepBase:
    """The defaults of ``Step``: one part, no outputs or checks, not checkpointed, no scheduler extras."""

    name: ClassVar[str]
    section: ClassVar[type[Section]]
    doc: ClassVar[str]
    form_open: ClassVar[tuple[str, ...]] = ()
    checkpoints: ClassVar[bool] = False
    needs: ClassVar[tuple[str, ...]] = ()

    def config(self, spec: RunSpec) -> Any:
        """This step's section of ``spec`` (the step runs, so it is given)."""
        section = spec.section(self.name)
        assert section is not None, f"the spec has no [{self.name}] section"
        return section

    def check_spec(self, spec: RunSpec) -> None:
        return None

    def parts(self, spec: RunSpec) -> list[str]:
        return ["main"]

    def outputs(self, spec: RunSpec, paths: RunPaths) -> dict[str, str]:
        return {}

    def preflight(self, spec: RunSpec, will_run: bool) -> None:
        return None

    def resources(self, spec: RunSpec) -> Resources:
        resources: Resources = self.config(spec).resources
        return resources

    def max_requeues(self, spec: RunSpec) -> int:
        return 0

    def sbatch_extras(self, spec: RunSpec) -> dict[str, Any]:
        return {}

    def srun_args(self, spec: RunSpec) -> list[str]:
        return []

    def progress_text(self, progress: Progress) -> str:
        return ""

    def run(self, ctx: PartContext) -> None:
        raise NotImplementedError(f"step {self.name!r} has no run()")
