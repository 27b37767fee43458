"""Host keys, checked against known_hosts before anything is sent: an unknown host or a changed key is refused.

Nothing is ever accepted silently. An unknown host's refusal shows its key's fingerprint and
the command that trusts exactly that key (``clusterdeck --host NAME trust SHA256:…``), which
connects again and writes the key only if the host still offers the one the user checked.

The files read are ssh's: UserKnownHostsFile (several, when ``~/.ssh/config`` lists
several), then GlobalKnownHostsFile; a trusted key is written to the first of the user's.
"""

from __future__ import annotations

import base64
import hashlib
import os
from pathlib import Path
from typing import TYPE_CHECKING

from clusterdeck.jobs.errors import UserError

if TYPE_CHECKING:
    from paramiko import PKey

    from clusterdeck.jobs.remote.profiles import Target


class HostKeyError(UserError):
    """The host's key is unknown or has changed: refused, with what to do about it."""


def fingerprint(key: PKey) -> str:
    """OpenSSH's form: ``SHA256:`` and the unpadded base64 of the key's SHA-256."""
    return "SHA256:" + base64.b64encode(hashlib.sha256(key.asbytes()).digest()).decode().rstrip("=")


def known_hosts_files(target: Target) -> list[Path]:
    """Every file read for the host's key, the user's first (where ``trust`` writes)."""
    return [target.known_hosts, *target.also_known_hosts]


def known_keys(target: Target) -> list[PKey]:
    """Every key any file lists for the host, in file order: several of one type included (a stale one, then the
    right one), as OpenSSH reads them, where paramiko's ``lookup(host)[type]`` gives only the first."""
    from paramiko import HostKeys

    found: list[PKey] = []
    for path in known_hosts_files(target):
        if path.is_file():
            try:
                entry = HostKeys(str(path)).lookup(target.host_key_name)
            except OSError as exc:
                raise UserError(f"{path}: cannot read ({exc.strerror})") from None
            # its mapping shows one key per type; the entries behind it are every line that matched
            found += [e.key for e in getattr(entry, "_entries", ()) if e.key is not None]
    return found


def known_types(target: Target) -> list[str]:
    """Key types known for the host, to ask the server for one of those first (as OpenSSH does)."""
    return list(dict.fromkeys(k.get_name() for k in known_keys(target)))


def check_host_key(target: Target, key: PKey) -> None:
    """Accepted if any known key of the host is ``key``; "changed" only when one of its type is known and none is."""
    known = known_keys(target)
    offered = f"{key.get_name()} {fingerprint(key)}"
    if any(k == key for k in known):
        return
    if not any(k.get_name() == key.get_name() for k in known):
        raise HostKeyError(
            f"{target.host_key_name} ({target.name}) is not a known host: no known_hosts file has a "
            f"{key.get_name()} key for it ({', '.join(map(str, _named(target)))}); refusing to connect.",
            f"it offers the {offered} key. If that is the cluster's key (ask its admins), trust it with:",
            f"    clusterdeck --host {target.name} trust {fingerprint(key)}",
        )
    listed = ", ".join(f"{k.get_name()} {fingerprint(k)}" for k in known)
    raise HostKeyError(
        f"WARNING: THE HOST KEY OF {target.host_key_name} ({target.name}) HAS CHANGED; refusing to connect.",
        f"known: {listed}; offered now: {offered}.",
        "Someone may be intercepting the connection, or the host was reinstalled. If its admins confirm the "
        f"new key, remove the old one with: ssh-keygen -f {_holding(target)} -R '{target.host_key_name}'",
    )


def _named(target: Target) -> list[Path]:
    """The files to name in a refusal: the user's first (where trust writes), and the others that exist."""
    return [target.known_hosts, *(p for p in target.also_known_hosts if p.exists())]


def _holding(target: Target) -> Path:
    """The first file with a key of the host: the one to remove a changed key from."""
    from paramiko import HostKeys

    for path in known_hosts_files(target):
        if path.is_file() and HostKeys(str(path)).lookup(target.host_key_name):
            return path
    return target.known_hosts


def trust_host_key(target: Target, key: PKey, expected: str) -> Path:
    """Appends ``key`` to the user's known_hosts if its fingerprint is ``expected`` and the host has no other key."""
    got = fingerprint(key)
    if got != expected.strip():
        raise HostKeyError(
            f"{target.host_key_name} ({target.name}) offers {key.get_name()} {got}, not {expected}; nothing was written"
        )
    known = known_keys(target)
    if any(k == key for k in known):
        return target.known_hosts
    if any(k.get_name() == key.get_name() for k in known):
        check_host_key(target, key)  # a changed key is never overwritten from here: raises loudly
    path = target.known_hosts
    if str(path) == os.devnull:
        raise HostKeyError(f"{target.name}: UserKnownHostsFile is none in ~/.ssh/config: nowhere to write the key")
    try:
        _append(path, f"{target.host_key_name} {key.get_name()} {key.get_base64()}\n")
    except OSError as exc:
        raise HostKeyError(
            f"{path}: cannot write the key of {target.host_key_name} ({exc.strerror}); nothing was written.",
            "trust writes to the first UserKnownHostsFile of ~/.ssh/config: list a file you can write first.",
        ) from None
    return path


def _append(path: Path, line: str) -> None:
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        with open(fd, "a", closefd=False) as f:
            if f.tell() > 0 and not path.read_bytes().endswith(b"\n"):
                f.write("\n")
            f.write(line)
    finally:
        os.close(fd)
