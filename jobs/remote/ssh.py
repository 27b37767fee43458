"""One SSH connection to a login node (paramiko), shared by every remote command and the SFTP reads.

The first connection fails fast with a message naming the host. A connection that drops
later is made again with backoff (1, 2, 4 … 30 s), telling ``events`` so the user sees it;
the threads using it wait meanwhile and then carry on. Host keys are checked
(``jobs.remote.hostkeys``) before any authentication; keys are tried from the SSH agent,
then the identity files (a passphrase is asked through the prompter, never stored), then
keyboard-interactive (two-factor) prompts, also answered through the prompter. With
IdentitiesOnly, the agent's keys are offered only if they are an identity file's: a server
with MaxAuthTries 3 would otherwise hang up on a user whose agent holds many keys.

Remote commands are strings only because SSH carries strings: every argument goes through
``shlex.quote``, so names and paths with spaces, quotes or ``$`` reach the command as they are.
"""

from __future__ import annotations

import contextlib
import logging
import select
import shlex
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from clusterdeck.jobs.errors import UserError
from clusterdeck.jobs.remote.hostkeys import check_host_key, known_types
from clusterdeck.jobs.remote.identities import identity
from clusterdeck.jobs.remote.profiles import Target, jump_chain
from clusterdeck.jobs.remote.sshconfig import ssh_dir

if TYPE_CHECKING:
    from paramiko import PKey, SFTPClient, Transport

    from clusterdeck.jobs.deck.base import Prompter

BACKOFF_S = (1.0, 2.0, 4.0, 8.0, 16.0, 30.0)
SFTP_TIMEOUT_S = 60.0
DEFAULT_KEYS = ("id_ed25519", "id_ecdsa", "id_rsa")


class ConnectionLost(ConnectionError):
    """The network failed us (refused, unreachable, dropped): worth trying again, unlike a refused key."""


class AuthFailed(UserError):
    """The login node refused every way we had to log in."""


@dataclass(frozen=True)
class Completed:
    returncode: int
    stdout: str
    stderr: str


def remote_command(argv: list[str], setup: str = "") -> str:
    """The shell line that runs ``argv`` on the login node, each argument quoted, after the profile's setup."""
    command = shlex.join(argv)
    # Braces on lines of their own: a setup ending in a comment or a ";" cannot swallow the command.
    return f"{{\n{setup}\n}} && exec {command}" if setup.strip() else f"exec {command}"


class SshConnection:
    def __init__(
        self,
        target: Target,
        *,
        prompter: Prompter | None = None,
        events: Callable[[str], None] | None = None,
        keepalive_s: float = 15.0,
        timeout_s: float = 15.0,
    ) -> None:
        self.target = target
        self.prompter = prompter
        self.events = events
        self.keepalive_s = keepalive_s
        self.timeout_s = timeout_s
        self.generation = 0
        """How many times a connection was made; a change tells the SFTP session to start afresh."""
        self.lock = threading.RLock()
        """Held while connecting; readers of the shared SFTP session hold ``sftp_lock``."""
        self.sftp_lock = threading.RLock()
        self._transports: list[Transport] = []  # the jump hosts', then the login node's
        self._sftp: SFTPClient | None = None
        self._sftp_generation = -1
        self._closed = threading.Event()
        self._fatal: BaseException | None = None
        """A reconnection refused for a reason retrying cannot fix (a key, a host key): raised again, not retried."""
        self._prompt_error: BaseException | None = None
        self._keys_loaded: dict[str, PKey] = {}  # decrypted once per connection: a reconnect asks no passphrase again

    # -- connecting ---------------------------------------------------------------------------

    def connect(self) -> None:
        """The first connection: any failure is raised at once (ConnectionLost, HostKeyError, AuthFailed)."""
        quiet = logging.getLogger("paramiko")
        if not quiet.handlers:  # paramiko logs a dropped socket from its thread; the user gets our messages instead
            quiet.addHandler(logging.NullHandler())
        with self.lock:
            if not self._alive():
                self._open()

    def current(self) -> tuple[Transport, int]:
        """The live transport and its generation (see ``lost``), connecting again first (with backoff, telling
        ``events``) if the connection dropped."""
        with self.lock:
            if self._closed.is_set():
                raise ConnectionLost(f"connection to {self.target.name} was closed")
            if self._fatal is not None:
                raise self._fatal
            if not self._alive():
                if not self._transports and self.generation == 0:
                    self._open()
                else:
                    self._reconnect(self._why_down())
            return self._transports[-1], self.generation

    def close(self) -> None:
        self._closed.set()  # first, without the lock: a reconnect loop holding it sees this and stops
        with self.lock:
            self._drop()

    def is_up(self) -> bool:
        """Connected now (no reconnecting)."""
        return self._alive()

    def _alive(self) -> bool:
        return bool(self._transports) and all(t.is_active() for t in self._transports)

    def _why_down(self) -> str:
        for t in reversed(self._transports):
            exc = t.get_exception()
            if exc is not None:
                return str(exc) or type(exc).__name__
        return "the connection closed"

    def _reconnect(self, why: str) -> None:
        self._drop()
        for attempt in range(10**9):
            delay = BACKOFF_S[min(attempt, len(BACKOFF_S) - 1)]
            self._tell(f"connection to {self.target.name} lost ({why}); reconnecting in {delay:g} s")
            if self._closed.wait(delay):
                raise ConnectionLost(f"connection to {self.target.name} was closed")
            try:
                self._open()
            except ConnectionLost as exc:
                why = str(exc)
                continue
            except UserError as exc:  # a refused key or host key: say it, and do not try again every poll
                self._fatal = exc
                self._tell(f"cannot reconnect to {self.target.name}: {exc.problems[0]}")
                raise
            self._tell(f"reconnected to {self.target.name}")
            return

    def _tell(self, text: str) -> None:
        if self.events is not None:
            with contextlib.suppress(Exception):  # a broken listener must not break the connection
                self.events(text)

    def _drop(self) -> None:
        for t in reversed(self._transports):
            with contextlib.suppress(Exception):
                t.close()
        self._transports = []
        self._sftp = None

    def _open(self) -> None:
        """Connects through the jump hosts (if any) to the login node; every hop's key is checked."""
        hops = [*jump_chain(self.target), self.target]  # a jump host's own ProxyJump too, as ssh goes
        transports: list[Transport] = []
        try:
            for i, hop in enumerate(hops):
                sock = self.socket_to(hop, transports[-1] if transports else None, first=i == 0)
                transports.append(self._handshake(hop, sock))
                self._authenticate(transports[-1], hop)
        except BaseException:
            for t in transports:
                with contextlib.suppress(Exception):
                    t.close()
            raise
        self._transports = transports
        self.generation += 1

    def socket_to(self, hop: Target, via: Transport | None, *, first: bool) -> Any:
        import paramiko

        where = f"{hop.hostname} port {hop.port}"
        if via is not None:
            try:
                return via.open_channel(
                    "direct-tcpip", (hop.hostname, hop.port), ("127.0.0.1", 0), timeout=self.timeout_s
                )
            except (paramiko.SSHException, OSError, EOFError) as exc:
                raise ConnectionLost(f"cannot reach {where} through the jump host: {exc}") from None
        if first and hop.proxy_command:  # the login node's, or the first jump host's
            try:
                return paramiko.ProxyCommand(hop.proxy_command)
            except (paramiko.SSHException, OSError) as exc:
                raise ConnectionLost(f"ProxyCommand {hop.proxy_command!r} failed: {exc}") from None
        try:
            return socket.create_connection((hop.hostname, hop.port), timeout=self.timeout_s)
        except socket.gaierror as exc:
            raise ConnectionLost(f"cannot resolve {hop.hostname} ({exc.strerror})") from None
        except OSError as exc:
            raise ConnectionLost(f"cannot connect to {where}: {exc.strerror or exc}") from None

    def _handshake(self, hop: Target, sock: Any) -> Transport:
        import paramiko

        t = paramiko.Transport(sock)
        t.set_keepalive(int(self.keepalive_s))
        known = set(known_types(hop))
        if "ssh-rsa" in known:  # a known RSA key is offered as its SHA-2 signature algorithms
            known |= {"rsa-sha2-512", "rsa-sha2-256"}
        if known:  # ask for a key type we know first, as OpenSSH does, so a known host is recognised
            options = t.get_security_options()
            options.key_types = [
                *(k for k in options.key_types if k in known),
                *(k for k in options.key_types if k not in known),
            ]
        try:
            t.start_client(timeout=self.timeout_s)
        except (paramiko.SSHException, EOFError, OSError) as exc:
            t.close()
            raise ConnectionLost(
                f"{hop.hostname} port {hop.port}: SSH handshake failed ({exc or type(exc).__name__})"
            ) from None
        try:
            check_host_key(hop, t.get_remote_server_key())
        except BaseException:
            t.close()
            raise
        return t

    def _authenticate(self, t: Transport, hop: Target) -> None:
        """Agent keys, then identity files, then keyboard-interactive; partial success goes on to the next method."""
        import paramiko

        tried: list[str] = []
        allowed: list[str] | None = None
        for label, key in self._keys(hop):
            if allowed is not None and "publickey" not in allowed:
                break
            try:
                allowed = t.auth_publickey(hop.user, key)
            except paramiko.BadAuthenticationType as exc:
                allowed = list(exc.allowed_types)
                break
            except paramiko.AuthenticationException:
                tried.append(label)
                continue
            except (paramiko.SSHException, EOFError, OSError) as exc:
                # after refused keys, most likely the server's MaxAuthTries: say how to offer fewer
                hint = (
                    f"; the host hung up after {len(tried)} refused keys, too many for its MaxAuthTries? "
                    f"Set IdentitiesOnly yes and IdentityFile for {hop.name} in ~/.ssh/config"
                    if tried and not hop.identities_only
                    else ""
                )
                raise ConnectionLost(f"{hop.address}: connection lost while logging in ({exc}){hint}") from None
            if t.is_authenticated():
                return
            tried.append(f"{label} (accepted; more is asked)")
            break
        if not t.is_authenticated() and (allowed is None or "keyboard-interactive" in allowed):
            if self.prompter is None and allowed is not None:
                raise AuthFailed(
                    f"{hop.address}: the host asks for keyboard-interactive (two-factor) answers, "
                    "and there is no terminal to ask them on"
                )
            if self.prompter is not None:
                self._prompt_error = None
                t.auth_timeout = 600  # a person is typing a code or approving a push: not paramiko's 30 s
                try:
                    t.auth_interactive(hop.user, self._answer)
                except paramiko.AuthenticationException:
                    if self._prompt_error is not None:  # no answers could be had: say why, not "refused"
                        raise self._prompt_error from None
                    tried.append("keyboard-interactive")
                except (paramiko.SSHException, EOFError, OSError) as exc:
                    raise ConnectionLost(f"{hop.address}: connection lost while logging in ({exc})") from None
        if t.is_authenticated():
            return
        missing = f" (IdentityFile not found: {', '.join(hop.identity_missing)})" if hop.identity_missing else ""
        raise AuthFailed(
            f"{hop.address}: authentication failed; tried {', '.join(tried) or 'no key at all'}{missing}.",
            f"Check identity_file in {self.target.name}'s profile or ~/.ssh/config, and that the key is in "
            f"{hop.user}'s ~/.ssh/authorized_keys on {hop.hostname}.",
        )

    def _answer(self, title: str, instructions: str, prompts: list[tuple[str, bool]]) -> list[str]:
        """Runs on paramiko's thread: a failure to answer is kept for the connecting thread, which raises it."""
        if not prompts:
            return []
        assert self.prompter is not None
        try:
            return self.prompter(title or f"{self.target.name}: login", instructions, list(prompts))
        except BaseException as exc:
            self._prompt_error = exc
            return ["" for _ in prompts]

    def _keys(self, hop: Target) -> Iterator[tuple[str, PKey]]:
        """(label, key) in the order tried: the agent's, then the identity files (the defaults if none named).

        Lazily: a file's passphrase is asked only once the agent's keys have failed. With
        IdentitiesOnly, an agent key is offered only if it is one of the files' (``jobs.remote.identities``:
        the ``.pub`` beside it, the file itself when it is a ``.pub``, or the public key inside it).
        An IdentityFile that is a public key is never loaded as a private one.
        """
        import paramiko

        named = hop.identity_files or hop.identity_missing  # any named: no defaults, as ssh
        files = hop.identity_files if named else [str(p) for n in DEFAULT_KEYS if (p := ssh_dir() / n).is_file()]
        identities = [identity(path) for path in files]
        wanted = {i.blob for i in identities if i.blob} if hop.identities_only else None
        agent = None
        offered: set[bytes] = set()
        with contextlib.suppress(paramiko.SSHException, OSError):
            agent = paramiko.Agent()
        try:
            for key in agent.get_keys() if agent else ():
                if wanted is not None and key.asbytes() not in wanted:
                    continue
                offered.add(key.asbytes())
                yield f"agent key {key.get_name()}", key
        finally:
            if agent is not None:
                agent.close()
        for one in identities:
            if one.public_only or (one.blob is not None and (one.blob in offered or not Path(one.path).exists())):
                continue  # a public key signs nothing itself; a key the agent offered is not asked for again
            key = self._load_key(one.path)
            if key.asbytes() not in offered:
                yield f"key {one.path}", key

    def _load_key(self, path: str) -> PKey:
        import paramiko

        if path in self._keys_loaded:
            return self._keys_loaded[path]
        try:
            key = paramiko.PKey.from_path(path)
        except FileNotFoundError:
            raise UserError(f"{path}: identity file not found (profile {self.target.name})") from None
        except (paramiko.PasswordRequiredException, TypeError):  # paramiko 3 and 4+: the key is encrypted
            if self.prompter is None:
                raise UserError(f"{path}: the key has a passphrase and there is no terminal to ask it on") from None
            (passphrase,) = self.prompter("key passphrase", "", [(f"Passphrase for {path}: ", False)])
            try:
                key = paramiko.PKey.from_path(path, passphrase.encode())
            except (paramiko.SSHException, ValueError, TypeError):
                raise UserError(f"{path}: wrong passphrase") from None
        except (paramiko.SSHException, OSError, ValueError) as exc:
            raise UserError(f"{path}: not a private key paramiko can read ({exc})") from None
        self._keys_loaded[path] = key
        return key

    # -- using it -----------------------------------------------------------------------------

    def sftp(self) -> tuple[SFTPClient, int]:
        """The shared SFTP session and its generation (hold ``sftp_lock`` while using it); afresh after a reconnect."""
        import paramiko

        with self.lock:
            t, generation = self.current()
            if self._sftp is None or self._sftp_generation != generation or self._sftp.get_channel().closed:
                try:
                    self._sftp = paramiko.SFTPClient.from_transport(t)
                except (paramiko.SSHException, EOFError, OSError) as exc:
                    raise self.lost(exc, generation) from None
                if self._sftp is None:
                    raise ConnectionLost(f"{self.target.name}: cannot start SFTP")
                # a silent network (a laptop's Wi-Fi gone) must not hang a read for TCP's quarter of an hour
                self._sftp.get_channel().settimeout(SFTP_TIMEOUT_S)
                self._sftp_generation = generation
            return self._sftp, generation

    def lost(self, exc: BaseException, generation: int) -> ConnectionLost:
        """What a failed read or command becomes; the connection of ``generation`` is closed if it is still the one,
        so the next use reconnects (a failure on an older connection leaves a newer one alone)."""
        with self.lock:
            if self._transports and generation == self.generation:
                self._kill(self._transports[-1])
        return ConnectionLost(f"connection to {self.target.name} lost ({exc or type(exc).__name__})")

    @staticmethod
    def _kill(t: Transport) -> None:
        with contextlib.suppress(Exception):
            t.close()

    def run(
        self, argv: list[str], *, stdin: bytes | None = None, timeout_s: float | None = None, retry: bool = True
    ) -> Completed:
        """Runs ``argv`` on the login node after the profile's setup; ``retry``: again after a dropped connection.

        Commands that change things (submit, resume) pass ``retry=False``: when the connection
        drops under them, whether they ran cannot be known, so the caller is told instead.
        """
        import paramiko

        line = remote_command(argv, self.target.profile.setup)
        while True:
            t, generation = self.current()
            try:
                return self._exec(t, line, stdin, timeout_s)
            except TimeoutError:
                raise
            except paramiko.ChannelException as exc:  # the server refused a channel (MaxSessions…): not a drop
                raise ConnectionLost(f"{self.target.name}: cannot run {argv[0]} ({exc})") from None
            except (paramiko.SSHException, EOFError, OSError) as exc:
                lost = self.lost(exc, generation)
                if not retry:
                    what = " ".join(argv[:2])
                    raise ConnectionLost(f"{lost}, while running {what}; whether it ran is unknown") from None

    def _exec(self, t: Transport, line: str, stdin: bytes | None, timeout_s: float | None) -> Completed:
        chan = t.open_session(timeout=self.timeout_s)
        try:
            chan.exec_command(line)
            if stdin:
                chan.sendall(stdin)
            chan.shutdown_write()
            out, err = bytearray(), bytearray()
            deadline = None if timeout_s is None else time.monotonic() + timeout_s
            while True:
                if chan.recv_ready():
                    out += chan.recv(1 << 16)
                elif chan.recv_stderr_ready():
                    err += chan.recv_stderr(1 << 16)
                elif chan.exit_status_ready() and (chan.eof_received or chan.closed):
                    break
                elif chan.closed or not t.is_active():
                    raise EOFError("the connection closed")
                else:
                    if deadline is not None and time.monotonic() > deadline:
                        raise TimeoutError(f"no answer in {timeout_s:g} s")
                    select.select([chan], [], [], 0.2)
            while chan.recv_ready() or chan.recv_stderr_ready():  # what came with the exit status
                out += chan.recv(1 << 16) if chan.recv_ready() else b""
                err += chan.recv_stderr(1 << 16) if chan.recv_stderr_ready() else b""
            return Completed(chan.recv_exit_status(), out.decode(errors="replace"), err.decode(errors="replace"))
        finally:
            chan.close()
