"""The daemon as users run it: ``python -m deployhook`` as a real subprocess."""

from __future__ import annotations

import stat
import subprocess
import sys
import time
from pathlib import Path

from tests.helpers import (
    SECRET,
    Daemon,
    Repos,
    deliver_push,
    http,
    start_daemon,
    write_config,
)


def cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "deployhook", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=60)


def deliver(daemon: Daemon, sha: str, delivery: str = "d-1") -> tuple[int, dict]:
    return deliver_push(daemon.url, sha, delivery)


def wait_for(predicate, timeout: float = 20.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


def test_init_writes_a_random_secret_once(tmp_path: Path) -> None:
    """`deployhook init` creates a 0600 random secret, keeps it on a rerun, never prints it."""
    write_config(tmp_path / "config.py")
    first = cli("init", "--config", "config.py", cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    secret = (tmp_path / "secret.txt").read_text().strip()
    assert len(secret) == 64 and int(secret, 16) >= 0
    assert stat.S_IMODE((tmp_path / "secret.txt").stat().st_mode) == 0o600
    assert secret not in first.stdout + first.stderr
    second = cli("init", "--config", "config.py", cwd=tmp_path)
    assert "keeping the existing secret" in second.stdout
    assert (tmp_path / "secret.txt").read_text().strip() == secret


def test_unknown_key_stops_serve_with_its_name(tmp_path: Path) -> None:
    """A typo in config.py is an error at start-up that names the key."""
    write_config(tmp_path / "config.py", pull_stratgy="reset")
    result = cli("serve", "--config", "config.py", cwd=tmp_path)
    assert result.returncode == 2
    assert "pull_stratgy" in result.stderr and "pull_strategy" in result.stderr


def test_not_a_checkout_stops_serve(tmp_path: Path) -> None:
    write_config(tmp_path / "config.py", repo_path=str(tmp_path / "nowhere"))
    result = cli("serve", "--config", "config.py", cwd=tmp_path)
    assert result.returncode == 1
    assert "not a git checkout" in result.stderr


def test_reload_none_keeps_the_process(repos: Repos, secret_file: Path) -> None:
    daemon = start_daemon(repos, secret_file, reload="none")
    try:
        started = daemon.wait_ready()["started"]
        status, body = deliver(daemon, repos.commit())
        assert status == 200, body
        time.sleep(0.5)
        assert daemon.proc.poll() is None
        assert daemon.wait_ready()["started"] == started
    finally:
        assert daemon.stop() == 0


def test_reload_exit_ends_cleanly_after_answering(repos: Repos, secret_file: Path) -> None:
    """`reload = "exit"`: the delivery is answered, then the process exits 0."""
    daemon = start_daemon(repos, secret_file, reload="exit")
    daemon.wait_ready()
    sha = repos.commit()
    status, body = deliver(daemon, sha)
    assert status == 200 and body["head"] == sha
    assert daemon.proc.wait(20) == 0
    assert "stopped" in daemon.log()


def test_autoreload_reexecutes_after_a_deploy(repos: Repos, secret_file: Path) -> None:
    """`reload = "autoreload"`: same PID, new process image serving the new commit."""
    daemon = start_daemon(repos, secret_file, reload="autoreload")
    try:
        before = daemon.wait_ready()
        sha = repos.commit()
        status, body = deliver(daemon, sha)
        assert status == 200, body

        def reloaded() -> bool:
            try:
                health = http("GET", daemon.url + "/health", timeout=2)[1]
            except OSError:
                return False
            return health["started"] != before["started"]

        assert wait_for(reloaded), daemon.log()
        after = daemon.wait_ready()
        assert after["pid"] == before["pid"] and after["head"] == sha
        assert "re-executing" in daemon.log()
        # A delivery for the same commit after the reload: already deployed, no reload loop.
        status, body = deliver(daemon, sha, delivery="d-2")
        assert status == 200 and body["reason"].startswith("already deployed")
    finally:
        assert daemon.stop() == 0


def test_sigterm_stops_cleanly(repos: Repos, secret_file: Path) -> None:
    daemon = start_daemon(repos, secret_file, reload="none")
    daemon.wait_ready()
    assert daemon.stop() == 0
    assert "stopped" in daemon.log()
    assert SECRET.decode() not in daemon.log()
