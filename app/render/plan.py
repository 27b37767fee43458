"""An export plan (``jobs.export.plan``) as lines for a terminal: what ``clusterdeck export`` says before it
writes, and all ``--inspect`` shows."""

from __future__ import annotations

from clusterdeck.jobs.export.plan import ExportPlan, describe, samples_line


def render(plan: ExportPlan) -> str:
    """The plan: its input, rows, sample count and every file with its rows, columns and size."""
    d = describe(plan)
    lines = [
        f"input    {d['input']} ({d['input_kind']}, {d['split']} split): {d['pool']:,} samples, {d['classes']} classes",
        f"rows     {d['image_size']}×{d['image_size']}×3 = {d['columns']:,} values, {d['layout']} order, "
        f"{d['fit']} fit; labels one-hot over {d['classes']} classes",
    ]
    per_sample = plan.row_bytes + plan.label_bytes
    if plan.spec.size_gb is not None:
        lines.append(
            f"size     {plan.spec.size_gb:g} GB target ÷ {per_sample:,.0f} bytes a sample "
            f"(measured on {plan.measured}) = {plan.samples:,} samples"
        )
    lines.append(samples_line(plan))
    approx = "~" if plan.spec.format == "csv" else ""
    for f in plan.files:
        lines.append(f"  {f.name:<44} {f.rows:>9,} × {f.cols:<6,} {approx}{f.bytes / 1e9:.3f} GB")
    lines.append(f"total    {approx}{plan.total_bytes / 1e9:.3f} GB in {plan.spec.out}")
    if plan.pool.inflate_bytes:
        what = "CIFAR batches read" if plan.pool.kind == "cifar" else "compressed npz data inflated"
        lines.append(f"         + {plan.pool.inflate_bytes / 1e9:.3f} GB while exporting: {what}")
    return "\n".join(lines)
