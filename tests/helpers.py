"""Test helpers: real git repositories, signed deliveries, and a daemon subprocess.

Payload shapes follow GitHub's push/ping schemas (tests/fixtures/github, copied
from octokit/webhooks, MIT) and the facts in ../shared/REFERENCE.md.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from deployhook import forges
from deployhook.forges.delivery import check_size, parse_body
from deployhook.forges.events import present
from deployhook.forges.github import sign

FIXTURES = Path(__file__).parent / "fixtures" / "github"
SECRET = b"It's a Secret to Everybody"
REPOSITORY = "octo-org/blog"
ZERO = "0" * 40
# Every test daemon's status password (Daemon writes it to the default
# status_password_file, HookTestCase to its own), sent by http() unless told not to.
STATUS_PASSWORD = "test status password"


def isolate_git(home: Path, name: str = "Test Pusher", extra: str = "") -> None:
    """Point this process and its children at a throw-away global git config in
    ``home`` (an identity, file:// submodules allowed, ``extra`` appended), and drop
    any DEPLOYHOOK_* settings from the environment."""
    config = home / "gitconfig"
    config.write_text(
        f"[user]\n\tname = {name}\n\temail = pusher@example.com\n"
        '[protocol "file"]\n\tallow = always\n[init]\n\tdefaultBranch = main\n'
        "[advice]\n\tdetachedHead = false\n" + extra
    )
    os.environ["GIT_CONFIG_GLOBAL"] = str(config)
    os.environ["GIT_CONFIG_NOSYSTEM"] = "1"
    for key in [k for k in os.environ if k.startswith("DEPLOYHOOK_")]:
        del os.environ[key]


def git(cwd: Path | str, *args: str, check: bool = True) -> str:
    """Run the real git CLI and return its stdout, stripped."""
    proc = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True)
    if check and proc.returncode != 0:
        raise AssertionError(f"git {' '.join(args)} failed: {proc.stderr}")
    return proc.stdout.strip()


@dataclass
class Repos:
    """A bare origin with a submodule, the deployed clone, and a pusher clone."""

    root: Path
    origin: Path
    sub_origin: Path
    deployed: Path
    pusher: Path
    fetch_log: Path
    delay_file: Path

    def commit(self, name: str = "post.rst", text: str | None = None, push: bool = True) -> str:
        """Commit a file in the pusher clone (and push it); return the new SHA."""
        path = self.pusher / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text if text is not None else f"{name} at {time.time_ns()}\n")
        git(self.pusher, "add", name)
        git(self.pusher, "commit", "-q", "-m", f"update {name}")
        if push:
            git(self.pusher, "push", "-q", "origin", "HEAD:main")
        return self.head(self.pusher)

    def commit_submodule(self, text: str) -> str:
        """Commit in the submodule's origin and bump the gitlink upstream; return SHA."""
        sub = self.pusher / "posts"
        git(sub, "pull", "-q", "origin", "main")
        (sub / "index.rst").write_text(text)
        git(sub, "commit", "-q", "-am", "new post")
        git(sub, "push", "-q", "origin", "HEAD:main")
        git(self.pusher, "add", "posts")
        git(self.pusher, "commit", "-q", "-m", "bump posts")
        git(self.pusher, "push", "-q", "origin", "HEAD:main")
        return self.head(self.pusher)

    @staticmethod
    def head(repo: Path) -> str:
        return git(repo, "rev-parse", "HEAD")

    def fetches(self) -> int:
        """How many times the deployed clone fetched from origin."""
        return len(self.fetch_log.read_text().splitlines()) if self.fetch_log.exists() else 0

    def slow(self, seconds: float) -> None:
        """Make every fetch from origin wait ``seconds`` first."""
        self.delay_file.write_text(str(seconds))


def make_origin(root: Path) -> tuple[Path, Path, Path]:
    """origin.git with a submodule posts -> posts.git, and the pusher clone that made it;
    returns (origin, sub_origin, pusher)."""
    origin, sub_origin = root / "origin.git", root / "posts.git"
    for bare in (origin, sub_origin):
        git(root, "init", "-q", "--bare", "-b", "main", str(bare))
    seed = root / "seed-posts"
    git(root, "clone", "-q", sub_origin.as_uri(), str(seed))
    (seed / "index.rst").write_text("Hello\n=====\n")
    git(seed, "add", ".")
    git(seed, "commit", "-q", "-m", "first post")
    git(seed, "push", "-q", "origin", "HEAD:main")
    pusher = root / "pusher"
    git(root, "clone", "-q", origin.as_uri(), str(pusher))
    git(pusher, "checkout", "-q", "-b", "main")
    (pusher / "app.py").write_text("print('blog')\n")
    git(pusher, "add", ".")
    git(pusher, "submodule", "add", "-q", "-b", "main", sub_origin.as_uri(), "posts")
    git(pusher, "commit", "-q", "-m", "blog with posts")
    git(pusher, "push", "-q", "-u", "origin", "main")
    return origin, sub_origin, pusher


def counting_upload_pack(root: Path) -> tuple[Path, Path, Path]:
    """An upload-pack wrapper that logs each fetch and sleeps as long as the delay file
    says; returns (wrapper, fetch_log, delay_file).  Use it with
    ``git config remote.origin.uploadpack WRAPPER``."""
    fetch_log, delay_file = root / "fetches.log", root / "delay"
    wrapper = root / "upload-pack"
    wrapper.write_text(
        "#!/bin/sh\n"
        f"echo fetch >> '{fetch_log}'\n"
        f"[ -s '{delay_file}' ] && sleep \"$(cat '{delay_file}')\"\n"
        'exec git-upload-pack "$@"\n'
    )
    wrapper.chmod(0o755)
    return wrapper, fetch_log, delay_file


def make_repos(root: Path) -> Repos:
    """Build origin.git (with submodule posts -> posts.git), deployed/ and pusher/."""
    origin, sub_origin, pusher = make_origin(root)
    deployed = root / "deployed"
    git(root, "clone", "-q", "--recurse-submodules", origin.as_uri(), str(deployed))
    wrapper, fetch_log, delay_file = counting_upload_pack(root)
    git(deployed, "config", "remote.origin.uploadpack", str(wrapper))
    return Repos(root, origin, sub_origin, deployed, pusher, fetch_log, delay_file)


def push_payload(
    after: str,
    before: str = ZERO,
    ref: str = "refs/heads/main",
    repository: str = REPOSITORY,
    pusher: str = "octocat",
) -> dict[str, Any]:
    """A push payload with the fields of GitHub's push schema."""
    owner, name = repository.split("/")
    return {
        "ref": ref, "before": before, "after": after,
        "created": before == ZERO, "deleted": after == ZERO, "forced": False,
        "base_ref": None, "compare": f"https://github.com/{repository}/compare/x",
        "commits": [], "head_commit": None,
        "repository": {
            "id": 1, "name": name, "full_name": repository,
            "owner": {"login": owner, "name": owner},
            "clone_url": f"https://github.com/{repository}.git",
            "ssh_url": f"git@github.com:{repository}.git", "default_branch": "main",
        },
        "pusher": {"name": pusher, "email": f"{pusher}@example.com"},
        "sender": {"login": pusher, "id": 1},
    }


def signed(
    payload: dict[str, Any] | bytes,
    event: str = "push",
    secret: bytes = SECRET,
    delivery: str = "72d3162e-cc78-11e3-81ab-4c9367dc0958",
    form: bool = False,
) -> tuple[bytes, dict[str, str]]:
    """Compact body bytes and the headers GitHub would send with them."""
    raw = payload if isinstance(payload, bytes) else json.dumps(payload, separators=(",", ":"))
    raw = raw if isinstance(raw, bytes) else raw.encode()
    if form:
        from urllib.parse import urlencode

        raw = urlencode({"payload": raw.decode()}).encode()
    headers = {
        "X-GitHub-Event": event,
        "X-GitHub-Delivery": delivery,
        "User-Agent": "GitHub-Hookshot/044aadd",
        "Content-Type": "application/x-www-form-urlencoded" if form else "application/json",
        "X-Hub-Signature": sign(secret, raw, "sha1"),
        "X-Hub-Signature-256": sign(secret, raw, "sha256"),
    }
    return raw, headers


def read_github(headers: Mapping[str, str], body: bytes, secret: bytes = SECRET,
                limit: int = 26 * 1024 * 1024) -> forges.Event:
    """A GitHub delivery read as the daemon reads it: the size check, ``forges.verify``
    with ``secret``, ``parse_body``, then ``forges.parse``.

    Raises:
        DeliveryError: BodyTooLarge (413), SignatureError (401), UnsupportedMediaType
            (415) or MalformedDelivery (400), checked in that order.
    """
    check_size(len(body), limit)
    forges.verify("github", [secret], headers, body)
    return forges.parse("github", headers, parse_body(present(headers, "Content-Type"), body))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(check: Any, timeout: float = 30, what: str = "condition") -> Any:
    """Poll ``check()`` until it returns something true; return it.  Raises
    AssertionError naming ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"{what} not reached in {timeout} s")


def write_config(path: Path, **values: Any) -> Path:
    """Write a config.py with ``values`` as module-level settings, and ``poll_interval =
    0`` unless given (a test's daemon deploys what the test sends it; polling's own tests,
    test_poll.py, set it)."""
    values = {"poll_interval": 0, **values}
    path.write_text("".join(f"{key} = {value!r}\n" for key, value in values.items()))
    return path


def basic_auth(password: str = STATUS_PASSWORD, user: str = "deployhook") -> dict[str, str]:
    """The Authorization header of HTTP basic auth as ``user``."""
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


def http(method: str, url: str, body: bytes | None = None,
         headers: dict[str, str] | None = None, timeout: float = 30,
         auth: bool = True) -> tuple[int, dict[str, Any]]:
    """A blocking HTTP call from the test process; returns (status, JSON body).  It logs
    in with STATUS_PASSWORD (unless ``auth`` is False or ``headers`` log in otherwise)."""
    headers = {**(basic_auth() if auth else {}), **(headers or {})}
    request = urllib.request.Request(url, data=body, headers=headers, method=method)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, json.loads(response.read() or b"{}")
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")


class Daemon:
    """``python -m deployhook serve`` as a real subprocess, with its log captured."""

    #: the daemons the running test started (conftest shows their logs if it fails)
    started: ClassVar[list[Daemon]] = []

    def __init__(self, config: Path, port: int, env: dict[str, str] | None = None,
                 new_session: bool = False, command: list[str] | None = None) -> None:
        """``command``: what runs ``serve`` (default ``python -m deployhook``; the
        installed ``deployhook`` script puts no working directory on ``sys.path``)."""
        self.port = port
        password = config.parent / "status-password.txt"  # the default status_password_file
        if not password.exists():
            password.write_text(STATUS_PASSWORD + "\n")
        self.log_path = config.parent / f"daemon-{port}-{time.monotonic_ns()}.log"
        self._log = self.log_path.open("wb")
        Daemon.started.append(self)
        self.proc = subprocess.Popen(
            [*(command or [sys.executable, "-m", "deployhook"]), "serve", "--config",
             str(config)],
            stdout=self._log, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})},
            cwd=config.parent, start_new_session=new_session,
        )

    def kill_group(self) -> None:
        """SIGKILL the daemon and every process it started (git and its children); the
        daemon must have been started with ``new_session=True``."""
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)
        self._log.close()
        deadline = time.monotonic() + 10
        while _group_members(self.proc.pid):
            assert time.monotonic() < deadline, f"still alive: {_group_members(self.proc.pid)}"
            time.sleep(0.02)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_ready(self, timeout: float = 20) -> dict[str, Any]:
        """Wait until /health answers; return its body."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"daemon exited {self.proc.returncode}:\n{self.log()}")
            try:
                return http("GET", self.url + "/health", timeout=2)[1]
            except OSError:
                time.sleep(0.05)
        raise AssertionError(f"daemon not ready in {timeout}s:\n{self.log()}")

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()
        return self.proc.returncode


def _group_members(pgid: int) -> list[int]:
    """Live (not zombie) processes in process group ``pgid``."""
    members = []
    for proc in Path("/proc").iterdir():
        try:
            fields = (proc / "stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[2]) == pgid and fields[0] not in ("Z", "X"):
            members.append(int(proc.name))
    return members


def child_commands(pid: int) -> list[str]:
    """The command lines of the live children of process ``pid`` (from /proc)."""
    found = []
    for proc in Path("/proc").iterdir():
        try:
            fields = (proc / "stat").read_text().rsplit(")", 1)[1].split()
            if int(fields[1]) == pid and fields[0] not in ("Z", "X"):
                found.append((proc / "cmdline").read_bytes().replace(b"\0", b" ").decode())
        except (OSError, IndexError, ValueError):
            continue
    return sorted(found)


def open_files(pid: int) -> list[str]:
    """What process ``pid``'s file descriptors point to, sorted; sockets and pipes by
    kind only (``socket``, ``pipe``), as their inode numbers change with each one."""
    names = []
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue  # closed meanwhile
        names.append(target.split(":[", 1)[0] if ":[" in target else target)
    return sorted(names)


def rss_kib(pid: int) -> int:
    """Process ``pid``'s resident set size in KiB (VmRSS)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError(f"no VmRSS for {pid}")


def start_daemon(repos: Repos, secret_file: Path, port: int | None = None,
                 env: dict[str, str] | None = None, new_session: bool = False,
                 **extra: Any) -> Daemon:
    """Write ``repos.root/config.py`` deploying ``repos.deployed`` (repository
    REPOSITORY, reload "none" and poll_interval 0 unless given: polling's own tests set
    it) and start the daemon on ``port``."""
    port = port or free_port()
    values = {"port": port, "repo_path": str(repos.deployed), "secret_file": str(secret_file),
              "repository": REPOSITORY, "reload": "none", "poll_interval": 0, **extra}
    return Daemon(write_config(repos.root / "config.py", **values), port, env, new_session)


def deliver_push(url: str, sha: str, delivery: str = "d-1",
                 timeout: float = 30) -> tuple[int, dict[str, Any]]:
    """POST a signed push of ``sha`` to main to the daemon at ``url``; wait at most
    ``timeout`` seconds for the answer."""
    body, headers = signed(push_payload(sha), delivery=delivery)
    return http("POST", url + "/github", body, headers, timeout=timeout)


def start_targets(root: Path, targets: dict[str, dict[str, Any]], port: int | None = None,
                  env: dict[str, str] | None = None, **extra: Any) -> Daemon:
    """Write ``root/config.py`` declaring ``targets`` (name -> that target's settings;
    top level: reload "none", poll_interval 0 and ``extra``) and start the daemon on
    ``port``."""
    port = port or free_port()
    values = {"port": port, "reload": "none", "poll_interval": 0, **extra, "targets": targets}
    return Daemon(write_config(root / "config.py", **values), port, env)


def small_checkouts(root: Path, names: list[str]) -> dict[str, Path]:
    """A checkout per name under ``root/checkouts`` (main at one empty commit, no remote,
    no sample hooks: a few KiB each), copied from one ``git init``; name -> checkout.
    What a daemon with many targets needs when no test deploys them (a deploy needs an
    origin: :func:`make_repos`)."""
    seed = root / "checkout-seed"
    git(root, "init", "-q", "-b", "main", str(seed))
    git(seed, "commit", "-q", "--allow-empty", "-m", "a small site")
    for sample in (seed / ".git" / "hooks").glob("*.sample"):
        sample.unlink()
    folder = root / "checkouts"
    folder.mkdir()
    checkouts = {}
    for name in names:
        checkouts[name] = folder / name
        shutil.copytree(seed, checkouts[name], symlinks=True)
    return checkouts
