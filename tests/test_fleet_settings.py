"""Fleet settings and the pure parts of the fleet's state (no Redis needed)."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import pytest

from deployhook import settings
from deployhook.errors import ConfigError
from deployhook.fleet.checks import BadEntry, check_desired, check_outcome
from deployhook.fleet.credentials import fleet_key, masked, password
from deployhook.fleet.decide import states, summary
from deployhook.fleet.entries import Desired, Outcome
from deployhook.fleet.keys import HEARTBEAT_TTL

KEY = b"k" * 64
SHA = "a" * 40


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


def test_the_fleet_key_is_required_with_redis_url_and_read_from_a_credential(
        tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="redis_url needs fleet_key_file"):
        settings.load(None, environ={"DEPLOYHOOK_REDIS_URL": "redis://h/0",
                                     "DEPLOYHOOK_FLEET_KEY_FILE": "None"})
    (tmp_path / "fleet-key").write_text("# the fleet's key\n" + "f" * 64 + "\n")
    config = settings.load(None, environ={"CREDENTIALS_DIRECTORY": str(tmp_path)})
    assert config.fleet_key_file == str(tmp_path / "fleet-key")
    assert fleet_key(config.fleet_key_file) == b"f" * 64
    assert settings.load(None, environ={}).fleet_key_file == str(
        Path.cwd() / "fleet-key.txt")


@pytest.mark.parametrize(("text", "words"), [
    (None, "cannot be read"), ("\n# only a comment\n", "holds no key"),
    ("short\n", "holds no key of 32 characters")])
def test_a_missing_empty_or_short_fleet_key_is_a_config_error(
        tmp_path: Path, text: str | None, words: str) -> None:
    path = tmp_path / "fleet-key.txt"
    if text is not None:
        path.write_text(text)
    with pytest.raises(ConfigError, match=words) as exc:
        fleet_key(str(path))
    assert "deployhook init" in str(exc.value)


def signed_desired(**changes: object) -> dict[str, str]:
    """A valid desired state's hash fields, signed with KEY, then ``changes`` applied."""
    desired = Desired("site", SHA, "refs/heads/main", "d-1", "web1 (push by octocat)",
                      time=1700000000.5, generation=7)
    return {**desired.fields(KEY), **{k: str(v) for k, v in changes.items()}}


@pytest.mark.parametrize(("changes", "key", "target", "words"), [
    ({"sha": "../../../../admin/users?promote=1#"}, KEY, "site", "sha is not"),
    ({"sha": "A" * 40}, KEY, "site", "sha is not"),
    ({"ref": "refs/heads/../x"}, KEY, "site", "ref is not"),
    ({"ref": "refs/heads/" + "x" * 300}, KEY, "site", "ref is not"),
    ({"kind": "shell"}, KEY, "site", "kind is not"),
    ({"generation": "abc"}, KEY, "site", "generation is not"),
    ({"generation": str(2 ** 60)}, KEY, "site", "generation is not"),
    ({"time": "nan"}, KEY, "site", "time is not"),
    ({"by": "x" * 201}, KEY, "site", "by is missing or longer"),
    ({"sig": ""}, KEY, "site", "not signed"),
    ({}, b"o" * 64, "site", "not signed"),  # another fleet's key
    ({}, KEY, "other", "not signed"),  # another target's desired state
    ({"generation": "8"}, KEY, "site", "not signed"),  # a generation bumped by a stranger
])
def test_a_desired_state_is_checked_like_a_delivery_and_signed(
        changes: dict[str, str], key: bytes, target: str, words: str) -> None:
    assert check_desired("site", signed_desired(), KEY).generation == 7
    with pytest.raises(BadEntry, match=words):
        check_desired(target, signed_desired(**changes), key)


@pytest.mark.parametrize(("node", "changes", "words"), [
    ("web1", {"generation": "abc"}, "generation is not"),
    ("web1", {"generation": True}, "generation is not"),
    ("web1", {"head": "../x"}, "sha or head"),
    ("web1", {"reason": "x" * 301}, "reason not a string"),
    ("web1", {"extra": 1}, "not an object of exactly"),
    ("web2", {}, "node is not the field"),
    ("web 1", {"node": "web 1"}, "not a node name"),
    ("web1", {"sig": "0" * 64}, "not signed"),
])
def test_an_outcome_is_checked_and_signed(node: str, changes: dict[str, object],
                                          words: str) -> None:
    import json

    outcome = Outcome("web1", 7, SHA, SHA, True, "deployed", 1700000000.5)
    good = json.loads(outcome.dumps(KEY, "site"))
    assert check_outcome("site", "web1", json.dumps(good), KEY) == outcome
    with pytest.raises(BadEntry, match=words):
        check_outcome("site", node, json.dumps({**good, **changes}), KEY)


def test_fleet_switch_and_redis_ca_file_are_checked() -> None:
    """``fleet_switch`` is "together" (the default) or "each"; ``redis_ca_file`` needs
    a rediss:// URL."""
    assert settings.load(None, environ={}).fleet_switch == "together"
    assert settings.load(None, environ={"DEPLOYHOOK_FLEET_SWITCH": "each"}
                         ).fleet_switch == "each"
    with pytest.raises(ConfigError, match="fleet_switch"):
        settings.load(None, environ={"DEPLOYHOOK_FLEET_SWITCH": "one by one"})
    with pytest.raises(ConfigError, match="redis_ca_file needs a rediss://"):
        settings.load(None, environ={"DEPLOYHOOK_REDIS_URL": "redis://h:6379/0",
                                     "DEPLOYHOOK_REDIS_CA_FILE": "/ca.pem"})


def _beat(*targets: str) -> dict[str, object]:
    return {"targets": dict.fromkeys(targets), "time": 1.0}


@pytest.mark.parametrize(("ready", "outcomes", "beats", "verdict", "why"), [
    ({"a": 1, "b": 1}, {}, {"a": _beat("t"), "b": _beat("t")}, "switch", ""),
    ({"a": 1}, {}, {"a": _beat("t"), "b": _beat("t")}, "wait", "b"),
    ({"a": 1}, {}, {"a": _beat("t"), "b": _beat("other")}, "switch", ""),  # b: not t
    ({"a": 1, "b": 0}, {}, {"a": _beat("t"), "b": _beat("t")}, "wait", "b"),  # old one
    ({"a": 1}, {"b": (1, True)}, {"a": _beat("t"), "b": _beat("t")}, "switch", ""),
    ({"a": 1}, {"b": (1, False)}, {"a": _beat("t"), "b": _beat("t")}, "abort",
     "not switched: b failed (boom)"),
])
def test_the_fleet_switches_once_every_live_node_is_ready(
        ready: dict[str, int], outcomes: dict[str, tuple[int, bool]],
        beats: dict[str, dict[str, object]], verdict: str, why: str) -> None:
    """:func:`decide`: every live node of the target ready (or deployed) for the
    generation: switch; one failed it: abort naming it; else wait naming who."""
    from deployhook.fleet.decide import decide
    from deployhook.fleet.entries import Desired, Outcome

    sha = "a" * 40
    desired = Desired("t", sha, "refs/heads/main", "d", "x", generation=1)
    built = {n: Outcome(n, g, sha, None, True, "built") for n, g in ready.items()}
    done = {n: Outcome(n, g, sha, sha, ok, "" if ok else "boom")
            for n, (g, ok) in outcomes.items()}
    assert decide("t", desired, built, done, beats) == (verdict, why)
