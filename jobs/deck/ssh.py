"""The runs root on a login node: clusterdeck runs there for every operation, the run files come over SFTP.

Each operation is one remote ``clusterdeck … --json`` (a listing of a thousand runs is one
round trip, and the scheduler is asked there, by the engine that knows its runs). Logs and
metrics are followed through ``files`` from byte offsets, as on the login node itself.

The two clusterdecks are installed apart: once per connection the login node's
``clusterdeck version --json`` is checked against this one's (``jobs.protocol``), and every
document read from it is checked again for its schema's major, its unknown fields ignored.
"""

from __future__ import annotations

import json
import re
import shlex
import threading
import time
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

from clusterdeck.jobs.deck.base import Deck
from clusterdeck.jobs.dispatch.base import SchedulerWarning
from clusterdeck.jobs.errors import UserError
from clusterdeck.jobs.protocol import SCHEMAS, ProtocolError, check_peer, read, version
from clusterdeck.jobs.remote.sftp import SftpFiles
from clusterdeck.jobs.steps.registry import steps

if TYPE_CHECKING:
    from clusterdeck.jobs.cluster import ClusterView
    from clusterdeck.jobs.compare import Comparison
    from clusterdeck.jobs.remote.ssh import Completed, SshConnection
    from clusterdeck.jobs.rundir import RunPaths
    from clusterdeck.jobs.status import RunView

RESOLVED_FRESH_S = 1.0
_ERROR = re.compile(r"^clusterdeck: error: (?P<text>.*)$")
_WARNING = re.compile(r"^clusterdeck: warning: (?P<text>.*)$")
_NO_VERSION = re.compile(r"invalid choice: '?version'?")  # argparse's words: a clusterdeck from before `version`


class RemoteFailed(UserError):
    """The remote clusterdeck failed for a reason other than the user's input."""

    exit_code = 1


class SshDeck(Deck):
    local = False

    def __init__(self, conn: SshConnection, runs_root: str | None = None) -> None:
        self.conn = conn
        self.target = conn.target
        self.runs_root = runs_root or self.target.profile.runs_root or None
        self.files = SftpFiles(conn)
        self._resolved: dict[str, tuple[float, dict[str, Any]]] = {}
        """The view each ``resolve`` or ``submit`` got, by path: the ``view`` right after it costs no round trip."""
        self.peer_version: dict[str, Any] = {}
        """The login node's ``clusterdeck version --json``, read once per connection (``check_version``)."""
        self._checked_generation = -1
        self._check_lock = threading.Lock()

    @property
    def events(self) -> Any:  # type: ignore[override]
        return self.conn.events

    @events.setter
    def events(self, value: Any) -> None:
        self.conn.events = value

    @property
    def prompter(self) -> Any:  # type: ignore[override]
        return self.conn.prompter

    @prompter.setter
    def prompter(self, value: Any) -> None:
        self.conn.prompter = value

    @property
    def where(self) -> str:
        return f"{self.target.name}:{self.runs_root or '~/.clusterdeck/runs'}"

    def check_version(self) -> dict[str, Any]:
        """The login node's version document, asked once per connection (again after a reconnect, which may reach
        another login node); ProtocolError when the two clusterdecks speak different majors."""
        with self._check_lock:
            if self._checked_generation != self.conn.generation or not self.peer_version:
                command = shlex.split(self.target.profile.command)
                done = self.conn.run([*command, "version", "--json"])
                if done.returncode == 2 and _NO_VERSION.search(done.stderr):
                    raise ProtocolError(
                        f"{self.target.name}: its clusterdeck has no `version` command (from before versioned JSON), "
                        f"this clusterdeck {version()} speaks version/{SCHEMAS['version']}: "
                        f"upgrade clusterdeck on {self.target.name} (pip install -U clusterdeck there)"
                    )
                self.peer_version = check_peer(self._parse("version", done), self.target.name)
                self._checked_generation = self.conn.generation
            return self.peer_version

    def clusterdeck(self, *args: str, stdin: bytes | None = None, retry: bool = True) -> Any:
        """Runs ``clusterdeck [--runs-root R] ARGS`` there and returns its JSON output (after ``check_version``)."""
        self.check_version()
        command = shlex.split(self.target.profile.command)  # the user's own words: `python -m clusterdeck.app.cli`: 3
        argv = [*command, *(["--runs-root", self.runs_root] if self.runs_root else []), *args]
        done = self.conn.run(argv, stdin=stdin, retry=retry)
        self.check_version()  # the command ran on a new connection (a reconnect): that one is checked too
        return self._parse(args[0], done)

    def document(self, name: str, *args: str, stdin: bytes | None = None, retry: bool = True) -> dict[str, Any]:
        """The body of the document ``name`` that ``clusterdeck ARGS`` prints there, its major checked."""
        return read(self.clusterdeck(*args, stdin=stdin, retry=retry), name, self.target.name)

    def _parse(self, command: str, done: Completed) -> Any:
        """The JSON that ``clusterdeck COMMAND`` printed; its failure as the one line the remote side gave."""
        if done.returncode != 0:
            raise self._failure(command, done.returncode, done.stderr)
        for line in done.stderr.splitlines():  # a submission's warnings (``Backend.preflight``), told here too
            if (m := _WARNING.match(line.strip())) and command in ("submit", "resume"):
                warnings.warn(SchedulerWarning(f"{self.target.name}: {m['text']}"), stacklevel=2)
        try:
            return json.loads(done.stdout[_json_start(done.stdout) :])
        except ValueError:
            raise RemoteFailed(
                f"{self.target.name}: `clusterdeck {command}` printed no JSON: {done.stdout.strip()[:200]!r} "
                "(does the login shell print on startup?)"
            ) from None

    def _failure(self, command: str, code: int, stderr: str) -> UserError:
        lines = [line.strip() for line in stderr.splitlines() if line.strip()]
        problems = [m["text"] for line in lines if (m := _ERROR.match(line))]
        if problems:
            error = UserError(*(f"{self.target.name}: {p}" for p in problems))
            error.exit_code = code if 0 < code < 126 else 1
            return error
        if code == 127:
            return RemoteFailed(
                f"{self.target.name}: `{self.target.profile.command}` was not found on the login node "
                f"({lines[-1] if lines else 'exit 127'}); set `setup` (a venv to activate or a module to load) "
                f"or `command` in the [hosts.{self.target.name}] profile"
            )
        return RemoteFailed(
            f"{self.target.name}: `clusterdeck {command}` failed (exit {code})" + (f": {lines[-1]}" if lines else "")
        )

    def listing(self) -> list[dict[str, Any]]:
        entries: list[dict[str, Any]] = self.document("run-list", "ls", "--json")["runs"]
        return entries

    def resolve(self, address: str) -> RunPaths:
        from clusterdeck.jobs.rundir import RunPaths

        view = self.document("run-view", "show", "--json", "--", address)  # after --, a name starting with - is a name
        self._resolved[view["path"]] = (time.monotonic(), view)
        return RunPaths(Path(view["path"]))

    def view(self, paths: RunPaths) -> RunView:
        from clusterdeck.jobs.status import RunView

        at, data = self._resolved.pop(str(paths.root), (0.0, {}))
        if time.monotonic() - at > RESOLVED_FRESH_S:
            data = self.document("run-view", "show", "--json", "--", paths.run_id)
        return RunView.from_json(data)

    def submit(self, table: dict[str, Any], source: str) -> RunPaths:
        import tomli_w

        from clusterdeck.jobs.rundir import RunPaths

        table = self.with_defaults(table)
        text = tomli_w.dumps(table).encode()
        view = self.document("run-view", "submit", "-", "--spec-source", source, "--json", stdin=text, retry=False)
        self._resolved[view["path"]] = (time.monotonic(), view)  # the view that follows a submit needs no round trip
        return RunPaths(Path(view["path"]))

    def with_defaults(self, table: dict[str, Any]) -> dict[str, Any]:
        """The profile's partition and account in every step that names none (SLURM runs only)."""
        profile = self.target.profile
        if (table.get("cluster") or {}).get("executor") != "slurm":
            return table
        table = json.loads(json.dumps(table))
        for step in steps():
            if isinstance(table.get(step.name), dict):
                resources = table[step.name].setdefault("resources", {})
                for key in ("partition", "account"):
                    if getattr(profile, key) and not resources.get(key):
                        resources[key] = getattr(profile, key)
        return table

    def cancel(self, paths: RunPaths) -> RunView:
        from clusterdeck.jobs.status import RunView

        self._resolved.clear()  # a view from before this change is stale
        return RunView.from_json(self.document("run-view", "cancel", "--json", "--", paths.run_id))

    def resume(self, paths: RunPaths) -> bool:
        self._resolved.clear()  # a view from before this change is stale
        return bool(self.document("run-resume", "resume", "--json", "--", paths.run_id, retry=False)["resumed"])

    def compare(self, addresses: list[str]) -> Comparison:
        from clusterdeck.jobs.compare import Comparison

        return Comparison.from_json(self.document("run-diff", "diff", "--json", "--", *addresses))

    def cluster(self) -> ClusterView:
        from clusterdeck.jobs.cluster import ClusterView, cluster_view

        def run(command: list[str], timeout_s: float) -> tuple[str | None, str]:
            try:
                done = self.conn.run(command, timeout_s=timeout_s)
            except TimeoutError:
                return None, f"{command[0]} did not answer in {timeout_s:g} s"
            if done.returncode == 127:
                return None, f"no SLURM on {self.target.name} ({command[0]} not found on PATH)"
            if done.returncode != 0:
                first = next((line.strip() for line in done.stderr.splitlines() if line.strip()), "")
                return None, first or f"{command[0]} exited with {done.returncode}"
            return done.stdout, ""

        try:
            return cluster_view(user=self.target.user, run=run)
        except OSError as exc:
            return ClusterView([], [], str(exc))

    def close(self) -> None:
        self.conn.close()


def _json_start(text: str) -> int:
    """Where the JSON starts: a login shell's greeting before it is skipped."""
    match = re.search(r"^[\[{]", text, re.MULTILINE)
    return match.start() if match else 0
