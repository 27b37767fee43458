"""Shell completion as a user meets it: bash sources ``clusterdeck completion bash`` and its completion function
runs the real ``clusterdeck`` (argcomplete's protocol); zsh and fish get their own scripts. Also: the global
options work after the command."""

from __future__ import annotations

import json
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from clusterdeck.jobs.sample_data import SampleData
from tests.conftest import run_cli, shard_spec

BIN = Path(sys.executable).parent


def bash_complete(line: str, env_home: Path) -> list[str]:
    """What TAB offers at the end of ``line`` in a real bash with the completion script sourced."""
    words = shlex.split(line) + ([""] if line.endswith(" ") else [])
    program = f"""
source <(clusterdeck completion bash)
COMP_LINE={shlex.quote(line)}; COMP_POINT=${{#COMP_LINE}}
COMP_WORDS=({" ".join(shlex.quote(w) for w in words)}); COMP_CWORD={len(words) - 1}
_python_argcomplete clusterdeck
printf '%s\\n' "${{COMPREPLY[@]}}"
"""
    env = {"PATH": f"{BIN}:/usr/bin:/bin", "HOME": str(env_home), "CLUSTERDECK_HOME": str(env_home / ".clusterdeck")}
    done = subprocess.run(["bash", "-c", program], capture_output=True, text=True, timeout=60, env=env)
    assert done.returncode == 0, done.stderr
    return [w.strip() for w in done.stdout.splitlines() if w.strip()]


@pytest.fixture
def root(tmp_path: Path) -> Path:
    runs = tmp_path / "runs"
    for run_id in ("20261207-101010-aaaa", "20261207-101011-bbbb", "20261106-090000-cccc"):
        (runs / run_id).mkdir(parents=True)
    return runs


def test_bash_completes_commands_options_and_templates(tmp_path: Path) -> None:
    assert bash_complete("clusterdeck sh", tmp_path) == ["show"]
    assert {"--to", "--streams", "--quiet"} <= set(bash_complete("clusterdeck stage --", tmp_path))
    assert bash_complete("clusterdeck completion z", tmp_path) == ["zsh"]
    templates = bash_complete("clusterdeck submit imagenet-res", tmp_path)
    assert templates == ["imagenet-resnet152", "imagenet-resnet50"]


def test_bash_completes_run_ids_of_the_runs_root_given_before_or_after_the_command(root: Path, tmp_path: Path) -> None:
    before = bash_complete(f"clusterdeck --runs-root {root} show 202612", tmp_path)
    assert before == ["20261207-101010-aaaa", "20261207-101011-bbbb"]
    after = bash_complete(f"clusterdeck logs --runs-root {root} 20261106", tmp_path)
    assert after == ["20261106-090000-cccc"]
    assert bash_complete(f"clusterdeck diff --runs-root {root} 20261207-101010-aaaa 20261207-1010", tmp_path) == [
        "20261207-101010-aaaa",
        "20261207-101011-bbbb",
    ]
    assert bash_complete(f"clusterdeck --host nowhere --runs-root {root} show 2026", tmp_path) == []


def test_bash_completes_the_names_of_ended_runs(sample_data: SampleData, tmp_path: Path, home: Path) -> None:
    spec = tmp_path / "spec.toml"
    spec.write_text(shard_spec(sample_data, tmp_path / "shards", name="tabbed-shards"))
    done = run_cli("submit", str(spec), "--wait", "--json")
    assert done.code == 0, done.err
    run_id = json.loads(done.out)["run_id"]
    root = home / "runs"
    assert bash_complete(f"clusterdeck show --runs-root {root} tabbed", tmp_path) == ["tabbed-shards"]
    assert bash_complete(f"clusterdeck show --runs-root {root} {run_id[:9]}", tmp_path) == [run_id]


def test_a_bad_config_gives_no_words_and_no_traceback(tmp_path: Path) -> None:
    config = tmp_path / ".config" / "clusterdeck" / "config.toml"
    config.parent.mkdir(parents=True)
    config.write_text('[defaults]\nruns_root = "$NO_SUCH_VARIABLE/runs"\n')
    program = """
source <(clusterdeck completion bash)
COMP_LINE="clusterdeck logs "; COMP_POINT=${#COMP_LINE}; COMP_WORDS=(clusterdeck logs ""); COMP_CWORD=2
_ARC_DEBUG=1 _python_argcomplete clusterdeck
printf '[%s]\\n' "${COMPREPLY[@]}"
"""
    env = {"PATH": f"{BIN}:/usr/bin:/bin", "HOME": str(tmp_path), "XDG_CONFIG_HOME": str(tmp_path / ".config")}
    done = subprocess.run(["bash", "-c", program], capture_output=True, text=True, timeout=60, env=env)
    assert done.returncode == 0 and "Traceback" not in done.stdout + done.stderr, done.stderr
    offered = [w.strip("[]") for w in done.stdout.split()]
    assert offered and all(w.startswith("--") for w in offered), offered  # the options still; no run, no error


@pytest.mark.parametrize(("shell", "marker"), [("bash", "complete -o nospace -o default -o bashdefault -F"),
                                                ("zsh", "#compdef clusterdeck cdeck"),
                                                ("fish", "complete --command clusterdeck")])  # fmt: skip
def test_each_shell_gets_its_script(shell: str, marker: str) -> None:
    done = run_cli("completion", shell)
    assert done.code == 0 and marker in done.out, done.out[:400]
    if shell != "bash" and shutil.which(shell):  # the script parses in the shell itself
        check = ["zsh", "-n"] if shell == "zsh" else ["fish", "--no-execute"]
        parsed = subprocess.run([*check], input=done.out, capture_output=True, text=True)
        assert parsed.returncode == 0, parsed.stderr


def test_an_unknown_shell_is_a_usage_error() -> None:
    done = run_cli("completion", "tcsh")
    assert done.code == 2 and "invalid choice: 'tcsh'" in done.err


def test_global_options_work_after_the_command(root: Path, tmp_path: Path) -> None:
    other = tmp_path / "other"
    shown = run_cli("--runs-root", str(other), "show", "zzz", "--runs-root", str(root))
    assert shown.code == 2 and f"no run 'zzz' under {root}" in shown.err  # given after the command, it wins
    assert json.loads(run_cli("ls", "--runs-root", str(other), "--json").out)["runs"] == []
    refused = run_cli("stage", str(root), "--to", str(tmp_path / "x"), "--host", "somewhere")
    assert refused.code == 2 and "--host: `stage` works on this machine's files" in refused.err
