"""``--host NAME``: connecting to a login node from the terminal, and ``clusterdeck --host NAME trust SHA256:…``.

Two-factor prompts and key passphrases are asked on the terminal (``getpass``: nothing is
echoed, nothing is written anywhere); connection news goes to stderr, so that ``--json``
output on stdout stays clean.
"""

from __future__ import annotations

import getpass
import sys
from typing import TYPE_CHECKING

from clusterdeck.jobs.errors import UserError

if TYPE_CHECKING:
    from clusterdeck.jobs.deck.ssh import SshDeck


def terminal_prompter(title: str, instructions: str, prompts: list[tuple[str, bool]]) -> list[str]:
    if not sys.stdin.isatty():
        raise UserError(f"{title}: the login asks for answers (two-factor), and stdin is not a terminal")
    for text in (title, instructions):
        if text.strip():
            print(text.strip(), file=sys.stderr)
    answers = []
    try:
        for prompt, echo in prompts:  # prompts on stderr: stdout is for --json
            if echo:
                print(prompt, end="", file=sys.stderr, flush=True)
                answers.append(sys.stdin.readline().rstrip("\n"))
            else:
                answers.append(getpass.getpass(prompt, stream=sys.stderr))
    except (EOFError, KeyboardInterrupt):
        raise UserError(f"{title}: login cancelled") from None
    return answers


def tell(text: str) -> None:
    print(f"clusterdeck: {text}", file=sys.stderr, flush=True)


def connect(host: str, runs_root: str | None = None) -> SshDeck:
    """The login node ``host`` names (a profile, an ssh alias or a hostname), connected and checked: its host key,
    and its clusterdeck's JSON schemas against this one's (``jobs.protocol``)."""
    from clusterdeck.jobs.deck.ssh import RemoteFailed, SshDeck
    from clusterdeck.jobs.remote.profiles import resolve_target
    from clusterdeck.jobs.remote.ssh import ConnectionLost, SshConnection

    target = resolve_target(host)
    conn = SshConnection(target, prompter=terminal_prompter, events=tell)
    try:
        conn.connect()
    except ConnectionLost as exc:
        raise RemoteFailed(f"--host {host}: {exc}") from None
    deck = SshDeck(conn, runs_root)
    try:
        deck.check_version()  # a login node with another major is refused here, before any command
    except BaseException:
        deck.close()
        raise
    return deck


def trust(host: str, expected: str) -> str:
    """Writes the host's key to known_hosts if it is the one with fingerprint ``expected``."""
    import paramiko

    from clusterdeck.jobs.deck.ssh import RemoteFailed
    from clusterdeck.jobs.remote.hostkeys import trust_host_key
    from clusterdeck.jobs.remote.profiles import resolve_target
    from clusterdeck.jobs.remote.ssh import ConnectionLost, SshConnection

    target = resolve_target(host)
    if target.proxy_jump or target.proxy_command:
        raise UserError(f"--host {host}: trust works on direct connections; use ssh to accept a key behind a jump")
    conn = SshConnection(target)
    try:
        sock = conn.socket_to(target, None, first=True)
        t = paramiko.Transport(sock)
        try:
            t.start_client(timeout=conn.timeout_s)
            path = trust_host_key(target, t.get_remote_server_key(), expected)
        except (paramiko.SSHException, EOFError, OSError) as exc:
            raise RemoteFailed(f"--host {host}: SSH handshake failed ({exc})") from None
        finally:
            t.close()
    except ConnectionLost as exc:
        raise RemoteFailed(f"--host {host}: {exc}") from None
    return f"{target.host_key_name}: key {expected} trusted ({path})"
