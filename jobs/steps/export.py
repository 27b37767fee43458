"""The export step: dense CSV (or .npy) matrices of a shard set or npz batches, for Apache SystemDS."""

from __future__ import annotations

from clusterdeck.jobs.rundir import RunPaths
from clusterdeck.jobs.spec import RunSpec
from clusterdeck.jobs.steps.base import PartContext, StepBase
from clusterdeck.jobs.steps.export_spec import ExportSpec


class ExportStep(StepBase):
    name = "export"
    section = ExportSpec
    doc = "Dense CSV (or .npy) matrices of a shard set or npz batches, for Apache SystemDS."

    def check_spec(self, spec: RunSpec) -> None:
        export = self.config(spec)
        if export.input is None and spec.section("shard") is None:
            raise ValueError("export.input: required when the spec has no [shard] section")
        if (export.resources.tasks_per_node, export.resources.nodes) != (1, 1):
            raise ValueError("export.resources: an export runs as one task on one node")

    def outputs(self, spec: RunSpec, paths: RunPaths) -> dict[str, str]:
        return {"dir": str(self.config(spec).out)}

    def preflight(self, spec: RunSpec, will_run: bool) -> None:
        """An export's files must not replace others unless asked (once it has run, they are its own); an input
        that exists already is planned now."""
        from clusterdeck.jobs.export.plan import check_names, check_outputs, plan_export

        if not will_run:
            return
        export = self.config(spec)
        if export.input is not None:
            check_outputs(plan_export(export, export.input))
        else:  # this run's [shard] output, written later
            check_names(export)

    def run(self, ctx: PartContext) -> None:
        from clusterdeck.jobs.export.step import run_export_step

        run_export_step(ctx.spec, ctx.report)
