"""The headless CLI: ``clusterdeck submit|ls|show|diff|logs|metrics|watch|cancel|resume|stage|sample-data|demo``,
``val-sort`` (a flat ILSVRC2012 val set as ImageFolder class folders), ``inspect`` (what an input or a
shard set holds) and ``version``.

Every document ``--json`` prints carries ``schema`` and ``clusterdeck`` (``jobs.protocol``): the
remote deck reads them on the laptop from another installation.

``--host NAME`` does the same on a cluster's login node over SSH (``app.remote``): every
command that works on runs goes through a ``Deck``, this machine's or the login node's.

Exit codes: 0 done, 1 the run failed, 2 a usage or spec error (printed without a traceback).
Only light modules are imported at start; torch and friends load inside payloads.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from app.formats import duration
from jobs.errors import UserError

if TYPE_CHECKING:
    from jobs.compare import Comparison
    from jobs.deck.base import Deck
    from jobs.status import RunView

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


class _Version(argparse.Action):
    """``--version``: the installed version, looked up only when asked (not at every start)."""

    def __call__(self, parser: argparse.ArgumentParser, *_: Any) -> None:
        from jobs.protocol import version

        print(f"clusterdeck {version()}")
        parser.exit()


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        self.print_usage(sys.stderr)
        print(f"clusterdeck: error: {message}", file=sys.stderr)
        sys.exit(EXIT_USAGE)


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="clusterdeck", description="Shard, stage and train image models on SLURM clusters.")
    p.add_argument("--version", action=_Version, nargs=0, help="print the version and exit")
    p.add_argument("--runs-root", type=Path, help="runs root (default $CLUSTERDECK_HOME/runs or ~/.clusterdeck/runs)")
    p.add_argument(
        "--host",
        metavar="NAME",
        help="work on a cluster's login node over SSH: a profile of ~/.config/clusterdeck/config.toml, "
        "an ~/.ssh/config alias or a hostname (--runs-root is then a path there)",
    )
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    s = sub.add_parser("submit", help="submit a run from a spec")
    s.add_argument("spec", type=Path, help="spec file (TOML); - reads it from standard input")
    s.add_argument("--spec-source", help=argparse.SUPPRESS)  # what problems call a spec sent on stdin
    s.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a spec key (value parsed as TOML), e.g. --set shard.seed=3",
    )
    s.add_argument("--executor", choices=["local", "slurm"])
    s.add_argument("--wait", action="store_true", help="wait for the run to end; exit 0 done, 1 failed")
    s.add_argument("--json", action="store_true")

    s = sub.add_parser("ls", help="list runs")
    s.add_argument("--json", action="store_true")

    s = sub.add_parser("show", help="a run's state, steps, jobs and outputs")
    s.add_argument("run", help="run id, unique id prefix, or unique name")
    s.add_argument("--json", action="store_true")

    s = sub.add_parser("diff", help="compare runs: how their specs differ, their per-epoch curves side by side")
    s.add_argument("runs", nargs="+", metavar="RUN", help="two or more runs: id, unique id prefix, or unique name")
    s.add_argument("--json", action="store_true")

    s = sub.add_parser("logs", help="print a run's job logs (every job, attempt and rank)")
    s.add_argument("run")
    s.add_argument("-f", "--follow", action="store_true", help="keep printing until the run ends")
    s.add_argument("--rank", type=_natural, help="only this rank's logs")
    s.add_argument("--err", action="store_true", help="stderr instead of stdout")

    s = sub.add_parser("metrics", help="print a run's metrics and telemetry records")
    s.add_argument("run")
    s.add_argument("--kind", action="append", default=[], metavar="K", help="only records of kind K (repeatable)")
    s.add_argument("-f", "--follow", action="store_true", help="keep printing until the run ends")
    s.add_argument("--json", action="store_true", help="one JSON object per line: a record, schema and clusterdeck")

    s = sub.add_parser("watch", help="a live view of a run until it ends; exits with the run's code")
    s.add_argument("run")

    for name, text in (("cancel", "cancel a run's jobs"), ("resume", "re-run what failed or was cancelled")):
        s = sub.add_parser(name, help=text)
        s.add_argument("run")
        s.add_argument("--json", action="store_true")

    s = sub.add_parser("stage", help="copy a shard set into a node cache, verified (what jobs with keep = true reuse)")
    s.add_argument("shards", type=Path, metavar="SHARDS", help="shard set directory (with index.json)")
    s.add_argument("--to", type=Path, required=True, metavar="PATH", help="node-local directory, as train.stage.to")
    s.add_argument("--split", action="append", metavar="NAME", help="stage only this split (repeatable)")
    s.add_argument("--streams", type=_positive, default=4, help="files copied in parallel (default 4)")
    s.add_argument("--max-mb-s", type=float, default=0.0, help="cap on the copy rate in MB/s (default: none)")
    s.add_argument("--json", action="store_true", help="print the final tally as JSON")

    s = sub.add_parser("sample-data", help="write a small ILSVRC2012-shaped dataset")
    s.add_argument("dir", type=Path)
    s.add_argument("--classes", type=_positive, default=10)
    s.add_argument("--train-per-class", type=_positive, default=40)
    s.add_argument("--val-per-class", type=_positive, default=10)
    s.add_argument("--seed", type=int, default=0)

    s = sub.add_parser(
        "val-sort", help="sort a flat ILSVRC2012 val directory into <wnid>/ class folders (hard links) for ImageFolder"
    )
    s.add_argument("val_dir", type=Path, metavar="VAL_DIR", help="flat directory of ILSVRC2012_val_XXXXXXXX.JPEG")
    s.add_argument(
        "--ground-truth",
        type=Path,
        required=True,
        metavar="F",
        help="ILSVRC2012_validation_ground_truth.txt: one 1-based ILSVRC2012_ID per line",
    )
    s.add_argument(
        "--synsets", type=Path, required=True, metavar="F", help="devkit meta.mat, or a text file: wnid first per line"
    )
    s.add_argument("--out", type=Path, required=True, metavar="DIR", help="where the class folders go (not in VAL_DIR)")
    s.add_argument("--json", action="store_true", help="print the counts as JSON")

    s = sub.add_parser(
        "inspect", help="what a shard input or a shard set holds: counts, classes, sizes, bytes; checks shard sets"
    )
    s.add_argument("path", type=Path, metavar="PATH", help="a shard set (with index.json), an input directory or file")
    s.add_argument(
        "--format", metavar="F", help="the layout of PATH: a shard.*.format, or 'shards' (default: detected)"
    )
    s.add_argument("--devkit", type=Path, metavar="F", help="ILSVRC2012 devkit (.tar.gz or directory): val labels")
    s.add_argument("--ground-truth", type=Path, metavar="F", help="val ground truth, with --synsets (or --devkit)")
    s.add_argument("--synsets", type=Path, metavar="F", help="meta.mat or wnid-per-line text: val or npz class names")
    s.add_argument("--no-verify", action="store_true", help="shard sets: check sizes only, not sha256")
    s.add_argument("--json", action="store_true", help="print the report as JSON")

    s = sub.add_parser(
        "export", help="dense CSV matrices with .mtd files (or .npy) of a shard set or npz batches, for SystemDS"
    )
    s.add_argument("input", type=Path, metavar="INPUT", help="a shard set (with index.json) or npz batches")
    s.add_argument("--out", type=Path, required=True, metavar="DIR", help="where the files go")
    s.add_argument("--name", help="first part of every file name (default imagenet)")
    size = s.add_mutually_exclusive_group(required=True)
    size.add_argument("--size-gb", type=float, metavar="X", help="the four files together come to about X GB")
    size.add_argument("--samples", type=int, metavar="N", help="export N samples, train and val together")
    s.add_argument("--val-fraction", type=float, metavar="F", help="share of the samples in the val files (0.2)")
    s.add_argument("--seed", type=int, help="seed of the choice, order and split of the samples (0)")
    s.add_argument("--split", help="the input's part to take samples from: train (default), val or all")
    s.add_argument("--image-size", type=int, metavar="S", help="rows hold S×S×3 values (64)")
    s.add_argument("--fit", help="squash (default: resize whole images) or crop (their centre square)")
    s.add_argument("--layout", help="chw (default: colour planes, as SystemDS conv2d) or hwc (r,g,b per pixel)")
    s.add_argument("--format", help="csv (default, with .mtd files) or npy (float32 pixels, uint8 labels)")
    s.add_argument("--decimals", type=int, metavar="D", help="CSV digits after the point (6)")
    s.add_argument("--num-classes", type=int, metavar="K", help="one-hot width (default: the input's classes)")
    s.add_argument("--workers", help="processes decoding shard images (default auto: this machine's CPUs)")
    s.add_argument(
        "--overwrite", action="store_true", help="replace files of the same names once the new ones are done"
    )
    s.add_argument("--inspect", action="store_true", help="show what would be written; write nothing")
    s.add_argument("--json", action="store_true", help="print the plan (and the result) as JSON")

    sub.add_parser("demo", help="make sample data and shard it on this machine")

    s = sub.add_parser("version", help="this clusterdeck's version and JSON schemas (with --host: the login node's)")
    s.add_argument("--json", action="store_true")

    s = sub.add_parser("trust", help="with --host: trust the login node's host key, given its fingerprint")
    s.add_argument(
        "fingerprint", metavar="SHA256:…", help="the fingerprint the refusal showed, checked with the admins"
    )
    return p


LOCAL_ONLY = ("stage", "sample-data", "val-sort", "inspect", "export", "demo")
"""Commands on this machine's files: with --host, run them on the cluster itself."""


def _natural(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {value}")
    return value


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.host and args.command in LOCAL_ONLY:
            raise UserError(f"--host: `{args.command}` works on this machine's files; run it on the cluster itself")
        if args.command is None:
            return run_app(args)
        return COMMANDS[args.command](args)
    except UserError as exc:
        for problem in exc.problems:
            print(f"clusterdeck: error: {problem}", file=sys.stderr)
        return exc.exit_code
    except (ConnectionError, TimeoutError) as exc:  # remote mode: the network, not the input
        print(f"clusterdeck: error: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `clusterdeck logs RUN | head`: the reader left; say nothing more
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK


def run_app(args: argparse.Namespace) -> int:
    from app.tui.app import make_app

    with open_deck(args) as deck:
        make_app(deck=deck).run()
    return EXIT_OK


def open_deck(args: argparse.Namespace) -> Deck:
    """This machine's runs root, or (``--host``) the login node's, connected."""
    if args.host:
        from app.remote import connect

        return connect(args.host, str(args.runs_root) if args.runs_root else None)
    from jobs.deck.local import LocalDeck

    return LocalDeck(_root(args), root_given=args.runs_root is not None)


def _root(args: argparse.Namespace) -> Path:
    from jobs.runs import default_runs_root

    return args.runs_root.expanduser() if args.runs_root else default_runs_root()


def _print_json(schema: str, doc: dict[str, Any]) -> None:
    """``doc`` as the document ``schema`` of ``jobs.protocol``: stamped with its schema and this version."""
    from jobs.protocol import stamp

    print(json.dumps(stamp(schema, doc), indent=2, sort_keys=True, default=str))


def exit_for(state: str) -> int:
    return EXIT_OK if state == "COMPLETED" else EXIT_FAILED


def cmd_submit(args: argparse.Namespace) -> int:
    from jobs.specfile import apply_overrides, read_table
    from jobs.submit import wait_run

    overrides = list(args.overrides) + ([f'cluster.executor="{args.executor}"'] if args.executor else [])
    source = args.spec_source or ("<stdin>" if str(args.spec) == "-" else str(args.spec))
    table = apply_overrides(read_table(args.spec), overrides)
    with open_deck(args) as deck:
        paths = deck.submit(table, source)
        view = deck.view(paths)
        if not args.json:
            print(f"submitted run {paths.run_id} ({view.name}) to {view.executor}: {paths.root}", flush=True)
        if not args.wait:
            if args.json:
                _print_json("run-view", view.to_json())
            return EXIT_OK
        view = wait_run(paths, on_update=None if args.json else _progress_printer(), view_of=deck.view)
    if args.json:
        _print_json("run-view", view.to_json())
    else:
        print(f"run {view.run_id} {view.state}")
        _print_failures(view)
    return exit_for(view.state)


def _progress_printer() -> Callable[[RunView], None]:
    from jobs.steps import registry

    seen: dict[str, str] = {}

    def show(view: RunView) -> None:
        for step in view.steps:
            line = f"{step.name}: {step.state}"
            kind = registry.find(step.name)
            for part in step.parts:
                if kind is not None and (text := kind.progress_text(part.progress)):
                    line += f" [{part.part} {text}]"
            if seen.get(step.name) != line:
                seen[step.name] = line
                print(line, flush=True)

    return show


def _print_failures(view: RunView) -> None:
    for step in view.steps:
        for part in step.parts:
            if part.state != "COMPLETED" and part.error:
                print(f"  {step.name} {part.part}: {part.state}: {part.error}", file=sys.stderr)


def cmd_ls(args: argparse.Namespace) -> int:
    with open_deck(args) as deck:
        entries, where = deck.listing(), deck.where
    if args.json:
        _print_json("run-list", {"runs": entries})
        return EXIT_OK
    if not entries:
        print(f"no runs under {where}")
        return EXIT_OK
    rows = [["ID", "NAME", "STATE", "STEPS", "CREATED", "ELAPSED"]]
    for e in entries:
        steps = " ".join(f"{step}:{state}" for step, state in e["steps"].items())
        created = e["created_at"]
        if e.get("damaged"):  # the file and what is wrong, where the steps would be
            rows.append([e["run_id"], e["name"] or "-", e["state"], e["damaged"], _when(created), "-"])
            continue
        rows.append([e["run_id"], e["name"], e["state"], steps, _when(created), _elapsed(created, e["ended_at"])])
    _print_table(rows)
    return EXIT_OK


def _when(ts: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(ts))


def _elapsed(start: float, end: float | None) -> str:
    return duration((end or time.time()) - start)


def cmd_show(args: argparse.Namespace) -> int:
    with open_deck(args) as deck:
        view = deck.view(deck.resolve(args.run))
    if args.json:
        _print_json("run-view", view.to_json())
        return EXIT_OK
    print(f"run      {view.run_id}  {view.name}")
    print(f"state    {view.state}   executor {view.executor}   elapsed {_elapsed(view.created_at, view.ended_at)}")
    print(f"path     {view.path}")
    for step in view.steps:
        print(f"step     {step.name}: {step.state} (attempt {step.attempt}, jobs {', '.join(step.job_ids)})")
        for part in step.parts:
            extra = "  ".join(f"{k}={v:g}" for k, v in part.progress.items())
            print(
                f"  {part.part:<8} {part.state:<10} job {part.job_id:<12} node {part.node or '-':<10} "
                f"exit {part.exit_code or '-':<5} {extra}".rstrip()
            )
            if part.error and part.state != "COMPLETED":
                print(f"           {part.error}")
        if len(step.attempts) > 1 or any(p.history for a in step.attempts for p in a.parts):
            _print_attempts(step)
    for name, where in view.outputs.items():
        for key, value in where.items():
            print(f"output   {name}.{key}: {value}")
    return exit_for(view.state) if view.ended else EXIT_OK


def _print_attempts(step: Any) -> None:
    """Every start of every part: attempts (resume) and, within one, the scheduler's requeues."""
    from jobs.tail.records import Progress

    print("  attempts:")
    for attempt in step.attempts:
        for part in attempt.parts:
            resumed_from = Progress.of(part.progress).resumed_from_step
            starts = [*part.history, {**vars(part), "resumed_from_step": resumed_from}]
            for start in starts:
                resumed = start.get("resumed_from_step")
                print(
                    f"    {attempt.number:<3} {part.part:<8} {start['state']:<10} job {start['job_id']:<12} "
                    f"node {start['node'] or '-':<10} {_when(start['started_at']) if start['started_at'] else '-':<16} "
                    f"resumed from {'step ' + str(int(resumed)) if resumed is not None else 'the start'}"
                )


def cmd_diff(args: argparse.Namespace) -> int:
    with open_deck(args) as deck:
        comparison = deck.compare(args.runs)
    if args.json:
        _print_json("run-diff", comparison.to_json())
    else:
        _print_comparison(comparison)
    return EXIT_OK


def _print_comparison(c: Comparison) -> None:
    """Who is who, the spec keys that differ, then per-epoch loss, top-1 and top-5 of every run side by side."""
    from jobs.compare import format_value, letter

    columns = [letter(i) for i in range(len(c.run_ids))]
    _print_table([[col, c.run_ids[i], c.names[i], c.states[i]] for i, col in enumerate(columns)])
    print()
    if c.differences:
        print("spec differences")
        _print_table([["KEY", *columns], *([key, *map(format_value, values)] for key, values in c.differences)])
    else:
        print("the specs are the same")
    print()
    if not c.epochs:
        print("no training records yet in any of these runs")
        return
    series = (("train_loss", "loss", "{:.4f}"), ("top1", "top-1", "{:.1%}"), ("top5", "top-5", "{:.1%}"))
    rows = [["EPOCH", *(f"{col} {title}" for col in columns for _, title, _ in series)]]
    for epoch in c.epochs:
        cells = [str(epoch)]
        for run in range(len(columns)):
            for key, _, fmt in series:
                value = c.value(run, key, epoch)
                cells.append(fmt.format(value) if value is not None else "-")
        rows.append(cells)
    _print_table(rows, right=True)
    print()
    print("best top-1")
    for run, col in enumerate(columns):
        top = c.best_top1(run)
        print(f"  {col}  {f'{top[1]:.1%} at epoch {top[0]}' if top else '-'}")


def _print_table(rows: list[list[str]], *, right: bool = False) -> None:
    """Columns padded to their widest cell; ``right`` aligns every column but the first to the right (numbers)."""
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        cells = [
            c.ljust(w) if i == 0 or not right else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths, strict=True))
        ]
        print("  ".join(cells).rstrip())


def cmd_logs(args: argparse.Namespace) -> int:
    from app.follow import cmd_logs as logs

    with open_deck(args) as deck:
        return logs(args, deck, deck.resolve(args.run))


def cmd_metrics(args: argparse.Namespace) -> int:
    from app.follow import cmd_metrics as metrics

    with open_deck(args) as deck:
        return metrics(args, deck, deck.resolve(args.run))


def cmd_watch(args: argparse.Namespace) -> int:
    from app.follow import cmd_watch as watch

    with open_deck(args) as deck:
        return watch(args, deck, deck.resolve(args.run))


def cmd_cancel(args: argparse.Namespace) -> int:
    with open_deck(args) as deck:
        view = deck.cancel(deck.resolve(args.run))
    if args.json:
        _print_json("run-view", view.to_json())
    else:
        print(f"run {view.run_id}: cancel requested" if not view.ended else f"run {view.run_id} is {view.state}")
    return EXIT_OK


def cmd_resume(args: argparse.Namespace) -> int:
    with open_deck(args) as deck:
        paths = deck.resolve(args.run)
        resumed = deck.resume(paths)
        if args.json:
            _print_json("run-resume", {**deck.view(paths).to_json(), "resumed": resumed})
            return EXIT_OK
    if not resumed:
        print(f"run {paths.run_id}: every step completed; nothing to resume")
    else:
        print(f"run {paths.run_id}: resubmitted")
    return EXIT_OK


def cmd_stage(args: argparse.Namespace) -> int:
    from jobs.stage.job import summary, warm_cache

    if args.max_mb_s < 0:
        raise UserError(f"--max-mb-s: must be 0 (no cap) or more, got {args.max_mb_s}")
    tty = sys.stderr.isatty()

    def progress(r: dict[str, Any]) -> None:
        eta = f"ETA {r['eta_s']:.0f} s" if r["eta_s"] is not None else ""
        line = (
            f"  {r['bytes_done'] / 1e9:.2f}/{r['bytes_total'] / 1e9:.2f} GB  {r['files_done']}/{r['files_total']} "
            f"shards  {r['mb_s']:.0f} MB/s  {eta}"
        )
        print(f"\r{line:<70}" if tty else line, end="" if tty else "\n", file=sys.stderr, flush=True)

    cache, tally = warm_cache(
        args.shards, args.to, splits=args.split, streams=args.streams, max_mb_s=args.max_mb_s, on_progress=progress
    )
    if tty:
        print(file=sys.stderr)
    if args.json:
        _print_json("stage-tally", {"cache": str(cache), **tally.record(final=True)})  # the whole run's rate
    else:
        print(f"{summary(tally)}\n{cache}")
    return EXIT_OK


def cmd_sample_data(args: argparse.Namespace) -> int:
    from jobs.sample_data import make_sample_data

    data = make_sample_data(args.dir, args.classes, args.train_per_class, args.val_per_class, args.seed)
    print(
        f"wrote {args.classes} classes: {data.train} ({args.classes * args.train_per_class} images), "
        f"{data.val} ({args.classes * args.val_per_class} images), {data.ground_truth.name}, {data.synsets.name}"
    )
    return EXIT_OK


def cmd_val_sort(args: argparse.Namespace) -> int:
    from jobs.shard.valsort import sort_val, summary

    result = sort_val(args.val_dir, args.ground_truth, args.synsets, args.out)
    if args.json:
        _print_json("val-sort", result.record())
    else:
        print(summary(result))
    return EXIT_OK


def cmd_inspect(args: argparse.Namespace) -> int:
    from app.render.inspect import render
    from jobs.shard.inspect import failures, inspect_path

    report = inspect_path(
        args.path,
        args.format,
        devkit=args.devkit,
        ground_truth=args.ground_truth,
        synsets=args.synsets,
        verify=not args.no_verify,
    )
    if args.json:
        _print_json("inspect-report", report)
    else:
        print(render(report))
    for problem in failures(report):
        print(f"clusterdeck: error: {problem}", file=sys.stderr)
    return EXIT_OK if report["ok"] else EXIT_FAILED


def cmd_export(args: argparse.Namespace) -> int:
    from app.export import run_export

    return run_export(args)


def cmd_demo(args: argparse.Namespace) -> int:
    from app.demo import run_demo

    return run_demo(args.runs_root)


def cmd_version(args: argparse.Namespace) -> int:
    """This clusterdeck's version and schemas; with ``--host``, the login node's too, once checked against them."""
    from jobs.protocol import SCHEMAS, version, version_doc

    peer: dict[str, Any] = {}
    if args.host:
        with open_deck(args) as deck:
            peer = deck.check_version()  # type: ignore[attr-defined]  # --host: an SshDeck
    if args.json:
        doc = version_doc() | ({"login_node": {"host": args.host, **peer}} if args.host else {})
        _print_json("version", doc)
        return EXIT_OK
    print(f"clusterdeck {version()} (JSON {', '.join(f'{k}/{v}' for k, v in SCHEMAS.items())})")
    if args.host:
        print(f"{args.host}: clusterdeck {peer.get('clusterdeck', '?')}, the same JSON schemas")
    return EXIT_OK


def cmd_trust(args: argparse.Namespace) -> int:
    if not args.host:
        raise UserError("trust: name the login node with --host NAME (clusterdeck --host NAME trust SHA256:…)")
    from app.remote import trust

    print(trust(args.host, args.fingerprint))
    return EXIT_OK


COMMANDS = {
    "submit": cmd_submit,
    "ls": cmd_ls,
    "show": cmd_show,
    "diff": cmd_diff,
    "logs": cmd_logs,
    "metrics": cmd_metrics,
    "watch": cmd_watch,
    "cancel": cmd_cancel,
    "resume": cmd_resume,
    "stage": cmd_stage,
    "sample-data": cmd_sample_data,
    "val-sort": cmd_val_sort,
    "inspect": cmd_inspect,
    "export": cmd_export,
    "demo": cmd_demo,
    "version": cmd_version,
    "trust": cmd_trust,
}

if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
