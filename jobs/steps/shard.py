"""The shard step: an image dataset into shuffled webdataset tars, as one job or a job array plus a merge."""

from __future__ import annotations

from clusterdeck.jobs.rundir import RunPaths
from clusterdeck.jobs.spec import RunSpec, ShardSpec
from clusterdeck.jobs.steps.base import PartContext, Progress, StepBase
from clusterdeck.jobs.tail.records import Progress as ProgressReport


class ShardStep(StepBase):
    name = "shard"
    section = ShardSpec
    doc = "Shard an image dataset into shuffled webdataset tars."
    form_open = ("", "train", "val")

    def parts(self, spec: RunSpec) -> list[str]:
        """``main``; or the array's tasks and ``merge``, after a ``spill`` job when an input is read front to back
        only (``jobs.shard.spill``: it is read once, not once per task)."""
        cfg = self.config(spec)
        tasks = cfg.resources.array_tasks
        if tasks == 1:
            return ["main"]
        return (["spill"] if streamed_inputs(cfg) else []) + [f"task-{k}" for k in range(tasks)] + ["merge"]

    def outputs(self, spec: RunSpec, paths: RunPaths) -> dict[str, str]:
        output = self.config(spec).output
        return {"dir": str(output), "index": str(output / "index.json")}

    def preflight(self, spec: RunSpec, will_run: bool) -> None:
        from clusterdeck.jobs.formats import registry as input_formats
        from clusterdeck.jobs.shard.space import check_room_at_submit
        from clusterdeck.jobs.shard.step import check_output

        shard = self.config(spec)
        check_output(shard)
        for inp in (i for i in (shard.train, shard.val) if i is not None):
            fmt = input_formats.get(inp.format)
            assert fmt is not None  # the spec checks it
            fmt.preflight(inp.input, inp.fields)
        check_room_at_submit(shard)

    def progress_text(self, progress: Progress) -> str:
        report = ProgressReport.of(progress)
        if not report.shards_total:
            return ""
        return f"{int(report.shards_done or 0)}/{int(report.shards_total)}"

    def run(self, ctx: PartContext) -> None:
        from clusterdeck.jobs.shard.step import run_shard_part

        run_shard_part(self.config(ctx.spec), ctx.part, ctx.report, ctx.sampler.pipeline)


def streamed_inputs(cfg: ShardSpec) -> bool:
    """Whether any input of ``cfg`` is read front to back only (its format says, from the path alone)."""
    from clusterdeck.jobs.formats import registry

    for inp in (cfg.train, cfg.val):
        fmt = registry.get(inp.format) if inp is not None else None
        if inp is not None and fmt is not None and fmt.streamed(inp.input, inp.fields):
            return True
    return False
