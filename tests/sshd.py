"""A real OpenSSH server on 127.0.0.1 for the remote-mode tests: throwaway host and client keys, one port.

It logs in the user running the tests (root on CI) with the client key only, and serves SFTP.
``kill_sessions`` kills the per-connection sshd processes (what a dropped network does to a
client) while the listener stays up, so the client can reconnect.

Where it cannot run, ``serve`` skips the tests with the reason, except under CI
(``CI=true``), where a missing real component fails them: a CI run that passes with the
remote tests skipped would say nothing about remote mode.
"""

from __future__ import annotations

import contextlib
import getpass
import os
import shlex
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psutil
import pytest
import tomli_w

from tests.conftest import Result, missing, run_cli

REPO = Path(__file__).resolve().parent.parent
LOGIN_SETUP = f". {shlex.quote(str(Path(sys.prefix) / 'bin' / 'activate'))}\nexport PYTHONPATH={shlex.quote(str(REPO))}"
"""The login node's setup: this checkout's virtual environment and this checkout's code (the environment's editable
install may point at another checkout, whose clusterdeck would then answer for this one)."""
HOST = "testcluster"
"""The profile name ``Laptop.profile`` writes and ``Laptop.cli`` connects to."""
SBIN = Path("/usr/sbin")  # not on every PATH (CI runs with a bare one)
SSHD = SBIN / "sshd"


def keygen(path: Path, comment: str) -> Path:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)], check=True)
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Sshd:
    root: Path
    port: int
    host_key: Path
    client_key: Path
    proc: subprocess.Popen[bytes] | None = None

    @classmethod
    def start(cls, root: Path, two_factor_user: str = "", extra: str = "") -> Sshd:
        """``two_factor_user`` logs in with the client key and then a keyboard-interactive password (PAM);
        ``extra``: more sshd_config lines (``MaxAuthTries 3``), before any Match block."""
        root.mkdir(parents=True, exist_ok=True)
        server = cls(root, free_port(), keygen(root / "host_ed25519", "test host"), keygen(root / "client", "laptop"))
        shutil.copy(server.client_key.with_suffix(".pub"), root / "authorized_keys")
        config = root / "sshd_config"
        config.write_text(
            f"""Port {server.port}
ListenAddress 127.0.0.1
HostKey {server.host_key}
PidFile {root / "sshd.pid"}
AuthorizedKeysFile {root / "authorized_keys"}
AllowUsers {getpass.getuser()} {two_factor_user}
PermitRootLogin prohibit-password
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication {"yes" if two_factor_user else "no"}
UsePAM {"yes" if two_factor_user else "no"}
StrictModes no
Subsystem sftp internal-sftp
LogLevel VERBOSE
# sshd's bash reads the login's ~/.bashrc; where that runs `pyenv init`, a rehash lock left by a session a test
# killed would make every later login wait 60 s for it: wait at most 1 s (a rehash is not what is tested)
SetEnv PYENV_REHASH_TIMEOUT=1
"""
            + extra
            + ("\n" if extra and not extra.endswith("\n") else "")
            + (
                f"Match User {two_factor_user}\n    AuthenticationMethods publickey,keyboard-interactive\n"
                if two_factor_user
                else ""
            )
        )
        Path("/run/sshd").mkdir(exist_ok=True)  # its privilege-separation directory
        log = open(root / "sshd.log", "wb")  # noqa: SIM115 -- the server's stderr for its whole life
        server.proc = subprocess.Popen([str(SSHD), "-D", "-e", "-f", str(config)], stdout=log, stderr=log)
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", server.port), timeout=1).close()
                return server
            except OSError:
                if server.proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"sshd did not start: {(root / 'sshd.log').read_text()}") from None
                time.sleep(0.1)

    def stop(self) -> None:
        if self.proc is not None:
            self.kill_sessions()
            self.proc.terminate()
            self.proc.wait(10)

    def sessions(self) -> list[psutil.Process]:
        assert self.proc is not None
        return psutil.Process(self.proc.pid).children(recursive=True)

    def kill_sessions(self) -> int:
        """Kills every connection's sshd (and what runs under it); the listener goes on. How many were killed."""
        found = self.sessions()
        for proc in found:
            with contextlib.suppress(psutil.NoSuchProcess):
                proc.kill()
        psutil.wait_procs(found, timeout=5)
        return len(found)

    def host_key_line(self, name: str | None = None) -> str:
        """The known_hosts line for this server, as ``ssh`` would write it."""
        kind, key = self.host_key.with_suffix(".pub").read_text().split()[:2]
        return f"{name or f'[127.0.0.1]:{self.port}'} {kind} {key}\n"

    def fingerprint(self) -> str:
        out = subprocess.run(
            ["ssh-keygen", "-l", "-f", str(self.host_key.with_suffix(".pub"))], capture_output=True, text=True
        )
        return out.stdout.split()[1]

    def log(self) -> str:
        return (self.root / "sshd.log").read_text(errors="replace")


def add_user(name: str, home: Path, password: str) -> None:
    """A throwaway login with a password (PAM's second factor here); ``remove_user`` deletes it."""
    subprocess.run(
        [str(SBIN / "useradd"), "-d", str(home), "-m", "-s", "/bin/sh", name], check=True, capture_output=True
    )
    subprocess.run([str(SBIN / "chpasswd")], input=f"{name}:{password}", text=True, check=True)


def remove_user(name: str) -> None:
    subprocess.run([str(SBIN / "userdel"), "-r", name], capture_output=True)


def sshd_available() -> str:
    """Empty when a test sshd can run here, else why not."""
    if not SSHD.exists():
        return f"{SSHD} is not installed; run tests/cluster/slurm-up.sh as root (it installs openssh-server)"
    if shutil.which("ssh-keygen") is None:
        return "ssh-keygen is not installed"
    if os.geteuid() != 0:
        return "the test sshd needs root (its privilege separation)"
    return ""


unavailable = missing  # the one "skip here, fail under CI" of tests/conftest.py, under the name callers use


def serve(root: Path, **options: str) -> Iterator[Sshd]:
    """A module fixture's body: a running sshd (see ``Sshd.start``), stopped afterwards."""
    why = sshd_available()
    if why:
        unavailable(why)
    try:
        server = Sshd.start(root, **options)
    except (RuntimeError, OSError, subprocess.CalledProcessError) as exc:
        pytest.fail(f"the test sshd did not start: {exc}", pytrace=False)  # installed, yet broken: never a skip
    try:
        yield server
    finally:
        server.stop()


@dataclass
class Laptop:
    """A client machine: its HOME holds ~/.ssh (config, keys, known_hosts) and ~/.config/clusterdeck/config.toml."""

    home: Path
    runs: Path
    """The runs root on the login node (the same files, seen from this side too)."""
    sshd: Sshd | None = None
    """The server ``profile`` points at; none when ~/.ssh/config says where to go (``profiles``)."""
    agent: str = ""
    """SSH_AUTH_SOCK of an ssh-agent, or none."""

    @property
    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k not in ("SSH_AUTH_SOCK", "CLUSTERDECK_HOME")}
        env |= {"HOME": str(self.home), "XDG_CONFIG_HOME": str(self.home / ".config")}
        return env | ({"SSH_AUTH_SOCK": self.agent} if self.agent else {})

    @property
    def known_hosts(self) -> Path:
        return self.home / ".ssh" / "known_hosts"

    @property
    def server(self) -> Sshd:
        assert self.sshd is not None, "this laptop was made without a server"
        return self.sshd

    def cli(self, *args: str, timeout: float = 180) -> Result:
        """clusterdeck --host HOST (``profile``'s) on this laptop."""
        return self.cli_at(HOST, *args, timeout=timeout)

    def cli_at(self, host: str, *args: str, timeout: float = 180) -> Result:
        proc = subprocess.run(
            [sys.executable, "-m", "clusterdeck.app.cli", "--host", host, *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            env=self.env,
            cwd=REPO,
            stdin=subprocess.DEVNULL,  # no terminal: nothing can be asked
        )
        return Result(proc.returncode, proc.stdout, proc.stderr)

    def local(self, *args: str) -> Result:
        """The same command on the login node itself: the local path."""
        return run_cli("--runs-root", str(self.runs), *args)

    def profile(self, **values: object) -> None:
        """The profile HOST: everything to reach ``sshd`` named in it."""
        profile = {
            "host": "127.0.0.1",
            "port": self.server.port,
            "user": "root",
            "identity_file": str(self.server.client_key),
            "runs_root": str(self.runs),
            "setup": LOGIN_SETUP,
            "partition": "cpu",
            **values,
        }
        self._write_profiles({HOST: profile})

    def profiles(self, *names: str) -> None:
        """Profiles naming no host, user, port or key: everything but the runs root comes from ~/.ssh/config."""
        self._write_profiles({name: {"runs_root": str(self.runs), "setup": LOGIN_SETUP} for name in names})

    def ssh_config(self, text: str) -> None:
        path = self.home / ".ssh" / "config"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)

    def _write_profiles(self, hosts: dict[str, object]) -> None:
        path = self.home / ".config" / "clusterdeck" / "config.toml"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(tomli_w.dumps({"hosts": hosts}))
