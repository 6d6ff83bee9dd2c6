"""Fleet settings and the pure parts of the fleet's state (no Redis needed)."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import pytest

from deployhook import settings
from deployhook.errors import ConfigError
from deployhook.service.fleetstate import (
    HEARTBEAT_TTL,
    Desired,
    Outcome,
    masked,
    password,
    states,
    summary,
)


def test_fleet_defaults_and_node_from_the_host_name() -> None:
    config = settings.load(None, environ={})
    assert config.redis_url is None and config.redis_password_file is None
    assert config.reconcile_interval == 60.0
    assert config.node == socket.gethostname().split(".")[0]


def test_fleet_settings_are_checked(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="redis_url must start with redis://") as exc:
        settings.load(None, environ={"DEPLOYHOOK_REDIS_URL": "http://u:hunter2@x"})
    assert "hunter2" not in str(exc.value)
    with pytest.raises(ConfigError, match="node must match"):
        settings.load(None, environ={"DEPLOYHOOK_NODE": "web 1"})
    with pytest.raises(ConfigError, match="reconcile_interval must be a positive"):
        settings.load(None, environ={"DEPLOYHOOK_RECONCILE_INTERVAL": "0"})
    config = settings.load(None, environ={"DEPLOYHOOK_REDIS_URL": "rediss://h:6380/1",
                                          "DEPLOYHOOK_NODE": "web-1.a"})
    assert config.redis_url == "rediss://h:6380/1" and config.node == "web-1.a"


def test_redis_password_from_a_systemd_credential(tmp_path: Path) -> None:
    (tmp_path / "redis-password").write_text("s3cret\n")
    config = settings.load(None, environ={"CREDENTIALS_DIRECTORY": str(tmp_path)})
    assert config.redis_password_file == str(tmp_path / "redis-password")
    assert password(config.redis_password_file) == "s3cret"
    assert settings.load(None, environ={"CREDENTIALS_DIRECTORY": str(tmp_path / "none")}
                         ).redis_password_file is None


def test_an_unreadable_or_empty_password_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot be read"):
        password(str(tmp_path / "missing"))
    (tmp_path / "empty").write_text("\n")
    with pytest.raises(ConfigError, match="is empty"):
        password(str(tmp_path / "empty"))
    assert password(None) is None


def test_the_urls_password_is_masked() -> None:
    assert masked("redis://:hunter2@db:6379/0") == "redis://***@db:6379/0"
    assert masked("rediss://app:hunter2@db/0") == "rediss://***@db/0"
    assert masked("redis://db:6379/0") == "redis://db:6379/0"


def test_without_redis_url_redis_is_never_imported(tmp_path: Path) -> None:
    """A hub (and the whole web app) without ``redis_url`` imports no redis module."""
    script = (
        "import sys, asyncio\n"
        "from deployhook import settings\n"
        "from deployhook.embed import DeployHook\n"
        "from deployhook.web.app import make_app\n"
        "from deployhook.cli import main\n"
        f"config = settings.load(None, environ={{'DEPLOYHOOK_REPO_PATH': {str(tmp_path)!r}}})\n"
        "hook = DeployHook(config); make_app(hook)\n"
        "print(sorted(m for m in sys.modules if m == 'redis' or m.startswith('redis.')))\n")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_the_answer_counts_live_nodes_names_failed_and_absent_ones() -> None:
    desired = Desired("default", "a" * 40, "refs/heads/main", "d-1", "web1", generation=3)
    beats = {n: {"targets": {"default": "a" * 40}} for n in ("web1", "web2", "web3")}
    ok = {n: Outcome(n, 3, "a" * 40, "a" * 40, True, "deployed") for n in beats}
    assert summary(states("default", desired, ok, beats, HEARTBEAT_TTL)) == (
        200, "deployed on 3/3 nodes")
    failed = {**ok, "web3": Outcome("web3", 3, "a" * 40, "b" * 40, False, "post_deploy failed")}
    status, reason = summary(states("default", desired, failed, beats, HEARTBEAT_TTL))
    assert status == 500
    assert reason == "deployed on 2/3 nodes; failed on web3 (post_deploy failed)"
    older = {**ok, "web2": Outcome("web2", 2, "c" * 40, "c" * 40, True, "deployed")}
    status, reason = summary(states("default", desired, older, beats, HEARTBEAT_TTL))
    assert status == 202 and "still deploying on web2" in reason
    gone = {k: v for k, v in beats.items() if k != "web3"}
    status, reason = summary(states("default", desired, ok, gone, HEARTBEAT_TTL))
    assert status == 200
    assert reason == (f"deployed on 2/2 nodes; absent (no heartbeat for {HEARTBEAT_TTL} s, "
                      "not counted): web3")


def test_deployhook_fleet_without_redis_url_says_so(tmp_path: Path) -> None:
    (tmp_path / "config.py").write_text("")
    out = subprocess.run([sys.executable, "-m", "deployhook", "fleet", "--config",
                          str(tmp_path / "config.py")], capture_output=True, text=True,
                         timeout=60, cwd=tmp_path)
    assert out.returncode == 2
    assert "redis_url is not set" in out.stderr
