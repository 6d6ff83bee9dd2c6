"""Fleet mode figures (``python bench/run.py --only fleet``, bench/fleet.json).

One origin (with its submodule), Debian's redis-server with ``appendonly yes`` and a
password, three daemons in fleet mode (web1..web3, each with its own clone) and one
daemon without Redis (its own clone) as the single-server reference.  Per round:

- ``pushes`` commits; each is delivered to the single daemon (its answer comes once
  its deploy ended: one node's deploy time) and then to web1..web3 in turn; timed until
  every fleet checkout's HEAD is the commit (read from the files every 5 ms) and until
  the answer ("deployed on 3/3 nodes") came;
- web3 stopped, five pushes delivered to web1, web3 started: the time from starting its
  process until its checkout is at the last commit, and from its /health answering.
"""

from __future__ import annotations

import os
import statistics
import time
from pathlib import Path
from typing import Any

from fixtures import read_head

from tests.fleet_helpers import Fleet, RedisServer, make_node, redis_server
from tests.helpers import REPOSITORY as REPO
from tests.helpers import (
    SECRET,
    Daemon,
    deliver_push,
    free_port,
    git,
    make_origin,
    write_config,
)

POLL = 0.005


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 1)


def _commit(pusher: Path, n: int) -> str:
    (pusher / "app.py").write_text(f"print({n}, {time.time_ns()})\n")
    git(pusher, "commit", "-qam", f"bench {n}")
    git(pusher, "push", "-q", "origin", "HEAD:main")
    return git(pusher, "rev-parse", "HEAD")


def _until(checkouts: list[Path], sha: str, timeout: float = 60) -> float:
    """Wait until every checkout's HEAD is ``sha``; the monotonic time it happened."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if all(read_head(c) == sha for c in checkouts):
            return time.monotonic()
        time.sleep(POLL)
    raise RuntimeError(f"not every checkout reached {sha[:12]} in {timeout} s")


def one_round(work: Path, pushes: int) -> dict[str, Any]:
    """One fresh origin, Redis, fleet and single daemon: the figures of one round."""
    origin, _, pusher = make_origin(work)
    secret = work / "secret.txt"
    secret.write_text(SECRET.decode() + "\n")
    fleet = Fleet(RedisServer(work / "redis").start())
    single_root = work / "single"
    single_root.mkdir()
    single_checkout = single_root / "site"
    git(work, "clone", "-q", "--recurse-submodules", origin.as_uri(), str(single_checkout))
    port = free_port()
    single = Daemon(write_config(single_root / "config.py", port=port,
                                 repo_path=str(single_checkout), secret_file=str(secret),
                                 repository=REPO, reload="none"), port)
    try:
        for name in ("web1", "web2", "web3"):
            fleet.nodes.append(make_node(work, origin, name, fleet.redis, secret,
                                         reconcile_interval=60.0).start())
        single.wait_ready()
        fleet.wait_registered()
        checkouts = [n.checkout for n in fleet.nodes]
        one, reached, answered = [], [], []
        for i in range(pushes):
            sha = _commit(pusher, i)
            start = time.monotonic()
            status, body = deliver_push(single.url, sha, delivery=f"single-{i}")
            one.append(time.monotonic() - start)
            assert status == 200, body
            node = fleet.nodes[i % 3]
            start = time.monotonic()
            status, body = deliver_push(node.url, sha, delivery=f"fleet-{i}")
            answered.append(time.monotonic() - start)
            reached.append(_until(checkouts, sha) - start)
            assert status == 200 and body["reason"] == "deployed on 3/3 nodes", body
        web1, _, web3 = fleet.nodes
        web3.stop()
        for i in range(5):
            sha = _commit(pusher, 100 + i)
            status, body = deliver_push(web1.url, sha, delivery=f"away-{i}")
            assert status == 200, body
        start = time.monotonic()
        web3.daemon = Daemon(web3.config, web3.port)
        web3.daemon.wait_ready(60)
        ready = time.monotonic()
        converged = _until([web3.checkout], sha)
    finally:
        single.stop()
        fleet.stop()
    return {
        "one_node_ms": [_ms(t) for t in one], "fleet_all_heads_ms": [_ms(t) for t in reached],
        "fleet_answer_ms": [_ms(t) for t in answered],
        "one_node_median_ms": _ms(statistics.median(one)),
        "fleet_all_heads_median_ms": _ms(statistics.median(reached)),
        "fleet_answer_median_ms": _ms(statistics.median(answered)),
        "extra_over_one_node_ms": _ms(statistics.median(reached) - statistics.median(one)),
        "restart_converged_from_start_ms": _ms(converged - start),
        "restart_converged_from_ready_ms": _ms(converged - ready),
    }


def run(work: Path, rounds: int = 3, pushes: int = 10) -> dict[str, Any]:
    """``rounds`` rounds (each on fresh fixtures) and the load average around them."""
    if redis_server() is None:
        raise SystemExit("bench --only fleet needs redis-server (Debian: redis-server)")
    results: dict[str, Any] = {"load_before": [round(x, 2) for x in os.getloadavg()],
                               "pushes": pushes, "rounds": []}
    for i in range(rounds):
        print(f"[fleet] round {i + 1}/{rounds} ...", flush=True)
        folder = work / f"round{i}"
        folder.mkdir()
        results["rounds"].append(one_round(folder, pushes))
    results["load_after"] = [round(x, 2) for x in os.getloadavg()]
    return results
