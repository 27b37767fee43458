"""Progress of long byte-bound commands (``app.progress``): a rich bar on a terminal, plain lines in a pipe."""

from __future__ import annotations

import io
import json
import re
from pathlib import Path
from typing import Any

from clusterdeck.app.progress import ByteMeter
from tests.conftest import run_cli
from tests.test_telemetry import cli, run_in_pty


def test_stage_on_a_terminal_draws_a_bar_with_bytes_rate_and_eta(sample_shards: Path, tmp_path: Path) -> None:
    total = sum(p.stat().st_size for p in sample_shards.glob("*.tar"))
    rate = total / 2.5e6  # the copy is held to about 2.5 s: the bar is drawn at 10 Hz meanwhile
    screen: dict[str, Any] = {}
    run_in_pty(cli("stage", str(sample_shards), "--to", str(tmp_path / "ssd"), "--max-mb-s", f"{rate:.6f}"), screen)
    assert screen["code"] == 0, screen["screen"]
    text = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", screen["screen"])  # the colours and cursor moves
    assert re.search(r"stage\s.*━.*\d+(\.\d)?/\d+(\.\d)? [kM]B\s+\d+(\.\d)? [kM]B/s\s+ETA\s+\d:\d\d:\d\d", text), text
    assert re.search(r"stage: \d+/\d+ shards ready", text), text  # the summary follows the bar


def test_quiet_draws_nothing_on_a_terminal(sample_shards: Path, tmp_path: Path) -> None:
    screen: dict[str, Any] = {}
    run_in_pty(cli("stage", str(sample_shards), "--to", str(tmp_path / "ssd"), "--max-mb-s", "4", "--quiet"), screen)
    assert screen["code"] == 0, screen["screen"]
    assert "━" not in screen["screen"] and "ETA" not in screen["screen"]
    assert re.search(r"stage: \d+/\d+ shards ready", screen["screen"])  # the result is still said


def test_inspect_in_a_pipe_prints_no_bar(sample_shards: Path) -> None:
    done = run_cli("inspect", str(sample_shards), "--json")
    assert done.code == 0, done.err
    assert "━" not in done.err and "\x1b[" not in done.err
    assert json.loads(done.out)["verify"]["ok"] > 0


def test_plain_lines_say_bytes_total_rate_and_eta() -> None:
    out = io.StringIO()
    with ByteMeter("inspect", 4_000_000_000, stream=out, every=0) as meter:
        meter.advance(1_000_000_000)
        meter.advance(1_000_000_000)
    lines = out.getvalue().splitlines()
    assert len(lines) == 2
    assert re.fullmatch(r"inspect: 2\.00/4\.00 GB, \d+ MB/s, ETA \d+ s", lines[1]), lines


def test_plain_lines_of_items_count_them() -> None:
    out = io.StringIO()
    with ByteMeter("export", 10_000, unit="samples", stream=out, every=0) as meter:
        meter.update(2_500)
    assert re.fullmatch(r"export: 2,500/10,000 samples, [\d,]+/s, ETA \d+ s\n", out.getvalue()), out.getvalue()


def test_nothing_is_printed_for_work_shorter_than_a_line_s_interval() -> None:
    out = io.StringIO()
    with ByteMeter("stage", 10, stream=out) as meter:
        meter.advance(10)
    assert out.getvalue() == ""
