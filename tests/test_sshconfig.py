"""``~/.ssh/config`` as users write it: Include, UserKnownHostsFile, IdentitiesOnly and a jump host's own ProxyJump.

The parsing is checked on its own (no server needed); the connections against a real sshd
on 127.0.0.1 (tests/sshd.py), with clusterdeck on a "laptop" whose HOME holds the config.
"""

from __future__ import annotations

import contextlib
import getpass
import hashlib
import json
import os
import re
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from clusterdeck.jobs.errors import UserError
from clusterdeck.jobs.remote.profiles import jump_chain, resolve_target
from clusterdeck.jobs.remote.sshconfig import lookup
from tests.conftest import REPO, Result
from tests.sshd import Laptop, Sshd, keygen, serve, sshd_available


@pytest.fixture
def ssh_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A HOME of our own: ``~`` and ``~/.ssh`` are read from it."""
    home = tmp_path / "home"
    (home / ".ssh").mkdir(parents=True, mode=0o700)
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home / ".config"))
    return home


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


# -- parsing ---------------------------------------------------------------------------------------


def test_include_globs_relative_to_dot_ssh_nested_and_in_order(ssh_home: Path) -> None:
    config = write(ssh_home / ".ssh" / "config", "Include config.d/*.conf\nHost *\n  User fallback\n")
    write(ssh_home / ".ssh" / "config.d" / "b.conf", "Host login\n  Port 2202\n")  # later in order: a's Port wins
    write(ssh_home / ".ssh" / "config.d" / "a.conf", "Host login\n  HostName login1.example.org\n  Port 2201\n")
    write(ssh_home / ".ssh" / "config.d" / "c.conf", "Include ~/shared/ssh.conf\n")  # nested, ~ expanded
    write(ssh_home / "shared" / "ssh.conf", "Host gpu-*\n  ProxyJump login\n")
    write(ssh_home / ".ssh" / "config.d" / "ignored.txt", "Host login\n  User nobody\n")

    assert lookup("login", config) == {"hostname": "login1.example.org", "port": "2201", "user": "fallback"}
    assert lookup("gpu-7", config)["proxyjump"] == "login"
    assert lookup("other", config) == {"hostname": "other", "user": "fallback"}


def test_an_include_inside_a_host_block_applies_only_there(ssh_home: Path) -> None:
    config = write(
        ssh_home / ".ssh" / "config",
        "Host cluster\n  User me\n  Include cluster.conf\n  Port 2222\nHost *\n  User fallback\n",
    )
    # the included file's own Host blocks need the enclosing block too; lines before them are that block's
    write(
        ssh_home / ".ssh" / "cluster.conf", "HostName login.cluster\nHost other\n  User wrong\nHost cluster\n  Port 1\n"
    )

    assert lookup("cluster", config) == {"hostname": "login.cluster", "user": "me", "port": "1"}
    assert lookup("other", config) == {"hostname": "other", "user": "fallback"}  # not inside Host cluster


def test_after_each_included_file_the_enclosing_block_goes_on(ssh_home: Path) -> None:
    """a ends inside Host a; b's top-level lines are the top level's (every host), not Host a's: as ssh -G reads it."""
    config = write(ssh_home / ".ssh" / "config", "Include config.d/*\n")
    write(ssh_home / ".ssh" / "config.d" / "a", "Host a\n  HostName a.example.org\n")
    write(ssh_home / ".ssh" / "config.d" / "b", "User common\nPort 2222\n")

    assert lookup("other", config) == {"hostname": "other", "user": "common", "port": "2222"}
    assert lookup("a", config) == {"hostname": "a.example.org", "user": "common", "port": "2222"}
    if shutil.which("ssh"):  # the reference: OpenSSH's own reading of the same files
        out = subprocess.run(["ssh", "-F", str(config), "-G", "other"], capture_output=True, text=True, check=True)
        options = dict(line.split(" ", 1) for line in out.stdout.splitlines() if " " in line)
        assert (options["user"], options["port"]) == ("common", "2222")


def test_include_loops_and_bad_lines_are_named(ssh_home: Path) -> None:
    config = write(ssh_home / ".ssh" / "config", "Include config\n")  # includes itself
    with pytest.raises(UserError, match=r"config: Include nested more than 16 deep"):
        lookup("x", config)
    write(ssh_home / ".ssh" / "config", "Include bad.conf\n")
    bad = write(ssh_home / ".ssh" / "bad.conf", "Host x\n  =oops\n")
    with pytest.raises(UserError, match=rf"{re.escape(str(bad))}:2: cannot parse"):
        lookup("x", config)


def test_known_hosts_files_and_identities_only_from_the_config(ssh_home: Path) -> None:
    write(
        ssh_home / ".ssh" / "config",
        "Host login\n  HostName 10.1.2.3\n  User me\n  IdentitiesOnly yes\n"
        "  UserKnownHostsFile ~/.ssh/kh-%r /etc/team/known_hosts_%h\n  GlobalKnownHostsFile none\n",
    )
    target = resolve_target("login")
    assert target.known_hosts == ssh_home / ".ssh" / "kh-me"
    assert target.also_known_hosts == [Path("/etc/team/known_hosts_10.1.2.3")]
    assert target.identities_only

    plain = resolve_target("elsewhere")  # OpenSSH's defaults
    assert plain.known_hosts == ssh_home / ".ssh" / "known_hosts" and not plain.identities_only
    assert plain.also_known_hosts == [
        ssh_home / ".ssh" / "known_hosts2",
        Path("/etc/ssh/ssh_known_hosts"),
        Path("/etc/ssh/ssh_known_hosts2"),
    ]


def test_every_token_of_user_known_hosts_file_is_expanded_as_ssh_does(
    ssh_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KH_TEAM", "/srv/team")
    tokens = "%C %d %h %i %k %L %l %n %p %r %u"
    login = "Host login\n  HostName 10.9.8.7\n  Port 2222\n  User bob\n  HostKeyAlias cluster-login\n"
    write(
        ssh_home / ".ssh" / "config",
        login + "  ProxyJump gate\n"
        f"  UserKnownHostsFile ~/.ssh/known_hosts.d/%k ${{KH_TEAM}}/%j/%% /x/{tokens.replace(' ', '/')}\n"
        "  GlobalKnownHostsFile /etc/ssh/%h\n",  # no tokens there, as with ssh
    )
    target = resolve_target("login")
    assert target.known_hosts == ssh_home / ".ssh" / "known_hosts.d" / "cluster-login"
    third = target.also_known_hosts[1]
    assert target.also_known_hosts[0] == Path("/srv/team/gate/%")
    assert target.also_known_hosts[2:] == [Path("/etc/ssh/%h")]
    local = socket.gethostname()
    expected = {
        "%C": hashlib.sha1(f"{local}10.9.8.72222bob".encode()).hexdigest(),  # OpenSSH 9.2's: %l%h%p%r
        "%d": str(ssh_home),
        "%h": "10.9.8.7",
        "%i": str(os.getuid()),
        "%k": "cluster-login",
        "%L": local.split(".")[0],
        "%l": local,
        "%n": "login",
        "%p": "2222",
        "%r": "bob",
        "%u": getpass.getuser(),
    }
    assert third == Path("/x/" + "/".join(expected[t] for t in tokens.split()))
    if shutil.which("ssh"):  # ssh's own expansion of the same tokens
        # in ControlPath, which ssh -G prints expanded; without %d (ssh's home is the password file's, not HOME)
        # and %j (OpenSSH 9.2 has none)
        control_path = "/x/" + "/".join(t for t in tokens.split() if t != "%d")
        path = write(ssh_home / "reference", f"{login}  ControlPath {control_path}\n")
        out = subprocess.run(["ssh", "-F", str(path), "-G", "login"], capture_output=True, text=True, check=True)
        (control,) = [line.split(" ", 1)[1] for line in out.stdout.splitlines() if line.startswith("controlpath ")]
        assert Path(control) == Path("/x/" + "/".join(expected[t] for t in tokens.split() if t != "%d"))


def test_n_is_the_name_given_to_ssh_and_an_unset_variable_is_named(ssh_home: Path) -> None:
    write(ssh_home / ".config" / "clusterdeck" / "config.toml", '[hosts.mine]\nhost = "login"\n')
    write(
        ssh_home / ".ssh" / "config",
        "Host login\n  UserKnownHostsFile ~/.ssh/kh-%n\nHost other\n  UserKnownHostsFile ${KH_SURELY_UNSET}/kh\n",
    )
    assert resolve_target("mine").known_hosts == ssh_home / ".ssh" / "kh-login"  # the profile's host, not "mine"
    with pytest.raises(UserError, match=r"UserKnownHostsFile: environment variable 'KH_SURELY_UNSET' .* is not set"):
        resolve_target("other")


def test_a_jump_hosts_own_proxyjump_is_followed(ssh_home: Path) -> None:
    write(
        ssh_home / ".ssh" / "config",
        "Host a\n  ProxyJump b\nHost b\n  ProxyJump c\nHost d\n  ProxyJump b,e\nHost e\n  ProxyJump nowhere\n"
        "Host loop1\n  ProxyJump loop2\nHost loop2\n  ProxyJump loop1\n",
    )
    assert [t.name for t in jump_chain(resolve_target("a"))] == ["c", "b"]
    # a later hop of a list is reached through the one before it, whatever its own ProxyJump says (as ssh -J)
    assert [t.name for t in jump_chain(resolve_target("d"))] == ["c", "b", "e"]
    with pytest.raises(UserError, match="goes round in a loop: loop1 -> loop2 -> loop1"):
        jump_chain(resolve_target("loop1"))


# -- against a real sshd ---------------------------------------------------------------------------


@pytest.fixture
def laptop(tmp_path: Path) -> Laptop:
    machine = Laptop(tmp_path / "laptop", tmp_path / "runs")
    (machine.home / ".ssh").mkdir(parents=True, mode=0o700)
    machine.runs.mkdir()
    return machine


def block(alias: str, sshd: Sshd, key: Path, *extra: str) -> str:
    lines = [f"Host {alias}", "  HostName 127.0.0.1", f"  Port {sshd.port}", "  User root", f"  IdentityFile {key}"]
    return "\n".join([*lines, *(f"  {x}" for x in extra)]) + "\n"


def listed(result: Result) -> object:
    """The runs ``ls --json`` listed."""
    assert result.code == 0, result.err
    return json.loads(result.out)["runs"]


def test_an_alias_defined_only_in_an_included_file_connects(laptop: Laptop, sshd: Sshd) -> None:
    (laptop.home / ".ssh" / "known_hosts").write_text(sshd.host_key_line())
    laptop.ssh_config("Include config.d/*\n")
    write(laptop.home / ".ssh" / "config.d" / "cluster", block("included", sshd, sshd.client_key))
    laptop.profiles("included")
    assert listed(laptop.cli_at("included", "ls", "--json")) == []


def test_a_host_key_in_a_custom_known_hosts_file_is_accepted_and_trust_writes_the_first(
    laptop: Laptop, sshd: Sshd, tmp_path: Path
) -> None:
    team = write(tmp_path / "team" / "known_hosts", sshd.host_key_line())  # the lab's shared file
    mine = laptop.home / ".ssh" / "hosts-mine"
    laptop.ssh_config(block("custom", sshd, sshd.client_key, f"UserKnownHostsFile ~/.ssh/hosts-mine {team}"))
    laptop.profiles("custom")
    assert listed(laptop.cli_at("custom", "ls", "--json")) == []
    assert not (laptop.home / ".ssh" / "known_hosts").exists() and not mine.exists()

    team.write_text("")  # known nowhere now: refused, every file named; trusted into the first file
    refused = laptop.cli_at("custom", "ls")
    assert refused.code == 2 and f"({mine}, {team})" in refused.err, refused.err
    trusted = laptop.cli_at("custom", "trust", sshd.fingerprint())
    assert trusted.code == 0, trusted.err
    assert mine.read_text() == sshd.host_key_line() and team.read_text() == ""
    assert listed(laptop.cli_at("custom", "ls", "--json")) == []


def test_a_stale_key_in_one_known_hosts_file_does_not_hide_the_right_one_in_another(
    laptop: Laptop, sshd: Sshd, tmp_path: Path
) -> None:
    """ssh accepts the host if any line of any file has its key; paramiko's lookup alone sees the first per type."""
    stale = keygen(tmp_path / "stale", "an old host key")
    kind, old = stale.with_suffix(".pub").read_text().split()[:2]
    first = write(laptop.home / ".ssh" / "known_hosts", f"[127.0.0.1]:{sshd.port} {kind} {old}\n")
    team = write(tmp_path / "team" / "known_hosts", sshd.host_key_line())
    laptop.ssh_config(block("stale", sshd, sshd.client_key, f"UserKnownHostsFile {first} {team}"))
    laptop.profiles("stale")
    assert listed(laptop.cli_at("stale", "ls", "--json")) == []

    team.write_text("")  # only the stale key left: changed, refused
    changed = laptop.cli_at("stale", "ls")
    assert changed.code == 2 and "HAS CHANGED" in changed.err, changed.err


def test_trust_into_a_known_hosts_file_that_cannot_be_written_names_it(laptop: Laptop, sshd: Sshd) -> None:
    """Root writes read-only files, so the file here is unwritable because its directory is a plain file."""
    blocker = write(laptop.home / ".ssh" / "not-a-dir", "")
    unwritable = blocker / "known_hosts"
    laptop.ssh_config(block("ro", sshd, sshd.client_key, f"UserKnownHostsFile {unwritable}"))
    laptop.profiles("ro")
    result = laptop.cli_at("ro", "trust", sshd.fingerprint())
    assert result.code == 2 and "Traceback" not in result.err, result.err
    assert f"{unwritable}: cannot write the key of [127.0.0.1]:{sshd.port}" in result.err, result.err
    assert "list a file you can write first" in result.err and "handshake" not in result.err


@contextlib.contextmanager
def ssh_agent(sock: Path, keys: list[Path]) -> Iterator[str]:
    """A real ssh-agent holding ``keys``, on ``sock``."""
    agent = subprocess.Popen(["ssh-agent", "-D", "-a", str(sock)], stdout=subprocess.PIPE, text=True)
    try:
        assert agent.stdout is not None
        assert "SSH_AUTH_SOCK" in agent.stdout.readline()  # it prints its socket once it listens
        env = {**os.environ, "SSH_AUTH_SOCK": str(sock)}
        for key in keys:
            subprocess.run(["ssh-add", "-q", str(key)], env=env, check=True, capture_output=True)
        listing = subprocess.run(["ssh-add", "-l"], env=env, capture_output=True, text=True, check=True)
        assert len(listing.stdout.splitlines()) == len(keys)
        yield str(sock)
    finally:
        agent.terminate()
        agent.wait(10)


def test_identities_only_skips_many_agent_keys_against_max_auth_tries_3(laptop: Laptop, tmp_path: Path) -> None:
    with contextlib.contextmanager(serve)(tmp_path / "strict", extra="MaxAuthTries 3") as strict:
        strangers = [keygen(tmp_path / f"agent{i}", f"agent key {i}") for i in range(5)]
        (laptop.home / ".ssh" / "known_hosts").write_text(strict.host_key_line())
        laptop.ssh_config(
            block("only", strict, strict.client_key, "IdentitiesOnly yes") + block("every", strict, strict.client_key)
        )
        laptop.profiles("only", "every")
        with ssh_agent(tmp_path / "agent.sock", strangers) as sock:
            laptop.agent = sock
            assert listed(laptop.cli_at("only", "ls", "--json")) == []
            # the check can fail: offered first, the agent's five keys use up the server's three tries
            every = laptop.cli_at("every", "ls")
            assert every.code == 1 and "Traceback" not in every.err
            assert "refused keys, too many for its MaxAuthTries? Set IdentitiesOnly yes" in every.err, every.err
            assert "Too many authentication failures" in strict.log()


@contextlib.contextmanager
def authorized(sshd: Sshd, keys: list[Path]) -> Iterator[None]:
    """``keys`` may log in too, for the block's length."""
    path = sshd.root / "authorized_keys"
    before = path.read_text()
    path.write_text(before + "".join(k.with_suffix(".pub").read_text() for k in keys))
    try:
        yield
    finally:
        path.write_text(before)


def test_identities_only_with_a_pub_file_or_an_encrypted_key_uses_the_agents_copy(
    laptop: Laptop, sshd: Sshd, tmp_path: Path
) -> None:
    """IdentityFile names the .pub of a key only the agent holds (1Password, a YubiKey), or a key with a passphrase
    and no .pub: the agent's copy is offered, nothing is loaded as a private key, and nothing is asked."""
    held = keygen(tmp_path / "held", "agent only")
    locked = keygen(tmp_path / "locked", "with a passphrase")
    expected = [fingerprint(held), fingerprint(locked)]
    (laptop.home / ".ssh" / "known_hosts").write_text(sshd.host_key_line())
    with authorized(sshd, [held, locked]), ssh_agent(tmp_path / "agent.sock", [held, locked]) as sock:
        held.unlink()  # only the public half is on disk
        subprocess.run(["ssh-keygen", "-q", "-p", "-P", "", "-N", "secret", "-f", str(locked)], check=True)
        locked.with_suffix(".pub").unlink()
        laptop.ssh_config(
            block("pub", sshd, held.with_suffix(".pub"), "IdentitiesOnly yes")
            + block("locked", sshd, locked, "IdentitiesOnly yes")
        )
        laptop.profiles("pub", "locked")
        laptop.agent = sock
        seen = len(sshd.log())
        assert listed(laptop.cli_at("pub", "ls", "--json")) == []
        assert listed(laptop.cli_at("locked", "ls", "--json")) == []
        accepted = re.findall(r"Accepted publickey for root from .* (SHA256:\S+)", sshd.log()[seen:])
        assert accepted == expected


def test_a_named_identity_file_that_is_missing_is_named_and_no_default_key_is_tried(laptop: Laptop, sshd: Sshd) -> None:
    (laptop.home / ".ssh" / "known_hosts").write_text(sshd.host_key_line())
    shutil.copy(sshd.client_key, laptop.home / ".ssh" / "id_ed25519")  # a default key the server would accept
    missing = laptop.home / ".ssh" / "gone"
    laptop.ssh_config(block("gone", sshd, missing))
    laptop.profiles("gone")
    result = laptop.cli_at("gone", "ls")
    assert result.code != 0 and f"IdentityFile not found: {missing}" in result.err, result.err


def test_a_jump_hosts_own_proxyjump_is_followed_through_a_real_sshd(laptop: Laptop, sshd: Sshd, tmp_path: Path) -> None:
    """a → (ProxyJump b) → (ProxyJump c): three logins, c's first; each alias logs in with its own key."""
    keys = {alias: keygen(tmp_path / f"key-{alias}", f"hop {alias}") for alias in "abc"}
    authorized = sshd.root / "authorized_keys"
    before = authorized.read_text()
    authorized.write_text(before + "".join(k.with_suffix(".pub").read_text() for k in keys.values()))
    (laptop.home / ".ssh" / "known_hosts").write_text(sshd.host_key_line())
    laptop.ssh_config(
        block("a", sshd, keys["a"], "ProxyJump b")
        + block("b", sshd, keys["b"], "ProxyJump c")
        + block("c", sshd, keys["c"])
    )
    laptop.profiles("a")
    seen = len(sshd.log())
    try:
        assert listed(laptop.cli_at("a", "ls", "--json")) == []
    finally:
        authorized.write_text(before)
    fingerprints = {fingerprint(k): alias for alias, k in keys.items()}
    accepted = re.findall(r"Accepted publickey for root from \S+ port \d+ ssh2: \S+ (SHA256:\S+)", sshd.log()[seen:])
    assert [fingerprints.get(f, f) for f in accepted] == ["c", "b", "a"]


def fingerprint(key: Path) -> str:
    """The fingerprint of ``key`` (its .pub; ``key`` itself when it is the .pub)."""
    pub = key if key.suffix == ".pub" else key.with_suffix(".pub")
    out = subprocess.run(["ssh-keygen", "-l", "-f", str(pub)], capture_output=True, text=True)
    return out.stdout.split()[1]


@pytest.mark.parametrize(("ci", "code", "said"), [("true", 1, "CI=true: "), ("", 0, "")])
def test_without_sshd_the_remote_tests_fail_under_ci_and_skip_elsewhere(
    ci: str, code: int, said: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A CI run that passes with the remote tests skipped would say nothing about remote mode."""
    env = {**os.environ, "CI": ci, "PATH": "/nonexistent"}  # no ssh-keygen: the test sshd cannot be made
    monkeypatch.setenv("PATH", "/nonexistent")
    why = sshd_available()  # the reason given there, whichever part is checked first (no sshd, no ssh-keygen)
    assert why
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "-rs", __file__, "-k", "included_file"],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO,
        timeout=120,
    )
    assert proc.returncode == code, proc.stdout
    summary = proc.stdout.strip().splitlines()[-1]
    assert ("1 error" if ci else "1 skipped") in summary, proc.stdout
    assert said in proc.stdout and why.split(";")[0] in proc.stdout
