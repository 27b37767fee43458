"""ssh_config's ``%`` tokens and ``${VAR}`` in UserKnownHostsFile, expanded as OpenSSH 9.2's ssh does.

A known_hosts path the user wrote with a token we did not know would refuse every connection
("unknown token"), so every token ssh accepts there is expanded: ``%% %C %d %h %i %k %L %l
%n %p %r %u`` (ssh_config(5)), and ``%j`` (the ProxyJump, which later OpenSSH added). ``%C``
is OpenSSH 9.2's: the SHA-1 of ``%l%h%p%r``, in hex. GlobalKnownHostsFile gets none of this,
as with ssh.
"""

from __future__ import annotations

import hashlib
import os
import re
import socket
from pathlib import Path

from clusterdeck.jobs.errors import UserError

_TOKEN = re.compile(r"%(.)|\$\{([^}]*)\}")


def known_hosts_tokens(
    *, original: str, hostname: str, port: int, user: str, local_user: str, alias: str, jump: str
) -> dict[str, str]:
    """The tokens of one connection: ``original`` is the name given to ssh (``%n``), ``alias`` its HostKeyAlias."""
    local = socket.gethostname()
    return {
        "%": "%",
        "C": hashlib.sha1(f"{local}{hostname}{port}{user}".encode()).hexdigest(),
        "d": str(Path.home()),
        "h": hostname,
        "i": str(os.getuid()),
        "j": jump,
        "k": alias or original,
        "L": local.split(".", 1)[0],
        "l": local,
        "n": original,
        "p": str(port),
        "r": user,
        "u": local_user,
    }


def expand(word: str, tokens: dict[str, str], where: str) -> str:
    """``word`` with its tokens and ``${VAR}`` replaced; an unknown token or an unset variable is a UserError
    naming ``where`` (the file and option)."""

    def one(match: re.Match[str]) -> str:
        token, variable = match.group(1), match.group(2)
        if token is not None:
            if token not in tokens:
                raise UserError(f"{where}: unknown token %{token} in {word!r}")
            return tokens[token]
        if variable not in os.environ:
            raise UserError(f"{where}: environment variable {variable!r} in {word!r} is not set")
        return os.environ[variable]

    return _TOKEN.sub(one, word)
