"""Fleet mode against a real Redis (Debian's redis-server) and three real daemons, each
with its own clone of one origin."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.fakeforge import TOKEN, FakeForge
from tests.fleet_helpers import Fleet, Node, RedisServer, make_node, redis_server, wait_for
from tests.helpers import (
    REPOSITORY,
    SECRET,
    basic_auth,
    deliver_push,
    git,
    http,
    isolate_git,
    make_origin,
)
from tests.test_tags import signed_tag
from tests.tools import require_tool

# response_timeout of a node whose answer waits on nodes that never report: the
# answer comes after it (the fixture's 30 s would make the test wait that long)
ANSWER_WITHIN = 10.0


@pytest.fixture
def world(tmp_path: Path) -> Iterator[tuple[Path, Path, Path, Path]]:
    """(root, origin, pusher, secret file) with git isolated."""
    require_tool(redis_server(), "redis-server is not installed (Debian: redis-server)")
    isolate_git(tmp_path)
    origin, _, pusher = make_origin(tmp_path)
    secret = tmp_path / "secret.txt"
    secret.write_text(SECRET.decode() + "\n")
    yield tmp_path, origin, pusher, secret


def commit(pusher: Path, text: str) -> str:
    from tests.helpers import git

    (pusher / "app.py").write_text(text)
    git(pusher, "commit", "-qam", f"change {text[:20]}")
    git(pusher, "push", "-q", "origin", "HEAD:main")
    return git(pusher, "rev-parse", "HEAD")


@contextlib.contextmanager
def three_nodes(world: tuple[Path, Path, Path, Path],
                **settings: dict[str, Any]) -> Iterator[Fleet]:
    """Redis and three started nodes, web1..web3, registered; ``settings`` maps a node's
    name to settings of its own (make_node's ``extra``).  Stops them all at the end."""
    root, origin, _, secret = world
    fleet = Fleet(RedisServer(root / "redis").start())
    try:
        for name in ("web1", "web2", "web3"):
            fleet.nodes.append(make_node(root, origin, name, fleet.redis, secret,
                                         **settings.get(name, {})).start())
        fleet.wait_registered()
        yield fleet
    finally:
        fleet.stop()


@pytest.fixture
def fleet(world: tuple[Path, Path, Path, Path]) -> Iterator[Fleet]:
    """Redis and three started nodes, web1..web3."""
    with three_nodes(world) as fleet:
        yield fleet


def cli(node: Node, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "deployhook", *args, "--config",
                           str(node.config)], capture_output=True, text=True,
                          cwd=node.root, env=os.environ, timeout=60)


def test_a_delivery_to_any_node_deploys_all_three(fleet: Fleet,
                                                  world: tuple[Path, ...]) -> None:
    """One delivery to web2: all three checkouts reach the commit, the answer lists the
    three nodes; a redelivery to web3 deploys nothing again; the status page, /deployments,
    /health and ``deployhook fleet`` show every node."""
    _, _, pusher, _ = world
    sha = commit(pusher, "print('v2')\n")
    web1, web2, web3 = fleet.nodes
    status, body = deliver_push(web2.url, sha, delivery="fleet-1")
    assert status == 200, body
    assert body["reason"] == "deployed on 3/3 nodes"
    assert set(body["fleet"]["nodes"]) == {"web1", "web2", "web3"}
    assert all(n["state"] == "deployed" and n["head"] == sha
               for n in body["fleet"]["nodes"].values())
    assert [n.head() for n in fleet.nodes] == [sha, sha, sha]
    runs = [n.runs() for n in fleet.nodes]
    status, again = deliver_push(web3.url, sha, delivery="fleet-1")
    assert status == 200 and again["replayed"] is True, again
    assert "deployed on 3/3 nodes" in again["reason"]
    assert [n.runs() for n in fleet.nodes] == runs
    from tests.helpers import http

    _, listing = http("GET", web1.url + "/deployments")
    nodes = listing["fleet"]["default"]["nodes"]
    assert {k: v["state"] for k, v in nodes.items()} == dict.fromkeys(
        ("web1", "web2", "web3"), "deployed")
    checked = cli(web1, "check")
    assert "OK   redis      redis://127.0.0.1:" in checked.stdout, checked.stdout
    assert "this server is node web1" in checked.stdout
    shown = cli(web1, "fleet")
    assert shown.returncode == 0, shown.stderr
    for name in ("web1", "web2", "web3"):
        assert f"{name}  deployed  {sha[:12]}" in shown.stdout
    assert json.loads(cli(web1, "fleet", "--json").stdout)["default"]["desired"]["sha"] == sha
    request = urllib.request.Request(web2.url + "/", headers=basic_auth())
    with urllib.request.urlopen(request, timeout=10) as response:
        page = response.read().decode()
    assert "<h2>Servers</h2>" in page
    for name in ("web1", "web2", "web3"):
        assert f'<td data-label="Node">{name}</td>' in page
    assert page.count('class="badge ok">deployed</span>') == 3
    assert "redis" in wait_for(lambda: http("GET", web3.url + "/health")[1].get("fleet"))
    assert fleet.redis.url in http("GET", web3.url + "/health")[1]["fleet"]["redis"]


def test_a_stopped_node_converges_after_restart(fleet: Fleet, world: tuple[Path, ...]) -> None:
    """web3 is stopped during five pushes: it is listed absent, not counted; restarted,
    it reaches the last commit."""
    _, _, pusher, _ = world
    web1, _, web3 = fleet.nodes
    web3.stop()
    for i in range(5):
        sha = commit(pusher, f"print({i})\n")
        status, body = deliver_push(web1.url, sha, delivery=f"stopped-{i}")
        assert status == 200, body
        assert body["reason"].startswith("deployed on 2/2 nodes; absent"), body
        assert body["fleet"]["nodes"]["web3"]["state"] == "absent"
    assert web3.head() != sha
    web3.start()
    wait_for(lambda: web3.head() == sha, what="web3 at the last commit")
    shown = json.loads(cli(web1, "fleet", "--json").stdout)["default"]
    wait_for(lambda: json.loads(cli(web1, "fleet", "--json").stdout)["default"]["nodes"]
             ["web3"]["state"] == "deployed", what="web3 reported")
    assert shown["desired"]["sha"] == sha


def test_a_killed_node_is_absent_after_three_missed_heartbeats(
        fleet: Fleet, world: tuple[Path, ...]) -> None:
    """web3 is SIGKILLed (it cannot leave the fleet): with ``reconcile_interval = 1`` its
    heartbeat came each second, so it is absent three seconds later (not after the 15 s
    of the default 5 s period), and the next delivery is answered without it."""
    _, _, pusher, _ = world
    web1, _, web3 = fleet.nodes
    first = commit(pusher, "print('before the kill')\n")
    assert deliver_push(web1.url, first, delivery="kill-1")[0] == 200
    assert web3.daemon is not None
    web3.daemon.proc.kill()
    web3.daemon.stop()

    def web3_state() -> dict:
        return http("GET", web1.url + "/deployments")[1]["fleet"]["default"]["nodes"]["web3"]

    wait_for(lambda: web3_state()["state"] == "absent", timeout=10, what="web3 absent")
    assert web3_state()["reason"] == "no heartbeat for 3 s"
    second = commit(pusher, "print('after the kill')\n")
    status, body = deliver_push(web1.url, second, delivery="kill-2")
    assert (status, body["reason"]) == (200, "deployed on 2/2 nodes; absent (no heartbeat "
                                        "for 3 s, not counted): web3"), body


def test_a_failing_node_is_reported_and_not_retried_until_a_redelivery(
        world: tuple[Path, Path, Path, Path]) -> None:
    """web3's post_deploy fails: the answer is 500 naming web3, the others deploy; the
    reconcile loop does not try the commit again on web3; a redelivery does (and only
    there)."""
    root, origin, pusher, secret = world
    fleet = Fleet(RedisServer(root / "redis").start())
    try:
        for name in ("web1", "web2"):
            fleet.nodes.append(make_node(root, origin, name, fleet.redis, secret).start())
        fleet.nodes.append(make_node(root, origin, "web3", fleet.redis, secret,
                                     post_deploy=["false"]).start())
        fleet.wait_registered()
        web1, web2, web3 = fleet.nodes
        sha = commit(pusher, "print('broken on web3')\n")
        status, body = deliver_push(web1.url, sha, delivery="fail-1")
        assert status == 500, body  # once web3 failed: web2 may still be deploying then
        assert body["reason"].startswith("deployed on "), body
        assert "; failed on web3 (" in body["reason"], body
        assert body["fleet"]["nodes"]["web3"]["state"] == "failed"

        def states() -> dict[str, str]:
            nodes = http("GET", web1.url + "/deployments")[1]["fleet"]["default"]["nodes"]
            return {name: node["state"] for name, node in nodes.items()}

        wait_for(lambda: states() == {"web1": "deployed", "web2": "deployed",
                                      "web3": "failed"}, what="web1, web2 deployed")
        assert web1.head() == sha and web2.head() == sha
        wait_for(lambda: web3.runs() == 1, what="web3's run recorded")
        runs = 1
        fleet.redis.beats("web3", 3)  # three reconcile periods: web3 does not try again
        assert web3.runs() == runs
        status, again = deliver_push(web2.url, sha, delivery="fail-1")
        assert status == 500 and "failed on web3" in again["reason"], again
        wait_for(lambda: web3.runs() == runs + 1, what="web3's second run recorded")
        assert web1.runs() == 1 and web2.runs() == 1  # nothing deployed again there
    finally:
        fleet.stop()


def test_redis_stopped_and_restarted_loses_nothing(fleet: Fleet,
                                                   world: tuple[Path, ...]) -> None:
    """Redis stopped cleanly (SIGTERM) after a delivery and started again on the same
    folder: the desired state is still there; a push while it is down is deployed by the
    node that received it, which says the fleet could not be told, and the fleet catches
    up once Redis is back, even after a restart of its own meanwhile."""
    _, _, pusher, _ = world
    web1, web2, _ = fleet.nodes
    first = commit(pusher, "print('before')\n")
    assert deliver_push(web1.url, first, delivery="r-1")[0] == 200
    generation = json.loads(cli(web1, "fleet", "--json").stdout)["default"]["desired"]
    fleet.redis.stop()
    second = commit(pusher, "print('while redis is down')\n")
    status, body = deliver_push(web2.url, second, delivery="r-2")
    assert status == 202, body
    assert "the fleet could not be told" in body["reason"], body
    assert body["fleet"]["told"] is False
    assert fleet.redis.url.rsplit(":", 1)[0] in body["reason"]
    assert "fleet test password" not in json.dumps(body)
    assert web2.head() == second and web1.head() == first
    shown = cli(web1, "fleet")
    assert shown.returncode == 1 and "unreachable" in shown.stderr
    checked = cli(web1, "check")
    assert "FAIL redis      Redis at redis://127.0.0.1:" in checked.stdout, checked.stdout
    web2.stop()  # what it must tell the fleet outlives a restart
    web2.start()
    fleet.redis.start()
    wait_for(lambda: all(n.head() == second for n in fleet.nodes), what="every node at second")
    after = json.loads(cli(web1, "fleet", "--json").stdout)["default"]
    assert after["desired"]["sha"] == second
    assert after["desired"]["generation"] > generation["generation"]
    wait_for(lambda: all(s["state"] == "deployed" for s in json.loads(cli(
        web1, "fleet", "--json").stdout)["default"]["nodes"].values()), what="all reported")
    for node in fleet.nodes:
        assert "fleet test password" not in node.daemon.log()  # type: ignore[union-attr]


def test_a_rollback_rolls_back_the_fleet_and_the_reconcile_keeps_it(
        world: tuple[Path, Path, Path, Path]) -> None:
    """Two nodes in releases mode: ``deployhook rollback`` on web1 makes the release
    before the desired commit of both; web2 switches its own ``current`` back, and the
    reconcile does not undo it; ``deployhook deploy`` on web1 makes the newest commit the
    desired one again."""
    root, origin, pusher, secret = world
    fleet = Fleet(RedisServer(root / "redis").start())
    try:
        for name in ("web1", "web2"):
            fleet.nodes.append(make_node(
                root, origin, name, fleet.redis, secret, deploy_mode="releases",
                releases_path=str(root / name / "releases")).start())
        fleet.wait_registered()
        web1, web2 = fleet.nodes

        def live(node: Node) -> str:
            from tests.helpers import git

            return git(node.root / "releases" / "current", "rev-parse", "HEAD")

        first = commit(pusher, "print('first')\n")
        assert deliver_push(web1.url, first, delivery="rb-1")[0] == 200
        second = commit(pusher, "print('second')\n")
        status, body = deliver_push(web2.url, second, delivery="rb-2")
        assert status == 200, body
        assert live(web1) == second and live(web2) == second
        rolled = cli(web1, "rollback")
        assert rolled.returncode == 0, rolled.stdout + rolled.stderr
        assert "is the desired commit of default on every node" in rolled.stdout
        wait_for(lambda: live(web2) == first, what="web2 rolled back")
        fleet.redis.beats("web2", 2)  # two reconcile periods: nothing undoes it
        assert live(web1) == first and live(web2) == first
        state = json.loads(cli(web2, "fleet", "--json").stdout)["default"]
        assert state["desired"]["kind"] == "rollback" and state["desired"]["sha"] == first
        assert {n: s["state"] for n, s in state["nodes"].items()} == {
            "web1": "deployed", "web2": "deployed"}
        deployed = cli(web1, "deploy")
        assert deployed.returncode == 0, deployed.stdout + deployed.stderr
        assert live(web1) == second
        wait_for(lambda: live(web2) == second, what="web2 at the newest commit again")
    finally:
        fleet.stop()


# -- Redis is an input, not the operator (issue 23) ----------------------------------------

DESIRED = "deployhook:desired:default"


def write_desired(client: Any, sha: str, ref: str = "refs/heads/main", **extra: str) -> None:
    """What a stranger who can write Redis does: a desired state of ``default`` as the
    key layout says, a new generation, the notification; no signature unless in ``extra``."""
    client.hset(DESIRED, mapping={"sha": sha, "ref": ref, "delivery": "evil-1",
                                  "by": "mallory", "kind": "push", "time": repr(time.time()),
                                  **extra})
    client.hincrby(DESIRED, "generation", 1)
    client.publish("deployhook:desired", "default")


def refused(node: Node, what: str) -> bool:
    """True once ``node`` logged that it refused entry ``what`` of Redis."""
    return f"refused {what}" in node.daemon.log()  # type: ignore[union-attr]


def beat_time(client: Any, node: str) -> float:
    raw = client.get(f"deployhook:node:{node}")
    return json.loads(raw)["time"] if raw else 0.0


def test_a_desired_sha_written_to_redis_never_reaches_a_forge_url(
        world: tuple[Path, Path, Path, Path]) -> None:
    """A Redis writer makes desired.sha a path ('../../../../admin/users?promote=1#'):
    the node refuses the entry (logged), and the forge only ever receives the status
    URL of a real commit, with the report token (issue 23 finding 1)."""
    root, origin, pusher, secret = world
    fake = FakeForge("github").start()
    token = root / "report-token.txt"
    token.write_text(TOKEN + "\n")
    fleet = Fleet(RedisServer(root / "redis").start())
    try:
        web1 = make_node(root, origin, "web1", fleet.redis, secret, forge="github",
                         report="status", report_token_file=str(token), api_url=fake.url)
        fleet.nodes.append(web1.start())
        fleet.wait_registered()
        write_desired(fleet.redis.client(), "../../../../admin/users?promote=1#")
        wait_for(lambda: fake.requests or refused(web1, DESIRED), what="the entry handled")
        sha = commit(pusher, "print('reported')\n")
        status, body = deliver_push(web1.url, sha, delivery="report-1")
        assert status == 200, body
        paths = [seen.path for seen in fake.wait_for(2)]
        assert paths == [f"/repos/{REPOSITORY}/statuses/{sha}"] * 2, paths
    finally:
        fleet.stop()
        fake.stop()


def test_a_desired_tag_this_node_does_not_deploy_is_refused(
        world: tuple[Path, Path, Path, Path]) -> None:
    """web1 deploys tags ``v*``, web2 any tag: a signed push of tag ``evil-tag`` to web2
    becomes the desired state, which web1 refuses as a delivery of that tag would be
    refused (a failed outcome naming its pattern; its checkout stays) (issue 23
    finding 2)."""
    root, origin, pusher, secret = world
    fleet = Fleet(RedisServer(root / "redis").start())
    try:
        fleet.nodes.append(make_node(root, origin, "web1", fleet.redis, secret,
                                     tags="v*").start())
        fleet.nodes.append(make_node(root, origin, "web2", fleet.redis, secret,
                                     tags="*").start())
        fleet.wait_registered()
        web1, web2 = fleet.nodes
        before = web1.head()
        sha = commit(pusher, "print('evil')\n")
        git(pusher, "tag", "evil-tag")
        git(pusher, "push", "-q", "origin", "refs/tags/evil-tag")
        status, answer = http("POST", web2.url + "/github",
                              *signed_tag("refs/tags/evil-tag", sha, 1))
        assert status == 500, answer
        state = answer["fleet"]["nodes"]
        assert state["web2"]["state"] == "deployed", state
        assert state["web1"]["state"] == "failed", state
        assert "is not a tag matching 'v*'" in state["web1"]["reason"], state
        assert web1.head() == before and web2.head() == sha
    finally:
        fleet.stop()


def test_a_malformed_outcome_is_skipped_and_the_fleet_loop_goes_on(
        world: tuple[Path, Path, Path, Path]) -> None:
    """A live node's outcome with ``"generation": "abc"`` is refused (logged once, not
    every loop): every node's heartbeat goes on and the next push is deployed on the
    three real nodes, the ghost counted as still deploying (issue 23 finding 3)."""
    with three_nodes(world, web2={"response_timeout": ANSWER_WITHIN}) as fleet:
        malformed_outcome(fleet, world)


def malformed_outcome(fleet: Fleet, world: tuple[Path, ...]) -> None:
    """The body of the test above, on its fleet."""
    _, _, pusher, _ = world
    web1, web2, _ = fleet.nodes
    first = commit(pusher, "print('first')\n")
    assert deliver_push(web1.url, first, delivery="m-1")[0] == 200
    client = fleet.redis.client()
    client.set("deployhook:node:ghost", json.dumps({"targets": {"default": first},
                                                    "time": time.time()}), ex=120)
    client.sadd("deployhook:nodes:default", "ghost")
    client.hset("deployhook:outcomes:default", "ghost", json.dumps(
        {"node": "ghost", "generation": "abc", "sha": first, "head": first, "ok": True,
         "reason": "", "time": 0}))
    for _ in range(2):  # two heartbeats of web1 after the write: its loop goes on
        since = beat_time(client, "web1")
        wait_for(lambda since=since: beat_time(client, "web1") > since,
                 what="web1's next heartbeat")
    sha = commit(pusher, "print('second')\n")
    # the ghost never reports: the answer comes after web2's response_timeout
    status, body = deliver_push(web2.url, sha, delivery="m-2", timeout=90)
    assert status == 202 and body["reason"].startswith(  # ghost has no valid outcome
        "deployed on 3/4 nodes; still deploying on ghost"), body
    assert web1.daemon is not None
    assert web1.daemon.log().count("refused deployhook:outcomes:default[ghost]") == 1
    tasks = http("GET", web1.url + "/health")[1]["fleet"]["tasks"]
    assert {name: task["state"] for name, task in tasks.items()} == {
        "heartbeat": "running", "notifications": "running"}, tasks


@pytest.mark.parametrize("signature", [None, "0" * 64, "copied"])
def test_an_unsigned_or_wrongly_signed_desired_state_is_refused(
        fleet: Fleet, world: tuple[Path, ...], signature: str | None) -> None:
    """A desired state written straight into Redis (no signature, a made-up one, or the
    signature of the last real one on another commit) is refused by every node, which
    keeps running the signed desired commit; the next signed push still deploys."""
    _, _, pusher, _ = world
    web1, web2, web3 = fleet.nodes
    signed_sha = commit(pusher, "print('signed')\n")
    assert deliver_push(web1.url, signed_sha, delivery="s-1")[0] == 200
    client = fleet.redis.client()
    other = commit(pusher, "print('not signed')\n")
    extra = {} if signature is None else {
        "sig": client.hget(DESIRED, "sig") if signature == "copied" else signature}
    if signature is None:
        client.hdel(DESIRED, "sig")
    write_desired(client, other, **extra)
    for node in fleet.nodes:
        wait_for(lambda node=node: refused(node, DESIRED), what=f"{node.name} refusing")
    assert [node.head() for node in fleet.nodes] == [signed_sha] * 3
    newest = commit(pusher, "print('signed again')\n")
    status, body = deliver_push(web3.url, newest, delivery="s-2")
    assert (status, body["reason"]) == (200, "deployed on 3/3 nodes"), body
    assert web1.head() == web2.head() == newest


def test_a_node_with_another_fleet_key_is_refused_by_the_others(
        world: tuple[Path, Path, Path, Path]) -> None:
    """web3 has its own fleet key: what it tells the fleet is refused by web1 and web2
    (their checkouts stay), while web3 deploys its own delivery."""
    root, origin, pusher, secret = world
    fleet = Fleet(RedisServer(root / "redis").start())
    try:
        for name in ("web1", "web2"):
            fleet.nodes.append(make_node(root, origin, name, fleet.redis, secret).start())
        stranger = root / "other-fleet-key.txt"
        stranger.write_text("b" * 64 + "\n")
        fleet.nodes.append(make_node(  # web1 and web2 never answer web3: it waits
            root, origin, "web3", fleet.redis, secret, fleet_key_file=str(stranger),
            response_timeout=ANSWER_WITHIN).start())
        fleet.wait_registered()
        web1, web2, web3 = fleet.nodes
        before = web1.head()
        sha = commit(pusher, "print('from the stranger')\n")
        status, body = deliver_push(web3.url, sha, delivery="k-1", timeout=90)
        assert status == 202, body
        assert body["fleet"]["nodes"]["web3"]["state"] == "deployed", body
        for node in (web1, web2):
            wait_for(lambda node=node: refused(node, DESIRED), what=f"{node.name} refusing")
            assert node.head() == before
        assert web3.head() == sha
    finally:
        fleet.stop()


def test_a_failing_fleet_task_shows_in_health_and_recovers(
        fleet: Fleet, world: tuple[Path, ...]) -> None:
    """A Redis writer makes ``nodes:default`` a string: each node's heartbeat fails
    (WRONGTYPE); /health names the task, its state and its reason, and the task is
    restarted after a short back-off until the key is removed, then runs again."""
    web1 = fleet.nodes[0]
    client = fleet.redis.client()
    client.delete("deployhook:nodes:default")
    client.set("deployhook:nodes:default", "not a set")

    def heartbeat() -> dict[str, Any]:
        return http("GET", web1.url + "/health")[1]["fleet"]["tasks"]["heartbeat"]

    failing = wait_for(lambda: (lambda t: t if t["state"] == "backing off" else None)(
        heartbeat()), what="the heartbeat failing")
    assert "WRONGTYPE" in failing["error"], failing
    client.delete("deployhook:nodes:default")
    running = wait_for(lambda: (lambda t: t if t["state"] == "running" and t["restarts"]
                                else None)(heartbeat()), what="the heartbeat again")
    assert "WRONGTYPE" in running["error"], running  # the last error stays visible
    fleet.wait_registered()
    assert web1.daemon is not None
    assert "fleet: task heartbeat failed" in web1.daemon.log()


# -- polling in fleet mode (issue 24) ------------------------------------------------------

def test_a_push_no_delivery_brought_is_polled_once_into_the_fleet(
        world: tuple[Path, Path, Path, Path]) -> None:
    """Three polling nodes, a push to the origin and no delivery: every checkout reaches
    the commit with exactly one run each; the first node whose poll finds it tells the
    fleet (its run's trigger ``poll``), the others follow it (trigger ``fleet``) instead
    of deploying it by their own polls; the desired state names it once, as delivery
    ``poll-<sha>``, one generation after the last, and no later poll or reconcile adds
    a generation or a run."""
    root, origin, pusher, secret = world
    fleet = Fleet(RedisServer(root / "redis").start())
    try:
        for name in ("web1", "web2", "web3"):
            fleet.nodes.append(make_node(root, origin, name, fleet.redis, secret,
                                         poll_interval=0.3).start())
        fleet.wait_registered()
        client = fleet.redis.client()
        generation = int(client.hget(DESIRED, "generation") or 0)
        sha = commit(pusher, "print('polled')\n")
        for node in fleet.nodes:
            wait_for(lambda node=node: node.head() == sha and not http(
                "GET", node.url + "/health")[1]["deploying"], what=f"{node.name} at {sha}")
        for node in fleet.nodes:
            fleet.redis.beats(node.name, 2)  # two more reconciles (and many polls) each
        desired = client.hgetall(DESIRED)
        assert (desired["sha"], desired["delivery"], int(desired["generation"])) == (
            sha, f"poll-{sha}", generation + 1), desired
        triggers = {}
        for node in fleet.nodes:
            runs = http("GET", node.url + "/deployments")[1]["runs"]
            mine = [run for run in runs if run["head_after"] == sha]
            assert len(mine) == 1 and mine[0]["outcome"] == "ok", (node.name, runs)
            triggers[node.name] = mine[0]["trigger"]
        assert sorted(triggers.values()) == ["fleet", "fleet", "poll"], triggers
        nodes = http("GET", fleet.nodes[0].url + "/deployments")[1]["fleet"]["default"]["nodes"]
        assert {name: state["state"] for name, state in nodes.items()} == dict.fromkeys(
            ("web1", "web2", "web3"), "deployed")
    finally:
        fleet.stop()
