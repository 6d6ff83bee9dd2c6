"""The servers under test, each a process group the benchmark starts and always kills.

- deployhook: ``python -m deployhook serve`` on the fixtures' deployed clone;
- blocking: ``bench/blocking_server.py`` (pull and submodule update inside the request);
- seed: ``bench/seed_server.py`` (the project's original design: GitPython in a
  ThreadPoolExecutor, one long-lived ``git.Repo`` with its cat-file helpers);
  seed-gitpython the same with GitPython's ``submodule_update`` (not run by default);
- webhook: Debian's ``webhook`` (adnanh/webhook) running the usual deploy script.
"""

from __future__ import annotations

import compileall
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import IO
from urllib.parse import urlsplit

from fixtures import REPOSITORY, SECRET, Repos

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
_LIVE: list[subprocess.Popen[bytes]] = []  # every process group started and not yet reaped


def free_port() -> int:
    """A free TCP port on 127.0.0.1."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def request(method: str, url: str, body: bytes | None = None,
            headers: dict[str, str] | None = None,
            timeout: float = 30.0) -> tuple[int, bytes, float]:
    """One HTTP request (the URL's query string included) on a fresh connection: (status,
    body, seconds); status 0 on error."""
    parts = urlsplit(url)
    start = time.perf_counter()
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout)
    try:
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        conn.request(method, target, body=body, headers=headers or {})
        response = conn.getresponse()
        data = response.read()
        return response.status, data, time.perf_counter() - start
    except OSError as exc:
        return 0, str(exc).encode(), time.perf_counter() - start
    finally:
        conn.close()


def start_group(argv: list[str], log: Path, cwd: Path,
                env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    """Start ``argv`` in its own session (so its whole process group can be killed)."""
    out: IO[bytes] = log.open("ab")
    try:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, cwd=cwd,
                                env={**os.environ, **(env or {})}, start_new_session=True)
    finally:
        out.close()
    _LIVE.append(proc)
    return proc


def kill_group(proc: subprocess.Popen[bytes], grace: float = 10.0) -> None:
    """SIGTERM the process group, then SIGKILL it after ``grace`` seconds; reap."""
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            pass
        try:
            proc.wait(wait)
            break
        except subprocess.TimeoutExpired:
            continue
    try:  # stragglers in the group (git children) once the leader is gone
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    if proc in _LIVE:
        _LIVE.remove(proc)


def kill_all() -> None:
    """Kill every process group this benchmark started that is still alive."""
    for proc in list(_LIVE):
        kill_group(proc, grace=3.0)


class Target:
    """A server under test: where to POST deliveries and where to GET cheaply."""

    name = ""
    label = ""

    def __init__(self, repos: Repos, port: int) -> None:
        self.repos, self.port = repos, port
        self.setup(repos.root)

    def setup(self, root: Path) -> None:
        """The log and the secret file in ``root``, where the server runs."""
        self.root = root
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = root / f"{self.name}.log"
        self.secret_file = root / "secret.txt"
        self.secret_file.write_bytes(SECRET + b"\n")
        self.secret_file.chmod(0o600)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def hook_url(self) -> str:
        raise NotImplementedError

    @property
    def health_url(self) -> str:
        raise NotImplementedError

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def argv(self) -> list[str]:
        raise NotImplementedError

    def env(self) -> dict[str, str]:
        """Extra environment for the server process."""
        return {"PYTHONPATH": str(ROOT)}

    def start(self, timeout: float = 30.0, interval: float = 0.05) -> None:
        """Start the server and wait until its cheap GET answers 200 (polled every
        ``interval`` seconds)."""
        self.proc = start_group(self.argv(), self.log, self.root, self.env())
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited {self.proc.returncode}: "
                                   f"{self.log.read_text(errors='replace')[-2000:]}")
            if request("GET", self.health_url, timeout=2)[0] == 200:
                return
            time.sleep(interval)
        raise RuntimeError(f"{self.name} not ready in {timeout}s")

    def stop(self) -> None:
        if self.proc is not None:
            kill_group(self.proc)
            self.proc = None


class Deployhook(Target):
    """``python -m deployhook serve`` with a config for the fixtures."""

    name, label = "deployhook", "deployhook"

    def start(self, timeout: float = 30.0, interval: float = 0.05) -> None:
        """As installed: the package's .pyc files are written first (pip writes them at
        install time).  Without them, as under PYTHONDONTWRITEBYTECODE, every start
        compiles the package again: slower, and about 1.3 MB more RSS here."""
        compileall.compile_dir(str(ROOT / "deployhook"), quiet=1)
        super().start(timeout, interval)

    @property
    def hook_url(self) -> str:
        return self.base + "/github"

    @property
    def health_url(self) -> str:
        return self.base + "/health"

    def argv(self) -> list[str]:
        config = self.repos.root / "config.py"
        values = {
            "address": "127.0.0.1", "port": self.port, "webhook_path": "/github",
            "secret_file": str(self.secret_file), "repo_path": str(self.repos.deployed),
            "repository": REPOSITORY, "reload": "none", "stop_timeout": 5.0,
            "state_db": str(self.repos.root / "deployhook.sqlite3"),
        }
        config.write_text("".join(f"{k} = {v!r}\n" for k, v in values.items()))
        return [sys.executable, "-m", "deployhook", "serve", "--config", str(config)]


class Blocking(Target):
    """bench/blocking_server.py."""

    name, label = "blocking", "blocking baseline"

    @property
    def hook_url(self) -> str:
        return self.base + "/hooks/deploy"

    @property
    def health_url(self) -> str:
        return self.base + "/health"

    def argv(self) -> list[str]:
        return [sys.executable, str(BENCH / "blocking_server.py"), "--port", str(self.port),
                "--repo", str(self.repos.deployed), "--secret-file", str(self.secret_file)]


class Seed(Blocking):
    """bench/seed_server.py (autoreload off: it would restart the process mid-run)."""

    name, label = "seed", "seed (GitPython, executor)"
    submodules = "command"  # repo.git.submodule("update", "--init", "--recursive")

    def argv(self) -> list[str]:
        return [sys.executable, str(BENCH / "seed_server.py"), "--port", str(self.port),
                "--repo", str(self.repos.deployed), "--secret-file", str(self.secret_file),
                "--submodules", self.submodules]


class SeedGitPython(Seed):
    """bench/seed_server.py with GitPython's own ``repo.submodule_update(recursive=True,
    init=True)``: a Repo, and its cat-file helpers, per submodule."""

    name, label = "seed-gitpython", "seed, GitPython submodule_update"
    submodules = "gitpython"


class Webhook(Target):
    """Debian's ``webhook`` with a hooks file running the usual deploy script."""

    name, label = "webhook", "webhook (adnanh)"

    @property
    def hook_url(self) -> str:
        return self.base + "/hooks/deploy"

    @property
    def health_url(self) -> str:
        return self.base + "/"  # answers "OK" without touching any hook

    def argv(self) -> list[str]:
        hooks = self.repos.root / "hooks.json"
        hooks.write_text(json.dumps([{
            "id": "deploy",
            "execute-command": str(self.repos.script),
            "command-working-directory": str(self.repos.deployed),
            "include-command-output-in-response": True,
            "include-command-output-in-response-on-error": True,
            "trigger-rule-mismatch-http-response-code": 202,
            "trigger-rule": {"and": [
                {"match": {"type": "payload-hmac-sha256", "secret": SECRET.decode(),
                           "parameter": {"source": "header", "name": "X-Hub-Signature-256"}}},
                {"match": {"type": "value", "value": "refs/heads/main",
                           "parameter": {"source": "payload", "name": "ref"}}},
            ]},
        }], indent=2))
        return ["webhook", "-nopanic", "-ip", "127.0.0.1", "-port", str(self.port),
                "-hooks", str(hooks)]


class DeployhookTargets(Deployhook):
    """One daemon serving a target per clone (``targets`` in config.py), all sharing one
    secret; deliveries go to ``/hooks/<hook>`` (default: the last target)."""

    def __init__(self, root: Path, clones: list[Path], port: int,
                 hook: str | None = None) -> None:
        self.clones = clones
        self.names = [clone.name for clone in clones]
        self.hook = hook or self.names[-1]
        self.name = self.label = f"deployhook-{len(clones)}-targets"
        self.port = port
        root.mkdir(parents=True, exist_ok=True)
        self.setup(root)  # no Repos: the clones are its fixtures

    @property
    def hook_url(self) -> str:
        return f"{self.base}/hooks/{self.hook}"

    def argv(self) -> list[str]:
        config = self.root / "config.py"
        values = {
            "address": "127.0.0.1", "port": self.port, "secret_file": str(self.secret_file),
            "reload": "none", "stop_timeout": 5.0,
            "state_db": str(self.root / "deployhook.sqlite3"),
            "targets": {name: {"repo_path": str(clone), "repository": f"octo-org/{name}"}
                        for name, clone in zip(self.names, self.clones, strict=True)},
        }
        config.write_text("".join(f"{k} = {v!r}\n" for k, v in values.items()))
        return [sys.executable, "-m", "deployhook", "serve", "--config", str(config)]


TARGETS: dict[str, type[Target]] = {"deployhook": Deployhook, "blocking": Blocking,
                                    "seed": Seed, "seed-gitpython": SeedGitPython,
                                    "webhook": Webhook}


def ensure_tools(tools: tuple[str, ...] = ("webhook", "wrk")) -> None:
    """Install ``tools`` (Debian's webhook and wrk) when missing (apt-get update first)."""
    missing = [pkg for pkg in tools if not _which(pkg)]
    if not missing:
        return
    print(f"installing {' '.join(missing)} with apt-get ...", flush=True)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update", "-qq"], check=True, env=env)
    subprocess.run(["apt-get", "install", "-y", "-qq", *missing], check=True, env=env)


def _which(name: str) -> bool:
    return any(os.access(os.path.join(d, name), os.X_OK)
               for d in os.environ.get("PATH", "").split(os.pathsep) if d)
