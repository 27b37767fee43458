"""Cluster profiles: named login nodes in the user's config file, merged with ``~/.ssh/config``.

``$XDG_CONFIG_HOME/clusterdeck/config.toml`` (``~/.config/clusterdeck/config.toml``)::

    [hosts.mycluster]
    host = "login1.example.org"      # a hostname or a ~/.ssh/config alias
    user = "me"
    identity_file = "~/.ssh/id_ed25519"
    proxy_jump = "bastion.example.org"
    runs_root = "/scratch/me/clusterdeck/runs"
    setup = "source ~/venvs/clusterdeck/bin/activate"   # or "module load clusterdeck"
    partition = "gpu"
    account = "proj123"

``--host NAME`` names a profile, or else a ``~/.ssh/config`` alias or a plain hostname. What
the profile leaves out, ``~/.ssh/config`` fills in (HostName, User, Port, IdentityFile,
ProxyJump, ProxyCommand), as ``ssh NAME`` would; its Includes are read
(``jobs.remote.sshconfig``), and so are UserKnownHostsFile, GlobalKnownHostsFile and
IdentitiesOnly. A jump host's own ProxyJump is followed, as ssh follows it (``jump_chain``).
"""

from __future__ import annotations

import dataclasses
import getpass
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from clusterdeck.jobs.errors import UserError
from clusterdeck.jobs.remote import sshconfig
from clusterdeck.jobs.remote.tokens import expand, known_hosts_tokens
from clusterdeck.jobs.userconfig import config_path, read_config

USER_KNOWN_HOSTS = "~/.ssh/known_hosts ~/.ssh/known_hosts2"
GLOBAL_KNOWN_HOSTS = "/etc/ssh/ssh_known_hosts /etc/ssh/ssh_known_hosts2"
"""OpenSSH's defaults of UserKnownHostsFile and GlobalKnownHostsFile."""
MAX_JUMPS = 16


class Profile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    host: str = ""
    """Hostname or ``~/.ssh/config`` alias of the login node; empty: the profile's own name."""
    user: str = ""
    """Login name; empty: ``~/.ssh/config``'s User, else the local user name."""
    port: int | None = Field(None, ge=1, le=65535)
    """SSH port; empty: ``~/.ssh/config``'s Port, else 22."""
    identity_file: str = ""
    """Private key to log in with, after the SSH agent's; empty: ``~/.ssh/config``'s, else the default names."""
    proxy_jump: str = ""
    """Jump host(s), ``[user@]host[:port]``, comma-separated, as ssh's ProxyJump."""
    runs_root: str = ""
    """Runs root on the cluster; empty: clusterdeck's default there."""
    setup: str = ""
    """Shell run before clusterdeck on the login node: ``source ~/venv/bin/activate`` or ``module load clusterdeck``."""
    command: str = "clusterdeck"
    """The clusterdeck command on the login node."""
    partition: str = ""
    """Default SLURM partition of submitted steps that name none."""
    account: str = ""
    """Default SLURM account of submitted steps that name none."""


@dataclass(frozen=True)
class Target:
    """Everything needed to reach one login node and run clusterdeck there."""

    name: str
    """What the user called it: the profile's name, or the alias given to ``--host``."""
    hostname: str
    port: int
    user: str
    identity_files: list[str] = field(default_factory=list)
    identity_missing: list[str] = field(default_factory=list)
    """IdentityFile lines of ~/.ssh/config naming no file: skipped (as ssh does), but no default key is tried either."""
    proxy_jump: list[str] = field(default_factory=list)
    """Hops, in order, each ``[user@]host[:port]`` (resolved through ``~/.ssh/config`` too)."""
    proxy_command: str = ""
    profile: Profile = field(default_factory=Profile)
    known_hosts: Path = field(default_factory=lambda: Path("~/.ssh/known_hosts").expanduser())
    """The user's known_hosts file, where ``trust`` writes: the first of UserKnownHostsFile."""
    also_known_hosts: list[Path] = field(
        default_factory=lambda: _paths(USER_KNOWN_HOSTS)[1:] + _paths(GLOBAL_KNOWN_HOSTS)
    )
    """Read too when checking a host's key: UserKnownHostsFile's other files, then GlobalKnownHostsFile's."""
    identities_only: bool = False
    """IdentitiesOnly: only the identity files' keys are offered (an agent's copy of one of them included)."""

    @property
    def address(self) -> str:
        """``user@host`` or ``user@host:port``, for messages."""
        return f"{self.user}@{self.hostname}" + (f":{self.port}" if self.port != 22 else "")

    @property
    def host_key_name(self) -> str:
        """The host's name in known_hosts: ``host``, or ``[host]:port`` off port 22 (as OpenSSH writes it)."""
        return self.hostname if self.port == 22 else f"[{self.hostname}]:{self.port}"


def load_profiles(path: Path | None = None) -> dict[str, Profile]:
    path = path or config_path()
    table = read_config(path)
    unknown = sorted(set(table) - {"hosts", "defaults", "app"})  # [defaults], [app]: jobs.userconfig
    if unknown:
        raise UserError(
            f"{path}: unknown table or key {unknown[0]!r} (profiles go under [hosts.NAME], defaults under [defaults], "
            "the app's settings under [app])"
        )
    hosts = table.get("hosts", {})
    if not isinstance(hosts, dict):
        raise UserError(f"{path}: hosts must be a table of [hosts.NAME] tables")
    profiles, problems = {}, []
    for name, entry in hosts.items():
        try:
            profiles[name] = Profile.model_validate(entry)
        except ValidationError as exc:
            for err in exc.errors():
                key = ".".join(str(p) for p in ("hosts", name, *err["loc"]))
                problems.append(f"{path}: {key}: {err['msg']}")
    if problems:
        raise UserError(*problems)
    return profiles


def ssh_config_path() -> Path:
    return Path("~/.ssh/config").expanduser()


def resolve_target(name: str, *, config: Path | None = None, ssh_config: Path | None = None) -> Target:
    """The login node ``--host name`` means: a profile, else a ``~/.ssh/config`` alias, else a hostname."""
    if not name or name.startswith("-") or any(c.isspace() for c in name):
        raise UserError(f"--host: {name!r} is not a profile, an ssh alias or a hostname")
    profile = load_profiles(config).get(name, Profile())
    path = ssh_config or ssh_config_path()
    lookup = _ssh_lookup(profile.host or name, path)
    try:
        port = profile.port or int(lookup.get("port", 22))
    except ValueError:
        raise UserError(f"{path}: Port of {name!r} is not a number") from None
    # a profile's key must exist; ~/.ssh/config's may not (a Host * block lists several), as with ssh
    named = [] if profile.identity_file else lookup.get("identityfile", [])
    identity = [profile.identity_file] if profile.identity_file else _existing(named)
    jump = profile.proxy_jump or lookup.get("proxyjump", "")
    hostname = lookup.get("hostname", profile.host or name)
    user = profile.user or lookup.get("user") or _local_user()
    return Target(
        name=name,
        hostname=hostname,
        port=port,
        user=user,
        identity_files=[os.path.expanduser(p) for p in identity],
        identity_missing=_missing(named),
        proxy_jump=_hops(jump),
        proxy_command="" if jump else _proxy_command(lookup),
        profile=profile,
        **_ssh_options(lookup, path, profile.host or name, hostname, port, user, jump),
    )


def hop_target(hop: str, *, ssh_config: Path | None = None) -> Target:
    """A ProxyJump hop, ``[user@]host[:port]``, with what ``~/.ssh/config`` says of its host (its own ProxyJump too)."""
    user, _, rest = hop.rpartition("@")
    host, _, port = rest.partition(":")
    path = ssh_config or ssh_config_path()
    lookup = _ssh_lookup(host, path)
    try:
        number = int(port or lookup.get("port", 22))
    except ValueError:
        raise UserError(f"proxy jump {hop!r}: the port is not a number") from None
    hostname = lookup.get("hostname", host)
    user = user or lookup.get("user") or _local_user()
    jump = lookup.get("proxyjump", "")
    return Target(
        name=host,
        hostname=hostname,
        port=number,
        user=user,
        identity_files=_existing(lookup.get("identityfile", [])),
        identity_missing=_missing(lookup.get("identityfile", [])),
        proxy_jump=_hops(jump),
        proxy_command="" if jump else _proxy_command(lookup),
        **_ssh_options(lookup, path, host, hostname, number, user, jump),
    )


def jump_chain(target: Target, *, ssh_config: Path | None = None, _via: tuple[str, ...] = ()) -> list[Target]:
    """The hosts to pass through, in order, to reach ``target``, as ssh goes.

    ``ProxyJump B1,B2`` is ``ssh -J B1 -W target B2``: B2 is reached through B1 whatever
    B2's own ProxyJump says, while B1 is reached as ``ssh B1`` would reach it: through its
    own ProxyJump, recursively.
    """
    if not target.proxy_jump:
        return []
    via = (*_via, target.name)
    first, *rest = (hop_target(hop, ssh_config=ssh_config) for hop in target.proxy_jump)
    if first.name in via or len(via) > MAX_JUMPS:
        raise UserError(f"ProxyJump of {via[0]!r} goes round in a loop: {' -> '.join((*via, first.name))}")
    before = jump_chain(first, ssh_config=ssh_config, _via=via)
    return [*before, first, *(dataclasses.replace(hop, proxy_jump=[], proxy_command="") for hop in rest)]


def _hops(jump: str) -> list[str]:
    return [hop.strip() for hop in jump.split(",") if hop.strip() and jump.lower() != "none"]


def _proxy_command(lookup: dict[str, Any]) -> str:
    return str(lookup.get("proxycommand") or "").removeprefix("none")


def _ssh_options(
    lookup: dict[str, Any], path: Path, original: str, hostname: str, port: int, user: str, jump: str
) -> dict[str, Any]:
    """The Target fields of UserKnownHostsFile, GlobalKnownHostsFile and IdentitiesOnly.

    ``original`` is the name given to ssh (``%n``): a profile's host, else the alias.
    """
    tokens = known_hosts_tokens(
        original=original,
        hostname=hostname,
        port=port,
        user=user,
        local_user=_local_user(),
        alias=str(lookup.get("hostkeyalias") or ""),
        jump="" if jump.lower() == "none" else jump,
    )
    user_files = _paths(str(lookup.get("userknownhostsfile", USER_KNOWN_HOSTS)), tokens, f"{path}: UserKnownHostsFile")
    global_files = _paths(str(lookup.get("globalknownhostsfile", GLOBAL_KNOWN_HOSTS)))  # no tokens there, as ssh
    user_files = user_files or [Path(os.devnull)]  # "none": nothing of the user's is read, trust has nowhere to write
    return {
        "known_hosts": user_files[0],
        "also_known_hosts": user_files[1:] + global_files,
        "identities_only": str(lookup.get("identitiesonly", "no")).lower() == "yes",
    }


def _paths(value: str, tokens: dict[str, str] | None = None, where: str = "") -> list[Path]:
    """A list of known_hosts files as ssh_config gives it: space-separated, ``~`` expanded, and with ``tokens``,
    ``%`` tokens and ``${VAR}`` (``jobs.remote.tokens``)."""
    if value.strip().lower() == "none":
        return []
    words = [expand(w, tokens, where) if tokens is not None else w for w in value.split()]
    return [Path(os.path.expanduser(w)) for w in words]


def _existing(paths: list[str]) -> list[str]:
    """The identity files there are: the key, or only its ``.pub`` (the key is in an agent), as ssh reads them."""
    return [path for p in paths if _found(path := os.path.expanduser(p))]


def _missing(paths: list[str]) -> list[str]:
    return [path for p in paths if not _found(path := os.path.expanduser(p))]


def _found(path: str) -> bool:
    return os.path.exists(path) or os.path.exists(path + ".pub")


def _ssh_lookup(host: str, path: Path) -> dict[str, Any]:
    return sshconfig.lookup(host, path)


def _local_user() -> str:
    try:
        return getpass.getuser()
    except (OSError, KeyError):
        return str(os.getuid())
