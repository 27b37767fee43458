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
ProxyJump, ProxyCommand), as ``ssh NAME`` would.
"""

from __future__ import annotations

import getpass
import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from jobs.errors import UserError


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
    proxy_jump: list[str] = field(default_factory=list)
    """Hops, in order, each ``[user@]host[:port]`` (resolved through ``~/.ssh/config`` too)."""
    proxy_command: str = ""
    profile: Profile = field(default_factory=Profile)
    known_hosts: Path = field(default_factory=lambda: Path("~/.ssh/known_hosts").expanduser())

    @property
    def address(self) -> str:
        """``user@host`` or ``user@host:port``, for messages."""
        return f"{self.user}@{self.hostname}" + (f":{self.port}" if self.port != 22 else "")

    @property
    def host_key_name(self) -> str:
        """The host's name in known_hosts: ``host``, or ``[host]:port`` off port 22 (as OpenSSH writes it)."""
        return self.hostname if self.port == 22 else f"[{self.hostname}]:{self.port}"


def config_path() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or "~/.config"
    return Path(base).expanduser() / "clusterdeck" / "config.toml"


def load_profiles(path: Path | None = None) -> dict[str, Profile]:
    path = path or config_path()
    try:
        table = tomllib.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except OSError as exc:
        raise UserError(f"{path}: cannot read ({exc.strerror})") from None
    except tomllib.TOMLDecodeError as exc:
        raise UserError(f"{path}: invalid TOML: {exc}") from None
    unknown = sorted(set(table) - {"hosts"})
    if unknown:
        raise UserError(f"{path}: unknown table or key {unknown[0]!r} (profiles go under [hosts.NAME])")
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
    lookup = _ssh_lookup(profile.host or name, ssh_config or ssh_config_path())
    try:
        port = profile.port or int(lookup.get("port", 22))
    except ValueError:
        raise UserError(f"{ssh_config or ssh_config_path()}: Port of {name!r} is not a number") from None
    # a profile's key must exist; ~/.ssh/config's may not (a Host * block lists several), as with ssh
    identity = [profile.identity_file] if profile.identity_file else _existing(lookup.get("identityfile", []))
    jump = profile.proxy_jump or lookup.get("proxyjump", "")
    return Target(
        name=name,
        hostname=lookup.get("hostname", profile.host or name),
        port=port,
        user=profile.user or lookup.get("user") or _local_user(),
        identity_files=[os.path.expanduser(p) for p in identity],
        proxy_jump=[hop.strip() for hop in jump.split(",") if hop.strip() and jump.lower() != "none"],
        proxy_command="" if jump else str(lookup.get("proxycommand", "")).removeprefix("none"),
        profile=profile,
    )


def hop_target(hop: str, *, ssh_config: Path | None = None) -> Target:
    """A ProxyJump hop, ``[user@]host[:port]``, with what ``~/.ssh/config`` says of its host."""
    user, _, rest = hop.rpartition("@")
    host, _, port = rest.partition(":")
    lookup = _ssh_lookup(host, ssh_config or ssh_config_path())
    try:
        number = int(port or lookup.get("port", 22))
    except ValueError:
        raise UserError(f"proxy jump {hop!r}: the port is not a number") from None
    return Target(
        name=host,
        hostname=lookup.get("hostname", host),
        port=number,
        user=user or lookup.get("user") or _local_user(),
        identity_files=_existing(lookup.get("identityfile", [])),
    )


def _existing(paths: list[str]) -> list[str]:
    return [path for p in paths if os.path.exists(path := os.path.expanduser(p))]


def _ssh_lookup(host: str, path: Path) -> dict[str, Any]:
    from paramiko import SSHConfig

    try:
        config = SSHConfig.from_path(str(path)) if path.is_file() else SSHConfig()
    except OSError as exc:
        raise UserError(f"{path}: cannot read ({exc.strerror})") from None
    except Exception as exc:  # paramiko's parser: a malformed line
        raise UserError(f"{path}: {exc}") from None
    return dict(config.lookup(host))


def _local_user() -> str:
    try:
        return getpass.getuser()
    except (OSError, KeyError):
        return str(os.getuid())
