"""Replayed deliveries never move a target back: real daemons, real git, the real record.

The tags-mode end-to-end case is in tests/test_tags.py
(``test_a_replayed_old_tag_delivery_does_not_move_the_checkout_back``); here: a branch
push replayed under a new delivery ID (it deploys the branch tip, so it cannot move
back), a GitLab signing-token delivery replayed under a new ``Idempotency-Key``, the
record's query and the pure decision of :mod:`deployhook.service.replay`.
"""

from __future__ import annotations

import base64
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from deployhook import forges
from deployhook.forges import payloads
from deployhook.forges.delivery import Push
from deployhook.record.store import DeliveryRecord, Store
from deployhook.service import replay
from tests.fleet_helpers import Fleet, RedisServer, make_node
from tests.helpers import (
    REPOSITORY,
    ZERO,
    Daemon,
    Repos,
    deliver_push,
    git,
    http,
    push_payload,
    signed,
    start_daemon,
)
from tests.test_fleet import commit, world  # noqa: F401 (a fixture)
from tests.test_tags import signed_tag

WHSEC = b"whsec_" + base64.b64encode(bytes(range(32)))
V1, V2, V3 = "1" * 40, "2" * 40, "3" * 40
C1, C2 = "a" * 40, "b" * 40  # the commits annotated tags v1, v2 point to


def runs(daemon: Daemon) -> list[dict[str, Any]]:
    status, listing = http("GET", daemon.url + "/deployments?per_page=100")
    assert status == 200, listing
    return listing["runs"]


# -- end to end --------------------------------------------------------------------------

def test_a_replayed_branch_push_deploys_the_tip_and_never_moves_back(
        repos: Repos, secret_file: Path) -> None:
    """Branch mode needs no replay check: an old push replayed under a new delivery ID
    fetches and deploys the branch tip, which contains the old commit."""
    daemon = start_daemon(repos, secret_file)
    try:
        daemon.wait_ready()
        first = repos.commit("a.txt", "one\n")
        old_body, old_headers = signed(push_payload(first), delivery="d-1")
        status, answer = http("POST", daemon.url + "/github", old_body, old_headers)
        assert status == 200, answer
        tip = repos.commit("a.txt", "two\n")
        status, answer = deliver_push(daemon.url, tip, delivery="d-2")
        assert status == 200 and Repos.head(repos.deployed) == tip, answer
        replayed = {**old_headers, "X-GitHub-Delivery": "d-replayed"}
        status, answer = http("POST", daemon.url + "/github", old_body, replayed)
        assert status == 200 and answer["reason"] == f"already deployed {first[:12]}", answer
        assert answer["head"] == tip == Repos.head(repos.deployed)
    finally:
        daemon.stop()


def test_a_gitlab_signed_delivery_replayed_with_a_new_idempotency_key_is_a_replay(
        repos: Repos, tmp_path: Path) -> None:
    """``Idempotency-Key`` is not signed by a signing token, ``webhook-id`` is: a replay
    inside the timestamp's window under a new key is the same delivery, not deployed
    again."""
    secret_file = tmp_path / "whsec.txt"
    secret_file.write_bytes(WHSEC + b"\n")
    daemon = start_daemon(repos, secret_file)
    try:
        daemon.wait_ready()
        after = repos.commit("g.txt", "one\n")
        payload = payloads.push_payload(
            "gitlab", repository=REPOSITORY, ref="refs/heads/main", before=ZERO, after=after,
            pusher="octocat", email="octocat@example.com", default_branch="main")
        body = json.dumps(payload).encode()
        headers = forges.sign_headers("gitlab", WHSEC, body, delivery_id="w-1")
        status, answer = http("POST", daemon.url + "/github", body, headers)
        assert status == 200 and "replayed" not in answer, answer
        fetches, deployed = repos.fetches(), len(runs(daemon))
        status, answer = http("POST", daemon.url + "/github", body,
                              {**headers, "Idempotency-Key": "new-key"})
        assert status == 200 and answer.get("replayed") is True, answer
        assert "delivery w-1 was already handled by run" in answer["reason"], answer
        assert (repos.fetches(), len(runs(daemon))) == (fetches, deployed)
    finally:
        daemon.stop()
    assert "new-key" not in daemon.log(), daemon.log()


def test_a_replayed_old_tag_is_refused_before_the_fleet_is_told(
        world: tuple[Path, Path, Path, Path]) -> None:  # noqa: F811 (the fixture)
    """Two nodes in tags mode: v1, then v2, through web1; v1's signed delivery replayed
    to web2 under a new ID is refused there (web2 ran v1 for the fleet, with no delivery
    of its own), and the fleet stays at v2."""
    root, origin, pusher, secret = world
    redis = RedisServer(root / "redis").start()
    fleet = Fleet(redis)
    try:
        for name in ("web1", "web2"):
            fleet.nodes.append(make_node(root, origin, name, redis, secret, tags="v*").start())
        fleet.wait_registered()
        web1, web2 = fleet.nodes
        shas = {}
        for number, name in enumerate(("v1", "v2"), 1):
            shas[name] = commit(pusher, f"print({name!r})\n")
            git(pusher, "tag", name)
            git(pusher, "push", "-q", "origin", f"refs/tags/{name}")
            body, headers = signed_tag(f"refs/tags/{name}", shas[name], number)
            if name == "v1":
                v1_body, v1_headers = body, headers
            status, answer = http("POST", web1.url + "/github", body, headers)
            assert status == 200 and answer["reason"] == "deployed on 2/2 nodes", answer
        assert [node.head() for node in fleet.nodes] == [shas["v2"]] * 2
        status, answer = http("POST", web2.url + "/github", v1_body,
                              {**v1_headers, "X-GitHub-Delivery": "d-replayed"})
        assert status == 409 and answer["result"] == "not deployed", answer
        assert "and v2 (run " in answer["reason"] and "fleet" not in answer, answer
        desired = json.loads(subprocess.run(
            [sys.executable, "-m", "deployhook", "fleet", "--json", "--config",
             str(web1.config)], capture_output=True, text=True, timeout=60,
            cwd=web1.root).stdout)["default"]["desired"]
        assert desired["sha"] == shas["v2"], desired
        assert [node.head() for node in fleet.nodes] == [shas["v2"]] * 2
    finally:
        fleet.stop()


# -- the record's query and the decision ---------------------------------------------------

def run_of(store: Store, ref: str, after: str, head: str, ok: bool = True,
           target: str = "site", accepted: bool = True, delivery: bool = True) -> int:
    """A finished run of ``target`` deploying ``ref`` to ``head``, covering a delivery of
    ``ref`` at ``after`` (none when ``delivery`` is False: a fleet node's run)."""
    rows = [store.add_delivery(DeliveryRecord(
        f"d-{after[:4]}", "push", "127.0.0.1", "valid", ref, ZERO, after, "octocat",
        accepted=accepted, target=target))] if delivery else []
    run = store.start_run("webhook", ref, None, rows, target=target)
    store.finish_run(run, ok, None, head, "", [])
    return run


def test_deployed_before_finds_the_run_of_this_ref_and_commit_and_the_live_one(
        tmp_path: Path) -> None:
    store = Store(str(tmp_path / "record.sqlite3"))
    try:
        one = run_of(store, "refs/tags/v1", V1, C1)
        two = run_of(store, "refs/tags/v2", V2, C2)
        store.start_run("webhook", "refs/tags/v9", None, [], target="site")  # running
        found = store.deployed_before("refs/tags/v1", V1, "site")
        assert found == {"run": one, "outcome": "ok", "branch": "refs/tags/v1", "head": C1,
                         "live": {"run": two, "outcome": "ok", "branch": "refs/tags/v2",
                                  "head": C2}}
        assert store.deployed_before("refs/tags/v1", V2, "site") is None  # moved tag
        assert store.deployed_before("refs/tags/v1", V1, "other") is None
        run_of(store, "refs/tags/v3", V3, C1, accepted=False)  # a refused delivery
        assert store.deployed_before("refs/tags/v3", V3, "site") is None
        fleet = run_of(store, "refs/tags/v3", V3, V3, delivery=False)  # a fleet node's run
        assert store.deployed_before("refs/tags/v3", V3, "site")["run"] == fleet
        failed = run_of(store, "refs/tags/v1", V1, C2, ok=False)
        found = store.deployed_before("refs/tags/v1", V1, "site")
        assert (found["run"], found["outcome"], found["live"]["run"]) == (failed, "failed",
                                                                          fleet)
    finally:
        store.close()


def tag_push(name: str, after: str) -> Push:
    return Push(f"refs/tags/{name}", ZERO, after, False, REPOSITORY, "main", "octocat", "d-9")


def ran(run: int, ref: str, head: str, outcome: str = "ok") -> dict[str, Any]:
    return {"run": run, "outcome": outcome, "branch": ref, "head": head}


V1_RUN = ran(1, "refs/tags/v1", C1)


@pytest.mark.parametrize(("push", "deployed", "reason"), [
    # go on
    (Push("refs/heads/main", ZERO, V1, False, REPOSITORY, "main", "octocat"),
     {**V1_RUN, "live": ran(2, "refs/tags/v2", C2)}, None),
    (tag_push("v1", V1), None, None),
    (tag_push("v1", V1), {**V1_RUN, "live": V1_RUN}, None),  # still live: already deployed
    (tag_push("v1", V1), {**V1_RUN, "live": ran(3, "", C1)}, None),  # rolled back to it
    (tag_push("v1", V1), {**ran(2, "refs/tags/v1", C1, "failed"),
                          "live": ran(1, "refs/tags/v0", C2)}, None),  # retrying a failure
    (tag_push("v1", V1), {**ran(1, "refs/tags/v1", C1, "failed"), "live": None}, None),
    # a replay: refused
    (tag_push("v1", V1), {**V1_RUN, "live": ran(2, "refs/tags/v2", C2)},
     f"tag v1 at {V1[:12]} was deployed before (run 1) and v2 (run 2, {C2[:12]}) since"),
    (tag_push("v1", V1), {**ran(1, "refs/tags/v2", C2), "live": ran(1, "refs/tags/v2", C2)},
     f"was deployed before (run 1) and v2 (run 1, {C2[:12]}) since"),  # v2 in the same run
    (tag_push("v1", V1), {**ran(1, "refs/tags/v1", C1, "failed"),
                          "live": ran(2, "refs/tags/v2", C2)}, "was tried (and failed) before"),
    (tag_push("v1", V1), {**V1_RUN, "live": ran(4, "", C2)},
     f"and {C2[:12]} (run 4) since"),  # deployhook deploy
], ids=["branch", "never", "live", "rolled-back", "retry", "nothing-since", "replay",
        "batched", "failed-then-newer", "cli"])
def test_a_tag_is_refused_only_when_something_else_was_deployed_since(
        push: Push, deployed: dict[str, Any] | None, reason: str | None) -> None:
    body = replay.refusal(push, deployed)
    if reason is None:
        assert body is None
        return
    assert body is not None and reason in body["reason"], body
    assert (body["result"], body["replayed"], body["after"]) == ("not deployed", True,
                                                                 push.after)
    assert body["reason"].endswith("a replayed delivery does not move the checkout back; "
                                   "push a new tag to deploy it")
    assert body["head"] == deployed["live"]["head"]  # type: ignore[index]
