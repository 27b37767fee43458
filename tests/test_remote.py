"""Remote mode against a real sshd on 127.0.0.1 (tests/sshd.py) with real SLURM behind it.

The "laptop" is a client process with its own HOME (known_hosts, keys, the clusterdeck
profile); the "login node" is this machine reached over SSH, where clusterdeck runs from
this checkout's virtual environment. Both see the same files, so what the remote path
reports can be compared with what the local path reports about the same runs.
"""

from __future__ import annotations

import json
import os
import pty
import re
import secrets
import select
import shlex
import shutil
import subprocess
import sys
import sysconfig
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import tomli_w

from clusterdeck.jobs.deck.base import Prompter
from clusterdeck.jobs.deck.ssh import SshDeck
from clusterdeck.jobs.errors import UserError
from clusterdeck.jobs.remote.profiles import Profile, Target
from clusterdeck.jobs.remote.ssh import SshConnection
from clusterdeck.jobs.sample_data import SampleData
from tests.conftest import (
    REPO,
    Result,
    copy_with_stuck_file,
    require_slurm,
    shard_spec,
    train_section,
    until,
)
from tests.sshd import (
    HOST,
    LOGIN_SETUP,
    SBIN,
    Laptop,
    Sshd,
    add_user,
    keygen,
    remove_user,
    sshd_available,
    unavailable,
)

pytestmark = pytest.mark.slurm
SHARD_RESOURCES = {"partition": "cpu", "cpus_per_task": 1, "mem_gb": 1, "time_min": 10}


@pytest.fixture
def laptop(sshd: Sshd, tmp_path: Path) -> Laptop:
    require_slurm()
    # A runs root whose path needs quoting on a shell line: a space, a quote, a dollar.
    machine = Laptop(tmp_path / "laptop", tmp_path / "runs $HOME 'q\"", sshd)
    (machine.home / ".ssh").mkdir(parents=True, mode=0o700)
    machine.known_hosts.write_text(sshd.host_key_line())
    machine.profile()
    return machine


def shard_toml(data: SampleData, output: Path, name: str, **resources: object) -> str:
    spec = shard_spec(data, output, name=name).replace('executor = "local"', 'executor = "slurm"')
    return spec + "[shard.resources]\n" + tomli_w.dumps({**SHARD_RESOURCES, **resources})


def submitted_id(result: Result) -> str:
    assert result.code == 0, result.err
    match = re.search(r"submitted run (\S+)", result.out)
    assert match, result.out
    return match.group(1)


def show(laptop: Laptop, run_id: str) -> dict:
    result = laptop.cli("show", run_id, "--json")
    assert result.code == 0, result.err
    return json.loads(result.out)


def test_submit_watch_and_read_remotely_as_on_the_login_node(
    laptop: Laptop, sample_data: SampleData, tmp_path: Path
) -> None:
    spec = tmp_path / "spec.toml"
    spec.write_text(shard_toml(sample_data, tmp_path / "set", "remote shards").replace('partition = "cpu"\n', ""))
    run_id = submitted_id(laptop.cli("submit", str(spec)))

    watched = laptop.cli("watch", run_id, timeout=300)
    assert watched.code == 0, watched.err
    assert "COMPLETED" in watched.out
    assert (tmp_path / "set" / "index.json").is_file()  # the job ran, on the cluster's side

    remote, local = show(laptop, run_id), json.loads(laptop.local("show", run_id, "--json").out)
    assert remote == local
    assert remote["state"] == "COMPLETED" and remote["executor"] == "slurm"
    assert json.loads(laptop.cli("ls", "--json").out) == json.loads(laptop.local("ls", "--json").out)
    for command in (["logs", run_id], ["metrics", run_id, "--json"], ["show", run_id]):
        remote_out, local_out = laptop.cli(*command), laptop.local(*command)
        assert (remote_out.code, remote_out.out) == (local_out.code, local_out.out), command
    assert "rank 0" in laptop.cli("logs", run_id).out
    # The spec named no partition: the profile's default went in.
    recorded = json.loads((Path(remote["path"]) / "spec.json").read_text())
    assert recorded["shard"]["resources"]["partition"] == "cpu"


def test_a_script_step_runs_and_reads_remotely_as_the_others(
    laptop: Laptop, sample_shards: Path, tmp_path: Path
) -> None:
    """[script] through the login node: submitted, followed and shown from the laptop as on the login node."""
    spec = tmp_path / "script.toml"
    spec.write_text(
        'name = "remote script"\n[cluster]\nexecutor = "slurm"\n[script]\n'
        + tomli_w.dumps({"command": [sys.executable, str(REPO / "tests" / "scripts" / "probe.py")],
                         "workdir": str(tmp_path), "shards": str(sample_shards)})
        + "[script.resources]\n" + tomli_w.dumps({"gpus_per_node": 0, "cpus_per_task": 1, "mem_gb": 1, "time_min": 5})
    )  # fmt: skip
    run_id = submitted_id(laptop.cli("submit", str(spec)))
    watched = laptop.cli("watch", run_id, timeout=300)
    assert watched.code == 0 and "script: COMPLETED" in watched.out, (watched.out, watched.err)
    remote = show(laptop, run_id)
    assert remote == json.loads(laptop.local("show", run_id, "--json").out)
    assert remote["steps"][0]["name"] == "script" and remote["outputs"]["script"]["checkpoints"]
    assert "probe: rank 0 of 1 saw" in laptop.cli("logs", run_id).out
    assert (Path(remote["path"]) / "checkpoints" / "probe-0.json").is_file()


def test_cancel_remotely(laptop: Laptop, sample_data: SampleData, tmp_path: Path) -> None:
    data, _ = copy_with_stuck_file(sample_data, tmp_path, 1, 3)  # the job blocks on a FIFO: running until cancelled
    spec = tmp_path / "spec.toml"
    spec.write_text(shard_toml(data, tmp_path / "o", "to cancel"))
    run_id = submitted_id(laptop.cli("submit", str(spec)))
    deadline = time.monotonic() + 90
    while show(laptop, run_id)["state"] != "RUNNING":
        assert time.monotonic() < deadline, "the job never started"
        time.sleep(0.5)

    cancelled = laptop.cli("cancel", run_id)
    assert cancelled.code == 0, cancelled.err
    assert cancelled.out.strip() in (f"run {run_id}: cancel requested", f"run {run_id} is CANCELLED")
    deadline = time.monotonic() + 90
    while (view := show(laptop, run_id))["state"] != "CANCELLED":
        assert time.monotonic() < deadline, view["state"]
        time.sleep(0.5)
    job_id = view["steps"][0]["job_ids"][0]
    sacct = subprocess.run(["sacct", "-X", "-n", "-P", "-o", "State", "-j", job_id], capture_output=True, text=True)
    assert sacct.stdout.startswith("CANCELLED")
    assert json.loads(laptop.local("show", run_id, "--json").out)["state"] == "CANCELLED"


def test_a_name_and_a_root_full_of_shell_syntax_are_only_data(
    laptop: Laptop, sample_data: SampleData, tmp_path: Path
) -> None:
    pwned = f"pwned-{secrets.token_hex(3)}"  # a name may not hold "/": the file lands where a shell would run it
    name = f"a b'\"$(touch {pwned})`touch {pwned}`; touch {pwned}"
    spec = tmp_path / "spec.toml"
    spec.write_text(shard_toml(sample_data, tmp_path / "set", "placeholder").replace('"placeholder"', json.dumps(name)))
    run_id = submitted_id(laptop.cli("submit", str(spec), "--wait"))

    listed = json.loads(laptop.cli("ls", "--json").out)["runs"]
    assert [(e["run_id"], e["name"], e["state"]) for e in listed] == [(run_id, name, "COMPLETED")]
    assert name in laptop.cli("ls").out
    by_name = laptop.cli("show", name, "--json")  # the name as an argument on the remote command line
    assert by_name.code == 0, by_name.err
    assert json.loads(by_name.out)["run_id"] == run_id
    assert laptop.runs.is_dir() and Path(json.loads(by_name.out)["path"]).parent == laptop.runs
    run_dir = Path(json.loads(by_name.out)["path"])
    places = [Path.home(), REPO, tmp_path, laptop.runs, laptop.home, Path("/tmp"), Path("/"), Path.cwd()]
    assert not [p for p in places if (p / pwned).exists()] and not list(run_dir.rglob(pwned))


def test_unknown_and_changed_host_keys_are_refused(laptop: Laptop, sshd: Sshd, tmp_path: Path) -> None:
    laptop.known_hosts.write_text("")
    unknown = laptop.cli("ls")
    assert unknown.code == 2
    assert f"[127.0.0.1]:{sshd.port} ({HOST}) is not a known host" in unknown.err
    assert sshd.fingerprint() in unknown.err
    assert f"clusterdeck --host {HOST} trust {sshd.fingerprint()}" in unknown.err
    assert "Traceback" not in unknown.err
    assert laptop.known_hosts.read_text() == ""  # nothing accepted silently

    wrong = laptop.cli("trust", "SHA256:" + "A" * 43)
    assert wrong.code == 2 and "nothing was written" in wrong.err
    assert laptop.known_hosts.read_text() == ""
    trusted = laptop.cli("trust", sshd.fingerprint())
    assert trusted.code == 0, trusted.err
    assert laptop.known_hosts.read_text() == sshd.host_key_line()
    assert laptop.cli("ls").code == 0

    other = keygen(tmp_path / "impostor", "impostor")
    kind, key = other.with_suffix(".pub").read_text().split()[:2]
    laptop.known_hosts.write_text(f"[127.0.0.1]:{sshd.port} {kind} {key}\n")
    changed = laptop.cli("ls")
    assert changed.code == 2
    assert "HOST KEY" in changed.err and "HAS CHANGED" in changed.err and sshd.fingerprint() in changed.err
    assert "ssh-keygen" in changed.err and "Traceback" not in changed.err
    assert laptop.cli("trust", sshd.fingerprint()).code == 2  # trust never overwrites a known key
    assert laptop.known_hosts.read_text() == f"[127.0.0.1]:{sshd.port} {kind} {key}\n"


def test_a_key_the_host_does_not_know_fails_clearly(laptop: Laptop, tmp_path: Path) -> None:
    stranger = keygen(tmp_path / "stranger", "stranger")
    laptop.profile(identity_file=str(stranger))
    result = laptop.cli("ls")
    assert result.code == 2
    assert "authentication failed" in result.err and str(stranger) in result.err
    assert "authorized_keys" in result.err and "Traceback" not in result.err

    laptop.profile(identity_file=str(tmp_path / "missing"))
    missing = laptop.cli("ls")
    assert missing.code == 2 and f"{tmp_path / 'missing'}: identity file not found" in missing.err


def test_bad_profiles_and_hosts_are_named(laptop: Laptop, tmp_path: Path) -> None:
    laptop.profile(prot=22)
    result = laptop.cli("ls")
    assert result.code == 2 and f"hosts.{HOST}.prot" in result.err and "config.toml" in result.err

    laptop.profile(port=1)  # nothing listens there
    refused = laptop.cli("ls")
    assert refused.code == 1 and "cannot connect to 127.0.0.1 port 1" in refused.err
    assert "Traceback" not in refused.err

    laptop.profile(setup="true", command="no-such-clusterdeck")
    absent = laptop.cli("ls")
    assert absent.code == 1 and "was not found on the login node" in absent.err and "setup" in absent.err

    laptop.profile()
    local_only = laptop.cli("sample-data", str(tmp_path / "d"))
    assert local_only.code == 2 and "this machine's files" in local_only.err


def submit_training(laptop: Laptop, shards: Path, tmp_path: Path, name: str) -> str:
    """A CPU training run on the CI cluster's gpu partition, long enough (~20 s) to cut its connection mid-way."""
    resources = {"partition": "gpu", "gpus_per_node": 0, "cpus_per_task": 1, "mem_gb": 2, "time_min": 10}
    spec = tmp_path / "train.toml"
    spec.write_text(
        f'name = "{name}"\n[cluster]\nexecutor = "slurm"\n'
        + train_section(shards, batch_size=4, workers=0, epochs=4, image_size=64, resources=resources)
    )
    return submitted_id(laptop.cli("submit", str(spec)))


def test_logs_follow_rides_out_a_killed_connection(
    laptop: Laptop, sshd: Sshd, sample_shards: Path, tmp_path: Path
) -> None:
    """The sshd serving the follow is killed twice mid-run: the follow reconnects; every line arrives once."""
    run_id = submit_training(laptop, sample_shards, tmp_path, "followed")
    follow = subprocess.Popen(
        [sys.executable, "-m", "clusterdeck.app.cli", "--host", HOST, "logs", "-f", run_id],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=laptop.env,
        cwd=REPO,
    )
    lines: list[str] = []
    errors: list[str] = []
    readers = [
        threading.Thread(target=lambda: lines.extend(iter(follow.stdout.readline, "")), daemon=True),  # type: ignore[union-attr]
        threading.Thread(target=lambda: errors.extend(iter(follow.stderr.readline, "")), daemon=True),  # type: ignore[union-attr]
    ]
    for reader in readers:
        reader.start()

    def steps() -> int:
        return sum(line.startswith("step ") for line in list(lines))

    kills = []
    for wanted in (3, 20):
        deadline = time.monotonic() + 120
        while steps() < wanted:
            assert follow.poll() is None and time.monotonic() < deadline, (lines, errors)
            time.sleep(0.05)
        kills.append((steps(), sshd.kill_sessions()))
        deadline = time.monotonic() + 60
        while not any("reconnected" in e for e in errors[len(kills) - 1 :]):
            assert time.monotonic() < deadline, errors
            time.sleep(0.1)
    assert follow.wait(300) == 0, errors
    for reader in readers:
        reader.join(10)

    assert all(killed >= 1 for _, killed in kills), kills
    assert sum("lost" in e for e in errors) >= 2 and sum("reconnected" in e for e in errors) >= 2, errors
    final = json.loads(laptop.local("show", run_id, "--json").out)
    assert final["state"] == "COMPLETED"
    local = laptop.local("logs", run_id)
    assert "".join(lines) == local.out  # every line once, in order, across both drops
    step_lines = [line for line in lines if line.startswith("step ")]
    assert len(step_lines) == len(set(step_lines)) > kills[-1][0]  # lines went on arriving after the last kill


def test_remote_mode_never_imports_torch(laptop: Laptop) -> None:
    probe = (
        f"import sys; from clusterdeck.app.cli import main; code = main(['--host', {HOST!r}, 'ls', '--json']); "
        "print(code, sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'torchvision', 'webdataset', "
        "'numpy')))"
    )
    proc = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, cwd=REPO, env=laptop.env, timeout=60
    )
    assert proc.stdout.strip().splitlines()[-1] == "0 []", proc.stderr


@dataclass
class TwoFactor:
    sshd: Sshd
    user: str
    password: str
    command: str
    """clusterdeck of this checkout, as that user can run it."""


@pytest.fixture(scope="module")
def two_factor() -> Iterator[TwoFactor]:
    """An sshd that asks a throwaway user for the client key and then a password (PAM, keyboard-interactive)."""
    why = sshd_available() or ("" if (SBIN / "useradd").exists() else "useradd is not installed")
    if why:
        unavailable(why)
    base = Path(f"/tmp/clusterdeck-2fa-{secrets.token_hex(4)}")  # readable by that user: sshd reads its keys as it
    base.mkdir(mode=0o755)
    user, password = f"cd2fa{secrets.token_hex(3)}", secrets.token_urlsafe(16)
    add_user(user, base / "home", password)
    command = user_clusterdeck(base / "venv")
    probe = subprocess.run(
        [str(SBIN / "runuser"), "-u", user, "--", *shlex.split(command), "--version"],
        capture_output=True,
        text=True,
        cwd="/",
    )
    if probe.returncode != 0:
        remove_user(user)
        shutil.rmtree(base, ignore_errors=True)
        pytest.fail(f"another user cannot run this checkout's clusterdeck ({command}): {probe.stderr[-300:]}")
    server = Sshd.start(base / "sshd", two_factor_user=user)
    (base / "sshd").chmod(0o755)
    (base / "sshd" / "authorized_keys").chmod(0o644)
    try:
        yield TwoFactor(server, user, password, command)
    finally:
        server.stop()
        remove_user(user)
        shutil.rmtree(base, ignore_errors=True)


def user_clusterdeck(venv: Path) -> str:
    """This checkout's clusterdeck, for a user who cannot enter /root (where pyenv keeps CI's Python).

    A virtual environment of the system's Python of the same minor version, seeing this
    one's packages (the checkout's editable install included) through a ``.pth`` file.
    """
    system = Path(f"/usr/bin/python{sys.version_info.major}.{sys.version_info.minor}")
    if Path(sys.executable).resolve().is_relative_to("/root") and system.exists():
        subprocess.run([str(system), "-m", "venv", "--without-pip", str(venv)], check=True)
        site = venv / "lib" / system.name / "site-packages"
        (site / "clusterdeck-checkout.pth").write_text(
            f"import site; site.addsitedir({sysconfig.get_paths()['purelib']!r})\n"
        )
        subprocess.run(["chmod", "-R", "a+rX", str(venv)], check=True)
        return f"{venv / 'bin' / 'python'} -m clusterdeck.app.cli"
    return f"{sys.executable} -m clusterdeck.app.cli"


def on_a_terminal(args: list[str], env: dict[str, str], answer: str, timeout: float = 90) -> tuple[int, str]:
    """Runs the CLI on a pseudo-terminal, typing ``answer`` when it asks for a password; (exit code, what it showed)."""
    pid, fd = pty.fork()
    if pid == 0:  # the child: the CLI, its stdin a terminal
        os.chdir(REPO)
        os.execve(sys.executable, [sys.executable, "-m", "clusterdeck.app.cli", *args], env)
    shown, answered = b"", False
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if select.select([fd], [], [], 0.5)[0]:
            try:
                data = os.read(fd, 4096)
            except OSError:  # EIO: the child has exited and closed the terminal
                break
            if not data:
                break
            shown += data
            if not answered and b"Password:" in shown:
                os.write(fd, answer.encode() + b"\n")
                answered = True
    else:
        os.kill(pid, 9)
    _, status = os.waitpid(pid, 0)
    os.close(fd)
    return os.waitstatus_to_exitcode(status), shown.decode(errors="replace")


def test_a_two_factor_login_is_answered_on_the_terminal(two_factor: TwoFactor, tmp_path: Path) -> None:
    home = tmp_path / "laptop"
    (home / ".ssh").mkdir(parents=True)
    (home / ".ssh" / "known_hosts").write_text(two_factor.sshd.host_key_line())
    config = home / ".config" / "clusterdeck" / "config.toml"
    config.parent.mkdir(parents=True)
    profile = {  # the real clusterdeck of this checkout, run by that user on the login node
        "host": "127.0.0.1",
        "port": two_factor.sshd.port,
        "user": two_factor.user,
        "identity_file": str(two_factor.sshd.client_key),
        "runs_root": "/nonexistent/runs",
        "setup": f"export PYTHONPATH={shlex.quote(str(REPO))}",  # this checkout's code, as LOGIN_SETUP
        "command": two_factor.command,
    }
    config.write_text(tomli_w.dumps({"hosts": {"otp": profile}}))
    env = {k: v for k, v in os.environ.items() if k != "SSH_AUTH_SOCK"}
    env |= {"HOME": str(home), "XDG_CONFIG_HOME": str(home / ".config"), "TERM": "dumb"}

    code, shown = on_a_terminal(["--host", "otp", "ls"], env, two_factor.password)
    assert code == 0, shown
    assert "Password:" in shown and "no runs under otp:/nonexistent/runs" in shown
    code, shown = on_a_terminal(["--host", "otp", "show", "nope"], env, two_factor.password)
    assert code == 2 and "otp: no run 'nope' under /nonexistent/runs" in shown, shown  # clusterdeck's own words
    assert two_factor.password not in shown  # not echoed
    written = [p.read_bytes() for p in home.rglob("*") if p.is_file()]
    assert not any(two_factor.password.encode() in data for data in written)  # and not kept

    code, shown = on_a_terminal(["--host", "otp", "ls"], env, "not the password")
    assert code == 2 and "authentication failed" in shown and "keyboard-interactive" in shown

    piped = subprocess.run(
        [sys.executable, "-m", "clusterdeck.app.cli", "--host", "otp", "ls"],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO,
        stdin=subprocess.DEVNULL,
        timeout=60,
    )
    assert piped.returncode == 2 and "stdin is not a terminal" in piped.stderr and "Traceback" not in piped.stderr


def connection(laptop: Laptop, key: Path | None = None, prompter: Prompter | None = None) -> SshConnection:
    """The laptop's connection, made in this process: the profile the CLI reads, as a Target."""
    profile = Profile(runs_root=str(laptop.runs), setup=LOGIN_SETUP)
    target = Target(
        name=HOST,
        hostname="127.0.0.1",
        port=laptop.server.port,
        user="root",
        identity_files=[str(key or laptop.server.client_key)],
        profile=profile,
        known_hosts=laptop.known_hosts,
    )
    return SshConnection(target, prompter=prompter)


def connected(laptop: Laptop) -> SshDeck:
    conn = connection(laptop)
    conn.connect()
    return SshDeck(conn)


def test_an_encrypted_key_asks_its_passphrase_once(laptop: Laptop, sshd: Sshd, tmp_path: Path) -> None:
    key = tmp_path / "encrypted"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "open sesame", "-f", str(key)], check=True)
    authorized = sshd.root / "authorized_keys"
    before = authorized.read_text()
    authorized.write_text(before + key.with_suffix(".pub").read_text())
    asked: list[list[tuple[str, bool]]] = []

    def answer(title: str, instructions: str, prompts: list[tuple[str, bool]]) -> list[str]:
        asked.append(prompts)
        return ["open sesame"]

    conn = connection(laptop, key, answer)
    try:
        conn.connect()
        assert conn.run(["echo", "in"]).stdout == "in\n"
        assert sshd.kill_sessions() >= 1
        assert conn.run(["echo", "again"]).stdout == "again\n"  # reconnected with the key it already opened
        assert asked == [[(f"Passphrase for {key}: ", False)]]
    finally:
        conn.close()
        authorized.write_text(before)
    wrong = connection(laptop, key, lambda *_: ["open sesame?"])
    with pytest.raises(UserError, match="wrong passphrase"):
        wrong.connect()
    with pytest.raises(UserError, match="no terminal to ask it on"):
        connection(laptop, key).connect()


async def test_the_app_over_ssh_follows_a_live_run_through_a_dropped_connection(
    laptop: Laptop, sshd: Sshd, sample_shards: Path, tmp_path: Path
) -> None:
    from textual.widgets import DataTable

    from clusterdeck.app.tui.app import make_app
    from clusterdeck.app.tui.detail import RunDetailScreen
    from clusterdeck.app.tui.panels import LogPanel

    run_id = submit_training(laptop, sample_shards, tmp_path, "in the app")
    deck = connected(laptop)
    app = make_app(deck=deck)
    try:
        async with app.run_test(size=(100, 30)) as pilot:
            assert app.sub_title == deck.where
            table = app.screen.query_one(DataTable)
            await until(pilot, lambda: table.row_count == 1)
            assert str(table.get_row(run_id)[0]) == "in the app"
            await pilot.press("enter")
            await until(pilot, lambda: isinstance(app.screen, RunDetailScreen) and app.screen.query(LogPanel))
            logs = app.screen.query_one(LogPanel)

            def steps() -> int:
                return sum(line.startswith("step ") for _, line in logs.lines)

            told: list[str] = []
            shown = deck.events  # the app's: it puts them in the header (tests/test_prompt.py)
            deck.events = lambda text: (told.append(text), shown(text))
            await until(pilot, lambda: steps() >= 3, timeout=240)  # the job's start and torch's import included
            assert sshd.kill_sessions() >= 1
            await until(pilot, lambda: any("reconnected" in text for text in told), timeout=60)
            assert "lost" in told[0], told
            await until(pilot, lambda: app.sub_title == deck.where, timeout=10)  # the header is clear again
            seen = steps()
            await until(pilot, lambda: steps() > seen, timeout=180)  # lines go on arriving
            screen = app.screen
            assert isinstance(screen, RunDetailScreen)
            await until(pilot, lambda: screen.view is not None and screen.view.state == "COMPLETED", timeout=300)
            local = laptop.local("logs", run_id).out.splitlines()
            await until(pilot, lambda: len(logs.lines) == len([x for x in local if not x.startswith("==> ")]))
            assert [line for _, line in logs.lines] == [x for x in local if not x.startswith("==> ")]
    finally:
        deck.close()
        laptop.local("cancel", run_id)
