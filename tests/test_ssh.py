"""Per-target deploy keys (``ssh_key``) against a real sshd on 127.0.0.1, and the ssh
checks of ``deployhook check``.

The test's sshd has its own host key and accepts one generated deploy key; it serves
the test's repositories by their paths.  The operator's ``GIT_SSH_COMMAND`` points ssh
at the test's own known_hosts file (ssh reads ``~`` from the password database, not
``$HOME``), and deployhook adds the deploy key to it.
"""

from __future__ import annotations

import json
import os
import pwd
import shlex
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from deployhook.forges.delivery import Push
from deployhook.git.checkout import Checkout, git_environment
from deployhook.git.ssh import ssh_command, ssh_remote
from deployhook.settings import Config
from tests.helpers import (
    SECRET,
    ZERO,
    Repos,
    deliver_push,
    free_port,
    git,
    make_repos,
    start_daemon,
    write_config,
)
from tests.tools import require_tool

SBIN = "/usr/sbin:/usr/local/sbin:/sbin"


def _sshd_binary() -> str | None:
    return shutil.which("sshd", path=SBIN + ":" + os.environ.get("PATH", ""))


@dataclass
class Sshd:
    """A running sshd: its port, the authorised deploy key, a key it does not accept,
    the known_hosts file ssh is pointed at (empty at first), sshd's log and its
    authorized_keys file (read at each connection)."""

    port: int
    deploy_key: Path
    other_key: Path
    known_hosts: Path
    log: Path
    user: str
    authorized: Path

    def url(self, path: Path) -> str:
        return f"ssh://{self.user}@127.0.0.1:{self.port}{path}"

    def trust(self) -> None:
        """Add sshd's host key to the known_hosts file (as ``ssh-keyscan`` finds it)."""
        scan = subprocess.run(["ssh-keyscan", "-p", str(self.port), "127.0.0.1"],
                              capture_output=True, text=True, check=True, timeout=30)
        self.known_hosts.write_text(scan.stdout)

    def fingerprint(self, key: Path) -> str:
        out = subprocess.run(["ssh-keygen", "-lf", str(key)], capture_output=True, text=True,
                             check=True).stdout
        return out.split()[1]

    def accepted(self) -> list[str]:
        """The ``Accepted publickey`` lines of sshd's log."""
        return [line for line in self.log.read_text().splitlines()
                if "Accepted publickey" in line]


def _keygen(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", path.name, "-f",
                    str(path)], check=True)
    return path


@pytest.fixture
def sshd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Sshd]:
    binary = _sshd_binary()
    for tool in ("ssh", "ssh-keygen", "ssh-keyscan"):
        require_tool(shutil.which(tool), f"{tool} is not installed (Debian: openssh-client)")
    require_tool(binary, "sshd is not installed (Debian: openssh-server)")
    assert binary is not None
    if os.geteuid() == 0:
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # sshd's privilege separation
    home = tmp_path / "ssh"
    host_key = _keygen(home / "host_key")
    # A path git passes through a shell: the quoting of the key path must hold.
    deploy_key = _keygen(home / "deploy key's dir" / "id_ed25519")
    other_key = _keygen(home / "other" / "id_ed25519")
    authorized = home / "authorized_keys"
    authorized.write_text(Path(str(deploy_key) + ".pub").read_text())
    known_hosts = home / "known_hosts"
    known_hosts.write_text("")
    port = free_port()
    config = home / "sshd_config"
    config.write_text(
        f"Port {port}\nListenAddress 127.0.0.1\nHostKey {host_key}\n"
        f"AuthorizedKeysFile {authorized}\nStrictModes no\nPasswordAuthentication no\n"
        "KbdInteractiveAuthentication no\nUsePAM no\nPidFile none\nLogLevel INFO\n")
    log = home / "sshd.log"
    with log.open("wb") as out:
        proc = subprocess.Popen([binary, "-D", "-e", "-f", str(config)], stdout=out,
                                stderr=subprocess.STDOUT)
    try:
        _wait_for_port(port, proc, log)
        monkeypatch.setenv("GIT_SSH_COMMAND", (
            f"ssh -F /dev/null -o UserKnownHostsFile={shlex.quote(str(known_hosts))} "
            "-o BatchMode=yes -o ConnectTimeout=20"))
        yield Sshd(port, deploy_key, other_key, known_hosts, log,
                   pwd.getpwuid(os.geteuid()).pw_name, authorized)
    finally:
        proc.terminate()
        proc.wait(10)


def _wait_for_port(port: int, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"sshd exited {proc.returncode}: {log.read_text()}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise AssertionError(f"sshd did not listen on {port}: {log.read_text()}")


@pytest.fixture
def ssh_repos(tmp_path: Path, sshd: Sshd) -> Repos:
    """make_repos, with the deployed clone's remote and submodule reached over ssh."""
    (tmp_path / "repos").mkdir()
    repos = make_repos(tmp_path / "repos")
    git(repos.deployed, "remote", "set-url", "origin", sshd.url(repos.origin))
    git(repos.deployed, "config", "submodule.posts.url", sshd.url(repos.sub_origin))
    git(repos.deployed / "posts", "remote", "set-url", "origin", sshd.url(repos.sub_origin))
    sshd.trust()
    return repos


def push(after: str, ref: str = "refs/heads/main") -> Push:
    return Push(ref, ZERO, after, False, "octo-org/blog", "main", "octocat", "d-1")


# -- the ssh command -------------------------------------------------------------------

def test_ssh_command_adds_the_quoted_key_to_the_default_or_the_operators_command() -> None:
    assert ssh_command(30.0) == "ssh -o BatchMode=yes -o ConnectTimeout=30"
    assert ssh_command(30.0, "/k/id") == (
        "ssh -o BatchMode=yes -o ConnectTimeout=30 -i /k/id -o IdentitiesOnly=yes")
    assert ssh_command(5.0, "/a b/it's", own="ssh -F /etc/x") == (
        "ssh -F /etc/x -i '/a b/it'\"'\"'s' -o IdentitiesOnly=yes")
    assert shlex.split(ssh_command(5.0, "/a b/it's"))[-3] == "/a b/it's"


def test_git_environment_without_a_key_is_unchanged(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GIT_SSH_COMMAND", raising=False)
    assert git_environment(7.0)["GIT_SSH_COMMAND"] == "ssh -o BatchMode=yes -o ConnectTimeout=7"
    monkeypatch.setenv("GIT_SSH_COMMAND", "my-ssh")
    assert git_environment(7.0)["GIT_SSH_COMMAND"] == "my-ssh"
    assert git_environment(7.0, "/k")["GIT_SSH_COMMAND"] == "my-ssh -i /k -o IdentitiesOnly=yes"


@pytest.mark.parametrize(("url", "where"), [
    ("git@github.com:octo-org/blog.git", ("git", "github.com", None)),
    ("ssh://git@gitlab.example:2222/group/docs.git", ("git", "gitlab.example", 2222)),
    ("ssh://host/srv/repo", (None, "host", None)),
    ("git+ssh://u@h/x", ("u", "h", None)),
    ("[h.example:2200]:o/r", (None, "h.example", 2200)),
    ("https://github.com/octo-org/blog.git", None),
    ("file:///srv/origin.git", None),
    ("/srv/origin.git", None),
    ("./origin.git", None),
])
def test_ssh_remote(url: str, where: tuple[str | None, str, int | None] | None) -> None:
    found = ssh_remote(url)
    assert (found and (found.user, found.host, found.port)) == where


# -- git over ssh with a deploy key ----------------------------------------------------------

def test_fetch_and_submodule_update_use_the_deploy_key(ssh_repos: Repos, sshd: Sshd) -> None:
    sha = ssh_repos.commit_submodule("over ssh\n")
    co = Checkout(Config(repo_path=str(ssh_repos.deployed), ssh_key=str(sshd.deploy_key),
                         git_timeout=60.0))
    result = co.deploy("main", [push(sha)])
    assert result.ok, (result.reason, sshd.log.read_text())
    assert Repos.head(ssh_repos.deployed) == sha
    assert (ssh_repos.deployed / "posts" / "index.rst").read_text() == "over ssh\n"
    fingerprint = sshd.fingerprint(sshd.deploy_key)
    accepted = sshd.accepted()
    assert len(accepted) >= 2 and all(fingerprint in line for line in accepted), accepted
    assert ssh_repos.fetches() == 1  # the upload-pack wrapper ran behind sshd


def test_without_the_deploy_key_the_fetch_is_refused(ssh_repos: Repos, sshd: Sshd) -> None:
    sha = ssh_repos.commit()
    before = Repos.head(ssh_repos.deployed)
    for key in (str(sshd.other_key), None):
        co = Checkout(Config(repo_path=str(ssh_repos.deployed), ssh_key=key, git_timeout=60.0))
        result = co.deploy("main", [push(sha)])
        assert not result.ok
        assert "Permission denied (publickey)" in result.steps[-1].output, result.steps
        assert Repos.head(ssh_repos.deployed) == before
    assert sshd.accepted() == []


def test_clone_and_tag_listing_use_the_deploy_key(tmp_path: Path, sshd: Sshd) -> None:
    """A first clone in tags mode: ls-remote (the newest tag), clone, submodules."""
    (tmp_path / "repos").mkdir()
    repos = make_repos(tmp_path / "repos")
    sshd.trust()
    sha = repos.commit("release.txt")
    git(repos.pusher, "tag", "-a", "-m", "v2", "v2.0")
    git(repos.pusher, "push", "-q", "origin", "v2.0")
    target = tmp_path / "srv" / "site"
    co = Checkout(Config(repo_path=str(target), repo_url=sshd.url(repos.origin), tags="v*",
                         ssh_key=str(sshd.deploy_key), git_timeout=60.0))
    result = co.deploy("", [])
    assert result.ok, (result.reason, sshd.log.read_text())
    assert result.branch == "refs/tags/v2.0"
    assert git(target, "rev-parse", "HEAD") == sha
    assert [step.name for step in result.steps][:2] == ["list tags", "clone"]
    assert len(sshd.accepted()) >= 2


# -- deployhook check ----------------------------------------------------------------------

def _check(repos: Repos, secret: Path, **extra: object) -> subprocess.CompletedProcess[str]:
    config = write_config(repos.root / "config.py", repo_path=str(repos.deployed),
                          secret_file=str(secret), repository="octo-org/blog",
                          port=free_port(), **extra)
    return subprocess.run([sys.executable, "-m", "deployhook", "check", "--config",
                           str(config)], capture_output=True, text=True, timeout=120)


def _line(output: str, name: str) -> str:
    lines = output.splitlines()
    for index, line in enumerate(lines):
        if line[5:].startswith(name + " "):
            return "\n".join(lines[index:index + 2])
    raise AssertionError(f"no {name} line in:\n{output}")


def test_check_finds_an_unknown_host_key_and_its_fix_works(ssh_repos: Repos, sshd: Sshd,
                                                           tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_bytes(SECRET)
    secret.chmod(0o600)
    sshd.known_hosts.write_text("")  # as on a new server
    first = _check(ssh_repos, secret, ssh_key=str(sshd.deploy_key))
    assert first.returncode == 1, first.stdout
    line = _line(first.stdout, "host key")
    assert line.startswith("FAIL") and f"[127.0.0.1]:{sshd.port} is not known" in line
    fix = line.split("fix: ", 1)[1]
    scan = fix.split("  (", 1)[0]
    assert scan == (f"ssh-keyscan -p {sshd.port} 127.0.0.1 >> "
                    f"{shlex.quote(str(sshd.known_hosts))}")
    assert "ssh-keygen -lf -" in fix
    assert _line(first.stdout, "ssh_key").startswith("OK")
    remote = _line(first.stdout, "remote")
    assert remote.startswith("FAIL") and "Host key verification failed" in remote, remote

    subprocess.run(["sh", "-c", scan], check=True, capture_output=True, timeout=30)
    second = _check(ssh_repos, secret, ssh_key=str(sshd.deploy_key))
    assert second.returncode == 0, second.stdout
    assert _line(second.stdout, "host key").startswith("OK")
    assert _line(second.stdout, "remote").startswith("OK")


def test_check_refuses_a_deploy_key_open_to_others(ssh_repos: Repos, sshd: Sshd,
                                                    tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_bytes(SECRET)
    secret.chmod(0o600)
    sshd.deploy_key.chmod(0o644)
    result = _check(ssh_repos, secret, ssh_key=str(sshd.deploy_key))
    line = _line(result.stdout, "ssh_key")
    assert line.startswith("FAIL") and "mode 0644" in line and "ssh refuses" in line
    assert f"fix: chmod 600 {shlex.quote(str(sshd.deploy_key))}" in line
    remote = _line(result.stdout, "remote")  # indeed: ssh ignored the key
    assert remote.startswith("FAIL") and "bad permissions" in remote, remote
    missing = _check(ssh_repos, secret, ssh_key=str(tmp_path / "no-such-key"))
    assert _line(missing.stdout, "ssh_key").startswith("FAIL")
    assert "No such file" in _line(missing.stdout, "ssh_key")


def test_check_warns_of_a_key_an_https_remote_does_not_use(repos: Repos, tmp_path: Path
                                                            ) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_bytes(SECRET)
    secret.chmod(0o600)
    result = _check(repos, secret, ssh_key=str(tmp_path / "key"))
    assert _line(result.stdout, "ssh").startswith("WARN")
    assert "host key" not in result.stdout


# -- why a deploy over ssh failed --------------------------------------------------------

def _changed_host_key(sshd: Sshd) -> None:
    """known_hosts names another key for the server (as after a reinstall, or a man in
    the middle)."""
    key = Path(str(sshd.other_key) + ".pub").read_text().split()[:2]
    sshd.known_hosts.write_text(f"[127.0.0.1]:{sshd.port} {' '.join(key)}\n")


_SSH_FAILURES = [  # (what is wrong, how to make it so, what the reason must say)
    ("unknown host key", lambda sshd: sshd.known_hosts.write_text(""),
     "fetch failed: ssh: Host key verification failed. (the server's host key is not in "
     "known_hosts: run deployhook check)"),
    ("changed host key", _changed_host_key,
     "fetch failed: ssh: WARNING: REMOTE HOST IDENTIFICATION HAS CHANGED! (the server's "
     "host key differs from the one in known_hosts"),
    ("unauthorised key", lambda sshd: sshd.authorized.write_text(""),
     "Permission denied (publickey). (the server refused the key: add ssh_key's public "
     "key to the repository's deploy keys)"),
    ("key open to others", lambda sshd: sshd.deploy_key.chmod(0o644),
     "fetch failed: ssh: WARNING: UNPROTECTED PRIVATE KEY FILE! (ssh ignores a key with "
     "bad permissions, open to others: chmod 600 ssh_key)"),
]


def test_a_failed_ssh_fetch_says_why_in_the_answer_and_the_history(
        ssh_repos: Repos, sshd: Sshd, secret_file: Path) -> None:
    """Each way ssh refuses (host key unknown or changed, key refused, key file open to
    others) gives its own reason, ssh's line and what to do, in the webhook's answer
    and ``deployhook history``, not git's "Could not read from remote repository"."""
    daemon = start_daemon(ssh_repos, secret_file, ssh_key=str(sshd.deploy_key),
                          git_timeout=60.0)
    try:
        daemon.wait_ready()
        for n, (_, make, words) in enumerate(_SSH_FAILURES):
            sshd.trust()
            sshd.authorized.write_text(Path(str(sshd.deploy_key) + ".pub").read_text())
            sshd.deploy_key.chmod(0o600)
            make(sshd)
            status, body = deliver_push(daemon.url, ssh_repos.commit(), f"ssh-{n}")
            assert status == 500 and words in body["reason"], body
            assert "Could not read from remote repository" not in body["reason"]
    finally:
        daemon.stop()
    listed = subprocess.run([sys.executable, "-m", "deployhook", "history", "--json",
                             "--config", str(ssh_repos.root / "config.py")],
                            capture_output=True, text=True, timeout=60, check=True)
    reasons = [run["reason"] for run in json.loads(listed.stdout)["runs"]]
    for _, _, words in _SSH_FAILURES:
        assert any(words in reason for reason in reasons), (words, reasons)
