"""Which key an IdentityFile stands for, found without a passphrase, so IdentitiesOnly can pick the agent's copy.

ssh users name keys in three ways, and OpenSSH reads the public half of each without asking
for anything:

- the private key with its ``.pub`` beside it: the public key is the ``.pub``'s;
- the ``.pub`` itself (a key held only by an agent: 1Password, a YubiKey, gpg-agent): the file
  *is* the public key, and is never to be loaded as a private one;
- a private key with no ``.pub``: OpenSSH's own format keeps the public key unencrypted in the
  file, even when the private part has a passphrase; an old PEM key is read if unencrypted.
"""

from __future__ import annotations

import base64
import os
from dataclasses import dataclass

_OPENSSH_BEGIN = "-----BEGIN OPENSSH PRIVATE KEY-----"
_OPENSSH_END = "-----END OPENSSH PRIVATE KEY-----"
_MAGIC = b"openssh-key-v1\0"


@dataclass(frozen=True)
class Identity:
    path: str
    blob: bytes | None
    """The public key as an agent lists it (``PKey.asbytes``), or None where it cannot be read."""
    public_only: bool
    """The file is a public key: only an agent's copy can sign with it."""


def identity(path: str) -> Identity:
    blob = public_key_line(path)
    if blob is not None:
        return Identity(path, blob, public_only=True)
    blob = public_key_line(path + ".pub") or _embedded_public(path) or _unencrypted_public(path)
    return Identity(path, blob, public_only=False)


def public_key_line(path: str) -> bytes | None:
    """The key of an OpenSSH public-key line (``ssh-ed25519 AAAA… comment``) in ``path``; None if it holds none."""
    try:
        with open(path, "rb") as f:
            words = f.read(65536).decode().split()
        blob = base64.b64decode(words[1], validate=True)
    except (OSError, UnicodeDecodeError, IndexError, ValueError):
        return None
    name = _string(blob, 0)
    return blob if name is not None and name[0] == words[0].encode() else None


def _embedded_public(path: str) -> bytes | None:
    """The public key stored in clear in an OpenSSH-format private key (PROTOCOL.key), encrypted or not."""
    try:
        with open(path, encoding="ascii") as f:
            text = f.read(1 << 20)
        body = text.split(_OPENSSH_BEGIN, 1)[1].split(_OPENSSH_END, 1)[0]
        data = base64.b64decode("".join(body.split()), validate=True)
    except (OSError, UnicodeDecodeError, IndexError, ValueError):
        return None
    if not data.startswith(_MAGIC):
        return None
    at = len(_MAGIC)
    for _ in range(3):  # ciphername, kdfname, kdfoptions
        field = _string(data, at)
        if field is None:
            return None
        at = field[1]
    if int.from_bytes(data[at : at + 4], "big") < 1:  # the number of keys
        return None
    first = _string(data, at + 4)
    return first[0] if first else None


def _unencrypted_public(path: str) -> bytes | None:
    """The public half of a private key that opens without a passphrase (an old PEM key); None otherwise."""
    if not os.path.isfile(path):
        return None
    import paramiko

    try:
        return paramiko.PKey.from_path(path).asbytes()
    except Exception:  # encrypted, unreadable or not a key: its public half is not to be had without asking
        return None


def _string(data: bytes, at: int) -> tuple[bytes, int] | None:
    """The SSH wire-format string at ``at`` and the offset after it; None if ``data`` ends first."""
    if at + 4 > len(data):
        return None
    end = at + 4 + int.from_bytes(data[at : at + 4], "big")
    return (data[at + 4 : end], end) if end <= len(data) else None
