"""The stage cache's shard locks across users: a lock file a teammate made under umask 022 (0644) is still locked.

Root ignores file modes, so the second stager runs as an unprivileged user (nobody, via setpriv),
against a cache directory made by root under umask 022, as two people of one group share a cache.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from clusterdeck.jobs.stage.cache import locked
from tests.conftest import REPO, missing

NOBODY = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
PROBE = """
import sys, threading
from pathlib import Path
from clusterdeck.jobs.stage.cache import locked
with locked(Path(sys.argv[1]), wait=False, stop=threading.Event()) as got:
    print("held" if got else "busy")
"""


def as_nobody(*args: str) -> subprocess.CompletedProcess[str]:
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "PYTHONPATH": str(REPO), "PYTHONDONTWRITEBYTECODE": "1"}
    argv = [*NOBODY, sys.executable, *args]
    return subprocess.run(argv, capture_output=True, text=True, env=env, cwd="/", timeout=60)


@pytest.fixture
def shared_dir() -> Iterator[Path]:
    """A directory anyone can reach (pytest's tmp_path is root's alone), made by root."""
    if os.geteuid() != 0 or shutil.which("setpriv") is None:
        missing("needs root and setpriv, to run the second stager as another user")
    probe = as_nobody("-c", "import clusterdeck.jobs.stage.cache")
    if probe.returncode != 0:  # this checkout or its venv is under a directory other users cannot enter
        missing(f"user nobody cannot run this checkout's python: {probe.stderr.strip().splitlines()[-1:]}")
    base = Path(tempfile.mkdtemp(prefix="stage-lock-", dir="/tmp"))
    base.chmod(0o755)
    try:
        yield base
    finally:
        shutil.rmtree(base)


def test_a_lock_made_under_umask_022_is_taken_by_another_users_stager(shared_dir: Path) -> None:
    old = os.umask(0o022)
    try:
        cache = shared_dir / "cache"
        cache.mkdir()
        dest = cache / "shard-000000.tar"
        with locked(dest, wait=False, stop=threading.Event()) as got:
            assert got
            lock = cache / ".shard-000000.tar.lock"
            assert lock.stat().st_mode & 0o777 == 0o644  # the teammate's: not writable by the other user
            held = as_nobody("-c", PROBE, str(dest))
            assert (held.returncode, held.stdout) == (0, "busy\n"), held.stderr  # sees the lock, no PermissionError
        free = as_nobody("-c", PROBE, str(dest))
        assert (free.returncode, free.stdout) == (0, "held\n"), free.stderr
    finally:
        os.umask(old)
