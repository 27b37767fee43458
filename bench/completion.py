"""Shell completion's answer time on a runs root of --runs ended runs: the ``clusterdeck`` process bash runs when
TAB is pressed after ``clusterdeck show``, timed whole, against the 150 ms budget.

    python bench/completion.py [--runs 10000] [--repeat 7]

The runs are written as bench/ls.py writes them; one ``ls`` builds the runs index, as any listing does. Each
round runs the process with argcomplete's variables set (what the script of ``clusterdeck completion bash``
sets), its answer in a file, and checks that every run id came back.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from ls import make_runs  # bench/ls.py


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-completion-") as home:
        root = Path(home) / "runs"
        make_runs(root, args.runs)
        env = {**os.environ, "CLUSTERDECK_HOME": home}
        subprocess.run([sys.executable, "-m", "clusterdeck.app.cli", "ls"], env=env, capture_output=True, check=True)
        answer = Path(home) / "answer"
        line = "clusterdeck show 2"
        env |= {
            "_ARGCOMPLETE": "1",
            "_ARGCOMPLETE_SHELL": "bash",
            "COMP_LINE": line,
            "COMP_POINT": str(len(line)),
            "_ARGCOMPLETE_STDOUT_FILENAME": str(answer),
            "IFS": "\013",
        }
        times = []
        for _ in range(args.repeat):
            started = time.perf_counter()
            subprocess.run([sys.executable, "-m", "clusterdeck.app.cli"], env=env, capture_output=True)
            times.append(time.perf_counter() - started)
            words = answer.read_text().split("\013")
            assert len(words) == args.runs, (len(words), words[:3])
        median = statistics.median(times)
        print(f"completion of `{line}` on {args.runs} runs: " + " ".join(f"{t * 1e3:.0f}" for t in times) + " ms")
        print(f"median {median * 1e3:.0f} ms (target < 150 ms)")


if __name__ == "__main__":
    main()
