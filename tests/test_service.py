"""deployhook as a service: systemd notifications, socket activation, signals, `check`.

The daemon runs as a real subprocess; notifications arrive on a real datagram
socket the test creates (man sd_notify; ../shared/REFERENCE.md, "systemd").
"""

from __future__ import annotations

import itertools
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import (
    REPOSITORY,
    SECRET,
    Repos,
    deliver_push,
    free_port,
    git,
    http,
    start_daemon,
    write_config,
)
from tests.tools import require_tool

ROOT = Path(__file__).parents[1]


class NotifyListener:
    """A datagram socket like systemd's, recording (time, fields) per message."""

    def __init__(self, address: str, bind_to: str | bytes) -> None:
        self.address = address
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(bind_to)
        self.sock.settimeout(0.2)
        self.messages: list[tuple[float, dict[str, str]]] = []
        self._stop = False
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        while not self._stop:
            try:
                data = self.sock.recv(4096)
            except TimeoutError:
                continue
            fields = dict(line.split("=", 1) for line in data.decode().splitlines() if "=" in line)
            self.messages.append((time.monotonic(), fields))

    def wait_for(self, key: str, value: str | None = None, timeout: float = 20,
                 contains: str = "") -> dict[str, str]:
        deadline = time.monotonic() + timeout
        seen = 0
        while time.monotonic() < deadline:
            for _, fields in self.messages[seen:]:
                if key in fields and (value is None or fields[key] == value) \
                        and contains in fields[key]:
                    return fields
            time.sleep(0.01)
        raise AssertionError(f"no {key}={value or contains!r} in {self.messages}")

    def wait_count(self, key: str, value: str, count: int, timeout: float = 20) -> list[float]:
        """Wait until ``count`` messages have set ``key=value``; when each came."""
        deadline = time.monotonic() + timeout
        while True:
            times = [t for t, fields in list(self.messages) if fields.get(key) == value]
            if len(times) >= count:
                return times
            assert time.monotonic() < deadline, f"{len(times)} of {count} {key}={value}"
            time.sleep(0.01)

    def close(self) -> None:
        self._stop = True
        self._thread.join()
        self.sock.close()


@pytest.fixture(params=["path", "abstract"])
def listener(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[NotifyListener]:
    if request.param == "path":
        path = str(tmp_path / "notify.sock")
        result = NotifyListener(path, path)
    else:
        name = f"deployhook-test-{uuid.uuid4().hex}"
        result = NotifyListener("@" + name, b"\0" + name.encode())
    yield result
    result.close()




def test_notifications(repos: Repos, secret_file: Path, listener: NotifyListener) -> None:
    """READY once the port accepts, WATCHDOG at half WATCHDOG_USEC, STATUS, STOPPING."""
    daemon = start_daemon(repos, secret_file, env={"NOTIFY_SOCKET": listener.address,
                                            "WATCHDOG_USEC": "400000"})
    try:
        ready = listener.wait_for("READY", "1")
        with socket.create_connection(("127.0.0.1", daemon.port), timeout=1):
            pass  # the port accepts as soon as READY=1 has been sent
        assert f"127.0.0.1:{daemon.port}" in ready["STATUS"]
        assert ready["MAINPID"] == str(daemon.proc.pid)
        pings = listener.wait_count("WATCHDOG", "1", 6)
        gaps = sorted(b - a for a, b in itertools.pairwise(pings))
        assert len(pings) >= 5, pings
        assert 0.15 <= gaps[len(gaps) // 2] <= 0.3, gaps  # every 0.2 s: half of 0.4 s

        sha = repos.commit()
        assert deliver_push(daemon.url, sha)[0] == 200
        listener.wait_for("STATUS", contains="last deploy")
        daemon.proc.send_signal(signal.SIGTERM)
        listener.wait_for("STOPPING", "1")
        assert daemon.proc.wait(20) == 0
    finally:
        daemon.stop()


def test_socket_activation(repos: Repos, secret_file: Path) -> None:
    """Started by systemd-socket-activate: serves on the passed socket, never binds its own."""
    activate = shutil.which("systemd-socket-activate")
    require_tool(activate, "systemd-socket-activate is not installed (Debian package systemd)")
    port, unusable = free_port(), free_port()
    config = write_config(repos.root / "config.py", port=unusable, repo_path=str(repos.deployed),
                          secret_file=str(secret_file), repository=REPOSITORY, reload="none")
    env_names = ["PATH", "HOME", "GIT_CONFIG_GLOBAL", "GIT_CONFIG_NOSYSTEM", "PYTHONPATH"]
    passed = [f"--setenv={name}" for name in env_names if name in os.environ]
    log = (repos.root / "activated.log").open("wb")
    proc = subprocess.Popen(
        [activate, "--listen", f"127.0.0.1:{port}", *passed, sys.executable, "-m",
         "deployhook", "serve", "--config", str(config)],
        stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 20
        while True:
            try:
                assert http("GET", url + "/health", timeout=5)[0] == 200
                break
            except OSError:
                assert time.monotonic() < deadline, (repos.root / "activated.log").read_text()
                time.sleep(0.1)
        sha = repos.commit()
        status, body = deliver_push(url, sha)
        assert status == 200 and body["head"] == sha
        with pytest.raises(OSError):
            socket.create_connection(("127.0.0.1", unusable), timeout=1).close()
    finally:
        proc.terminate()
        assert proc.wait(20) == 0
        log.close()


def test_sigterm_lets_the_running_deploy_finish(repos: Repos, secret_file: Path) -> None:
    """SIGTERM during a 2 s fetch: the delivery gets its 200, exit 0, checkout sound."""
    daemon = start_daemon(repos, secret_file)
    daemon.wait_ready()
    sha = repos.commit()
    repos.slow(2)
    answers: list[tuple[int, dict]] = []
    sender = threading.Thread(target=lambda: answers.append(deliver_push(daemon.url, sha)))
    sender.start()
    deadline = time.monotonic() + 10
    while repos.fetches() == 0 and time.monotonic() < deadline:
        time.sleep(0.02)  # the fetch has started
    daemon.proc.send_signal(signal.SIGTERM)
    sender.join(30)
    assert answers and answers[0][0] == 200, answers
    assert daemon.proc.wait(30) == 0
    assert git(repos.deployed, "rev-parse", "HEAD") == sha
    assert not (repos.deployed / ".git" / "index.lock").exists()
    git(repos.deployed, "fsck", "--no-progress")
    assert git(repos.deployed, "status", "--porcelain") == ""
    assert "stopped" in daemon.log()


def test_sighup_rereads_the_config(repos: Repos, secret_file: Path) -> None:
    """SIGHUP applies a changed config.py; a broken one is logged and the old one kept."""
    daemon = start_daemon(repos, secret_file)
    try:
        daemon.wait_ready()
        config = repos.root / "config.py"
        config.write_text(config.read_text() + "repository = 'octo-org/site'\n")
        daemon.proc.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 10
        while http("GET", daemon.url + "/health")[1]["repository"] != "octo-org/site":
            assert time.monotonic() < deadline, daemon.log()
            time.sleep(0.05)
        assert "configuration re-read" in daemon.log()
        status, body = deliver_push(daemon.url, repos.commit())
        assert status == 403 and "octo-org/site" in body["reason"]

        config.write_text(config.read_text() + "pull_stratgy = 'reset'\n")
        daemon.proc.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 10
        while "configuration rejected" not in daemon.log():
            assert time.monotonic() < deadline, daemon.log()
            time.sleep(0.05)
        assert "pull_stratgy" in daemon.log()
        assert daemon.proc.poll() is None
        assert http("GET", daemon.url + "/health")[1]["repository"] == "octo-org/site"
        assert SECRET.decode() not in daemon.log()
    finally:
        assert daemon.stop() == 0


def test_shipped_units_verify(tmp_path: Path) -> None:
    """`systemd-analyze verify` accepts the shipped unit files.

    verify insists that ExecStart= exists, so the copy checked here points it at
    the deployhook command installed for these tests; nothing else is changed.
    """
    analyze = shutil.which("systemd-analyze")
    require_tool(analyze, "systemd-analyze is not installed (Debian package systemd)")
    command = shutil.which("deployhook") or str(Path(sys.executable).parent / "deployhook")
    units = []
    for unit in (ROOT / "contrib" / "systemd").glob("deployhook.*"):
        text = unit.read_text().replace("/opt/deployhook/bin/deployhook", command)
        (tmp_path / unit.name).write_text(text)
        units.append(str(tmp_path / unit.name))
    assert len(units) == 2
    result = subprocess.run([analyze, "verify", *units], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stderr.strip() == "", result.stderr


def check(config: Path) -> tuple[int, str]:
    result = subprocess.run([sys.executable, "-m", "deployhook", "check", "--config",
                             str(config)], capture_output=True, text=True, timeout=60, cwd=ROOT)
    return result.returncode, result.stdout + result.stderr


def test_check_good_setup(repos: Repos, secret_file: Path) -> None:
    secret_file.chmod(0o600)
    start_config = write_config(repos.root / "config.py", port=free_port(),
                                repo_path=str(repos.deployed), secret_file=str(secret_file),
                                repository=REPOSITORY)
    status, out = check(start_config)
    assert status == 0, out
    for name in ("config", "secret", "checkout", "repository", "remote", "listen"):
        assert any(line.startswith("OK") and f" {name} " in line for line in out.splitlines()), out
    assert "FAIL" not in out and "WARN" not in out
    assert SECRET.decode() not in out


@pytest.mark.parametrize("fault", [
    "bad key", "no secret", "empty secret", "not a checkout", "wrong branch",
    "unreachable remote", "missing branch", "port in use",
])
def test_check_reports_each_failure(repos: Repos, secret_file: Path, fault: str) -> None:
    """Each broken part is a FAIL line with a fix hint, and the exit status is 1."""
    values: dict[str, object] = {"port": free_port(), "repo_path": str(repos.deployed),
                                 "secret_file": str(secret_file), "repository": REPOSITORY}
    holder = None
    if fault == "bad key":
        values["submodule"] = False
    elif fault == "no secret":
        secret_file.unlink()
    elif fault == "empty secret":
        secret_file.write_text("\n")
    elif fault == "not a checkout":
        values["repo_path"] = str(repos.root / "nowhere")
    elif fault == "wrong branch":
        git(repos.pusher, "push", "-q", "origin", "HEAD:refs/heads/production")
        values["branch"] = "production"
    elif fault == "unreachable remote":
        repos.origin.rename(repos.root / "gone.git")
    elif fault == "missing branch":
        git(repos.deployed, "checkout", "-q", "-b", "staging")
    elif fault == "port in use":
        holder = socket.socket()
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        values["port"] = holder.getsockname()[1]
    try:
        status, out = check(write_config(repos.root / "config.py", **values))
    finally:
        if holder is not None:
            holder.close()
    assert status == 1, out
    fails = [line for line in out.splitlines() if line.startswith("FAIL")]
    assert len(fails) == 1, out
    assert "fix:" in out


def test_check_warns_about_a_readable_secret(repos: Repos, secret_file: Path) -> None:
    secret_file.chmod(0o644)
    status, out = check(write_config(repos.root / "config.py", port=free_port(),
                                     repo_path=str(repos.deployed),
                                     secret_file=str(secret_file), repository=REPOSITORY))
    assert status == 0, out
    assert "WARN secret" in out and "chmod 600" in out
