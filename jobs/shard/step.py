"""The shard step as a payload: plan, write this task's shards in parallel, merge the index."""

from __future__ import annotations

import gc
import hashlib
import multiprocessing
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from clusterdeck.jobs import atomic
from clusterdeck.jobs.checksum import FAST
from clusterdeck.jobs.diskspace import nearest_existing
from clusterdeck.jobs.errors import UserError
from clusterdeck.jobs.formats import registry as input_formats
from clusterdeck.jobs.shard.encode import Encoder, SkipSample
from clusterdeck.jobs.shard.index import INDEX, INDEX_FORMAT
from clusterdeck.jobs.shard.plan import ShardJob, plan_split, sample_bytes, samples_per_shard, task_slice
from clusterdeck.jobs.shard.sources import Entries, Listing, Source, labelled, select_classes
from clusterdeck.jobs.shard.space import check_room, remove_temps, write_failed
from clusterdeck.jobs.shard.spill import (
    StreamedSource,
    load_spill,
    reading_spill,
    remove_spill,
    remove_spills,
    spill,
)
from clusterdeck.jobs.shard.write import completed_part, write_or_reuse
from clusterdeck.jobs.signals import worker_signals
from clusterdeck.jobs.spec import ShardInput, ShardSpec
from clusterdeck.jobs.telemetry.pipeline import Pipeline

Report = Callable[[dict[str, float]], None]
SOURCES_DIR = ".sources"  # under the output: inflated copies of compressed npz data, shared by the array's tasks
SPILL_DIR = ".spill"  # under the output by default: streamed inputs' samples between the two passes


class ShardStepFailed(Exception):
    """The shards were written but the step must fail, e.g. too many inputs were skipped."""


@dataclass
class ShardPlan:
    classes: list[str]
    listings: dict[str, Listing]
    jobs: list[ShardJob]
    sample_bytes: dict[str, float]
    """Per split, the mean bytes a sample takes in a shard (measured on a seeded sample): the space to find."""


def settings_of(spec: ShardSpec) -> dict[str, Any]:
    """What decides the shard set's content; a different value means a different shard set."""

    def split(inp: ShardInput | None) -> dict[str, str] | None:
        if inp is None:
            return None
        return {k: str(v) for k, v in inp.model_dump().items() if v is not None}

    settings: dict[str, Any] = {
        "seed": spec.seed,
        "shard_size_mb": spec.shard_size_mb,
        "max_samples": spec.max_samples,
        "train": split(spec.train),
        "val": split(spec.val),
    }
    # Only when set, so that shard sets made before these keys existed keep their settings.
    for key in ("classes", "resize_shorter", "jpeg_quality"):
        if getattr(spec, key) is not None:
            settings[key] = getattr(spec, key)
    return settings


def encoder_of(spec: ShardSpec) -> Encoder:
    return Encoder(spec.resize_shorter, spec.jpeg_quality)


def check_output(spec: ShardSpec) -> None:
    """Refuse, before anything runs, to write over a shard set made from other settings."""
    out = spec.output
    for name, inp in (("train", spec.train), ("val", spec.val)):
        if inp is not None and (out == inp.input or inp.input in out.parents or out in inp.input.parents):
            raise UserError(f"shard.output: {out} overlaps shard.{name}.input {inp.input}")
    if out.exists() and not out.is_dir():
        raise UserError(f"shard.output: {out} exists and is not a directory")
    index = out / INDEX
    if index.exists():
        try:
            existing = atomic.read_json(index).get("settings")
        except (OSError, ValueError, AttributeError):
            raise UserError(f"shard.output: {index} exists but is not a clusterdeck index") from None
        if existing != settings_of(spec):
            new = settings_of(spec)
            diff = sorted(k for k in existing.keys() | new.keys() if existing.get(k) != new.get(k))
            raise UserError(
                f"shard.output: {out} already holds a shard set made with other settings "
                f"({', '.join(diff)} differ); choose another output directory or remove it"
            )


def list_input(split: str, inp: ShardInput, cache: Path) -> Entries:
    """The samples of one ``[shard.<split>]`` input, in canonical order, with their wnids, listed by its format."""
    fmt = input_formats.get(inp.format)
    assert fmt is not None  # the spec checks it
    return fmt.entries(inp.input, inp.fields, cache / split)


def build_plan(spec: ShardSpec) -> ShardPlan:
    """Lists the inputs, picks the classes (train's, or every synset for a val-only set), cuts the shards."""
    entries = {
        split: list_input(split, inp, spec.output / SOURCES_DIR)
        for split, inp in (("train", spec.train), ("val", spec.val))
        if inp is not None
    }
    first = "train" if "train" in entries else "val"
    where = f"shard.{first}.input"
    classes = select_classes(entries[first].classes, spec.classes, where)
    encoder = encoder_of(spec)

    def stored_size(source: Source) -> Callable[[Any], int | None]:
        def size(loc: Any) -> int | None:
            # Stored as it is: a stat, not a read (a hung file must not hang planning).
            as_is = encoder == Encoder() or isinstance(source, StreamedSource)  # a streamed one cannot be read here
            if as_is and (raw := source.raw_size(loc)) is not None:
                return raw
            try:
                return len(encoder.encode(source.read(loc))[1])
            except (OSError, SkipSample):
                return None

        return size

    listings: dict[str, Listing] = {}
    jobs: list[ShardJob] = []
    means: dict[str, float] = {}
    for split, found in entries.items():
        listing = labelled(found, classes)
        inp = spec.train if split == "train" else spec.val
        assert inp is not None
        if not listing.names:
            kept = f" of the {len(classes)} classes kept" if listing.excluded else ""
            raise UserError(f"shard.{split}.input: {inp.input} holds no images{kept}")
        listings[split] = listing
        means[split] = sample_bytes(listing, stored_size(listing.source), spec.seed)
        per_shard = samples_per_shard(means[split], spec.shard_size_mb, spec.max_samples)
        jobs += plan_split(split, listing, per_shard, spec.seed, encoder)
    return ShardPlan(classes, listings, jobs, means)


def write_task(
    spec: ShardSpec, plan: ShardPlan, task: int, tasks: int, report: Report, pipeline: Pipeline | None = None
) -> None:
    """Writes (or verifies and keeps) this task's contiguous range of shards; checks the space first.

    A disk that fills anyway ends the task with one line naming the file; the shards finished
    stay (with their records), so a resume writes only the rest.
    """
    mine = [plan.jobs[i] for i in task_slice(len(plan.jobs), task, tasks)]
    remove_temps(spec.output, mine)  # a killed attempt's half-written shards: space this one needs
    # before the first byte, whatever was checked at submit; the siblings' shards too (same free space)
    check_room(spec.output, plan.jobs, plan.sample_bytes, tasks)
    spec.output.mkdir(parents=True, exist_ok=True)
    mine, spilled = _spilled(spec, mine, task, plan.sample_bytes)
    samples = size = done = 0
    started = time.monotonic()
    print(f"task {task}/{tasks}: {len(mine)} of {len(plan.jobs)} shards, {spec.workers} workers", flush=True)
    try:
        for done, (record, reused) in enumerate(
            _run_pool(mine, spec.output, plan.classes, spec.workers, pipeline), start=1
        ):
            samples += record["samples"]
            size += record["bytes"]
            how = "verified, kept" if reused else "written"
            print(f"{record['file']}: {record['samples']} samples, {record['bytes'] / 1e6:.1f} MB ({how})", flush=True)
            elapsed = max(time.monotonic() - started, 1e-9)
            report(
                {
                    "shards_done": done,
                    "shards_total": len(mine),
                    "samples": samples,
                    "bytes": size,
                    "mb_per_s": size / 1e6 / elapsed,
                }
            )
    except OSError as exc:  # the pool is gone by now: its workers' temporary files can go too
        remove_temps(spec.output, mine)
        raise write_failed(exc, spec.output, done, len(mine)) from None
    for folder in spilled:  # every shard of this task is written: its buckets have served
        remove_spill(folder)


def scratch_of(spec: ShardSpec) -> Path:
    """Where streamed inputs are spilled between the two passes (``jobs.shard.spill``)."""
    return spec.scratch or spec.output / SPILL_DIR


def _spilled(
    spec: ShardSpec, mine: list[ShardJob], task: int, means: dict[str, float]
) -> tuple[list[ShardJob], list[Path]]:
    """``mine`` with the shards of a streamed input still to write reading from their spilled samples (complete
    ones are kept as they are), and the spill folders this task made (to remove once it is done). An array's
    ``spill`` part spilled every shard already; a task spills its own only when that spill is not there, the
    splits of one input (train and val in one archive) in one pass over it."""
    streamed = [job for job in mine if isinstance(job.source, StreamedSource)]
    if not streamed:
        return mine, []
    todo = [job for job in streamed if completed_part(job, spec.output) is None]
    replaced: dict[str, ShardJob] = {}
    folders = []
    for source in dict.fromkeys(job.source for job in todo):
        jobs = [job for job in todo if job.source == source]
        shared = shared_spill(spec, source)
        tables = load_spill(shared, jobs)
        if tables is not None:
            spilled = reading_spill(jobs, shared, tables)
        else:
            folder = scratch_of(spec) / f"task-{task:05d}-{_tag(source)}"
            spilled = spill(jobs, folder, "shard.scratch", _shards_beside(spec, jobs, means))
            folders.append(folder)
        replaced.update({job.name: job for job in spilled})
    return [replaced.get(job.name, job) for job in mine], folders


def _tag(source: Any) -> str:
    return hashlib.sha256(repr(source).encode()).hexdigest()[:12]


def shared_spill(spec: ShardSpec, source: Any) -> Path:
    """The folder of the array's spill of ``source``: one per input, whichever splits it feeds."""
    return scratch_of(spec) / f"all-{_tag(source)}"


def _shards_beside(spec: ShardSpec, jobs: list[ShardJob], means: dict[str, float]) -> int:
    """The bytes ``jobs``' shards will take, when they go to the filesystem the spill goes to (the default
    scratch, in the output): the spill's free-space check must count them too."""
    try:
        same = os.stat(nearest_existing(scratch_of(spec))).st_dev == os.stat(nearest_existing(spec.output)).st_dev
    except OSError:
        return 0
    return sum(round(len(job.indices) * means[job.split]) for job in jobs) if same else 0


def spill_all(spec: ShardSpec, plan: ShardPlan) -> None:
    """The array's ``spill`` part: every unfinished shard of each streamed input, spilled once for all tasks; the
    splits of one input (train and val in one archive) in one pass over it."""
    streamed = [j for j in plan.jobs if isinstance(j.source, StreamedSource)]
    todo = [job for job in streamed if completed_part(job, spec.output, verify=False) is None]
    for source in dict.fromkeys(job.source for job in todo):
        jobs = [job for job in todo if job.source == source]
        spill(jobs, shared_spill(spec, source), "shard.scratch", _shards_beside(spec, jobs, plan.sample_bytes))


def _run_pool(
    jobs: list[ShardJob], out: Path, classes: list[str], workers: int, pipeline: Pipeline | None
) -> Iterator[tuple[dict[str, Any], bool]]:
    workers = max(1, min(workers, len(jobs)))
    if workers == 1:
        for job in jobs:
            yield write_or_reuse(job, out, classes, pipeline)
        return
    # fork: no CUDA state here, fork starts workers in milliseconds, and the pipeline counters are inherited.
    # (The telemetry thread holds no lock a child could need: it only reads counters.)
    gc.freeze()  # the plan's million objects stay shared with the children, not copied as refcounts change
    with multiprocessing.get_context("fork").Pool(workers, initializer=_init_worker, initargs=(pipeline,)) as pool:
        yield from pool.imap_unordered(_write_one, [(job, out, classes) for job in jobs])
        pool.close()  # all done: let the workers exit on their own rather than be terminated
        pool.join()


_worker_pipeline: Pipeline | None = None  # set in each pool worker by _init_worker


def _init_worker(pipeline: Pipeline | None) -> None:
    global _worker_pipeline
    _worker_pipeline = pipeline
    worker_signals()


def _write_one(args: tuple[ShardJob, Path, list[str]]) -> tuple[dict[str, Any], bool]:
    return write_or_reuse(*args, _worker_pipeline)


def merge_index(spec: ShardSpec, plan: ShardPlan) -> dict[str, Any]:
    """Builds index.json from every shard's record; fails if a shard is missing or too much was skipped."""
    splits: dict[str, Any] = {}
    missing = []
    for split, listing in plan.listings.items():
        entry: dict[str, Any] = {
            "samples": 0,
            "bytes": 0,
            "inputs": len(listing) + len(listing.skipped),
            "excluded": listing.excluded,
            "shards": [],
            "skipped": list(listing.skipped),
        }
        for job in (j for j in plan.jobs if j.split == split):
            record = completed_part(job, spec.output, verify=False)
            if record is None:
                missing.append(job.name)
                continue
            keys = ("name", "file", "samples", "bytes", "sha256", FAST)  # a part record from before FAST lacks it
            entry["shards"].append({k: record[k] for k in keys if k in record})
            entry["samples"] += record["samples"]
            entry["bytes"] += record["bytes"]
            entry["skipped"] += record["skipped"]
        splits[split] = entry
    if missing:
        raise ShardStepFailed(f"{len(missing)} shards are missing or incomplete (first: {missing[0]}); resume the run")
    index = {
        "format": INDEX_FORMAT,
        "settings": settings_of(spec),
        "classes": plan.classes,
        "encoding": {"resize_shorter": spec.resize_shorter, "jpeg_quality": spec.jpeg_quality},
        "splits": splits,
    }
    try:
        atomic.write_json(spec.output / INDEX, index)
    except OSError as exc:
        raise write_failed(exc, spec.output / INDEX, len(plan.jobs), len(plan.jobs)) from None
    for split, entry in splits.items():
        print(
            f"{split}: {entry['samples']} samples in {len(entry['shards'])} shards, "
            f"{entry['bytes'] / 1e6:.1f} MB, {len(entry['skipped'])} inputs skipped"
            + (f", {entry['excluded']} of other classes left out" if entry["excluded"] else ""),
            flush=True,
        )
    _check_skipped(spec, splits)
    return index


def _check_skipped(spec: ShardSpec, splits: dict[str, Any]) -> None:
    for split, entry in splits.items():
        fraction = len(entry["skipped"]) / max(entry["inputs"], 1)
        if fraction > spec.max_skipped_fraction:
            first = entry["skipped"][0]
            raise ShardStepFailed(
                f"{split}: {len(entry['skipped'])} of {entry['inputs']} inputs skipped ({fraction:.1%} > "
                f"shard.max_skipped_fraction {spec.max_skipped_fraction:.1%}); first: {first['path']}: "
                f"{first['reason']}; all are listed in {spec.output / INDEX}"
            )


def run_shard_part(spec: ShardSpec, part: str, report: Report, pipeline: Pipeline | None = None) -> None:
    """``main``: the whole step in one job; ``task-k``: one array task; ``merge``: the index."""
    plan = build_plan(spec)
    if part in ("main", "merge"):
        if part == "main":
            write_task(spec, plan, 0, 1, report, pipeline)
        merge_index(spec, plan)
        remove_spills(scratch_of(spec), ours=spec.scratch is None)  # the set is complete: every spill has served
    elif part == "spill":
        spill_all(spec, plan)
    elif part.startswith("task-"):
        write_task(spec, plan, int(part.removeprefix("task-")), spec.resources.array_tasks, report, pipeline)
    else:
        raise ValueError(f"unknown shard part {part!r}")
