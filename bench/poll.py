"""How long after a push no delivery brought the checkout moved (issue 24's closing note).

    .venv/bin/python bench/poll.py [--pushes 12] [--default-pushes 3] [--output bench/poll.json]

A real daemon (``python -m deployhook serve``) deploys a clone of a local origin (with
its submodule) with ``poll_interval = 10``; ``--pushes`` times, after a random pause in
[0, poll_interval), a commit is pushed to the origin and no delivery is sent: the delay
from the push (``git push`` returned) to the checkout's HEAD at the commit (read from
its files every 5 ms), split at the start of the poll's run (the record's ``started``)
into the poll's share (waiting for the next poll, its ``git ls-remote``, the decision)
and the deploy's share (the run's fetch and checkout).  Interleaved with each, as the
reference, a push that is delivered at once (``deliver_push``): push to HEAD moved.

With ``--default-pushes`` > 0 a second daemon with the default ``poll_interval``
(180 s) gets that many undelivered pushes the same way, at the same time (its waits are
long and idle).  The figures expected from the poller's jitter bounds (each interval
uniform in [0.9, 1.1] x poll_interval, a push at a random moment) are written next to
the measured ones: the wait for the next poll averages E[X^2] / 2E[X] = 0.5017 x the
interval and is at most 1.1 x the interval.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from fixtures import read_head

from deployhook.service.poller import JITTER
from tests.helpers import SECRET, Repos, deliver_push, http, isolate_git, make_repos, start_daemon

ROOT = Path(__file__).resolve().parent.parent
FAST = 10.0  # the measured poll_interval
DEFAULT = 180.0  # poll_interval's default (deployhook.settings)
WATCH = 0.005  # seconds between two reads of HEAD


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 1)


def moved(repo: Path, sha: str, timeout: float) -> float:
    """Wait until ``repo``'s HEAD is ``sha``; the wall-clock time it was first seen.

    Raises:
        RuntimeError: not within ``timeout`` seconds.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if read_head(repo) == sha:
            return time.time()
        time.sleep(WATCH)
    raise RuntimeError(f"HEAD not at {sha[:12]} within {timeout} s")


def run_of(url: str, sha: str) -> dict[str, Any]:
    """The finished run that deployed ``sha`` (waits for it to be recorded as ended)."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        for run in http("GET", url + "/deployments")[1]["runs"]:
            if run["head_after"] == sha and run["outcome"] != "running":
                return run
        time.sleep(0.05)
    raise RuntimeError(f"no finished run of {sha[:12]}")


def undelivered(repos: Repos, url: str, interval: float, rng: random.Random) -> dict[str, Any]:
    """One push at a random moment, no delivery: its delays (ms) and the run's trigger."""
    time.sleep(rng.uniform(0, interval))
    sha = repos.commit()
    pushed = time.time()
    at = moved(repos.deployed, sha, interval * (1 + JITTER) + 120)
    run = run_of(url, sha)
    return {"push_to_moved_ms": _ms(at - pushed), "poll_share_ms": _ms(run["started"] - pushed),
            "deploy_share_ms": _ms(at - run["started"]), "trigger": run["trigger"]}


def delivered(repos: Repos, url: str, n: int) -> float:
    """One push delivered at once (the reference): push to HEAD moved, ms."""
    sha = repos.commit()
    pushed = time.time()
    answer: list[int] = []
    sender = threading.Thread(target=lambda: answer.append(
        deliver_push(url, sha, delivery=f"bench-{n}")[0]))
    sender.start()
    at = moved(repos.deployed, sha, 120)
    sender.join()
    if answer != [200]:
        raise RuntimeError(f"the delivery was answered {answer}")
    return _ms(at - pushed)


def series(work: Path, interval: float, pushes: int, reference: bool, seed: int
           ) -> dict[str, Any]:
    """``pushes`` undelivered pushes to a daemon polling every ``interval`` seconds, each
    followed by a delivered one when ``reference``."""
    work.mkdir()
    repos = make_repos(work)
    secret = work / "secret.txt"
    secret.write_bytes(SECRET + b"\n")
    daemon = start_daemon(repos, secret, poll_interval=interval)
    rng = random.Random(seed)
    polled, references = [], []
    try:
        daemon.wait_ready()
        for n in range(pushes):
            polled.append(undelivered(repos, daemon.url, interval, rng))
            print(f"[poll {interval:g}s] {n + 1}/{pushes}: {polled[-1]}", flush=True)
            if reference:
                references.append(delivered(repos, daemon.url, n))
    finally:
        daemon.stop()
    return summary(interval, polled, references)


def summary(interval: float, polled: list[dict[str, Any]], references: list[float]
            ) -> dict[str, Any]:
    """Medians and maxima of a series, and what the jitter bounds lead to expect."""
    delays = [p["push_to_moved_ms"] for p in polled]
    polls = [p["poll_share_ms"] for p in polled]
    deploys = [p["deploy_share_ms"] for p in polled]
    found: dict[str, Any] = {
        "poll_interval_s": interval, "pushes": len(polled), "runs": polled,
        "triggers": sorted({p["trigger"] for p in polled}),
        "push_to_moved_median_ms": statistics.median(delays),
        "push_to_moved_max_ms": max(delays),
        "poll_share_median_ms": statistics.median(polls),
        "poll_share_max_ms": max(polls),
        "deploy_share_median_ms": statistics.median(deploys),
        "deploy_share_max_ms": max(deploys),
        "poll_share_of_total": round(sum(polls) / sum(delays), 4),
        "expected_wait_mean_s": round(expected_wait(interval), 2),
        "expected_wait_max_s": round(interval * (1 + JITTER), 2),
    }
    if references:
        found["delivered_push_to_moved_ms"] = references
        found["delivered_median_ms"] = statistics.median(references)
        found["ratio_median_polled_to_delivered"] = round(
            statistics.median(delays) / statistics.median(references), 1)
    return found


def expected_wait(interval: float) -> float:
    """The mean wait from a push at a random moment to the next poll, with intervals
    uniform in [1 - JITTER, 1 + JITTER] x ``interval``: E[X^2] / 2E[X]."""
    spread = 2 * JITTER * interval
    return (interval ** 2 + spread ** 2 / 12) / (2 * interval)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pushes", type=int, default=12,
                        help="undelivered pushes at poll_interval = 10 (default 12)")
    parser.add_argument("--default-pushes", type=int, default=3,
                        help="undelivered pushes at the default 180 s (0: none; default 3)")
    parser.add_argument("--seed", type=int, default=24)
    parser.add_argument("--output", default=str(ROOT / "bench" / "poll.json"))
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="deployhook-poll-"))
    (work / "home").mkdir()
    isolate_git(work / "home")
    results: dict[str, Any] = {"date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
                               "load_before": [round(x, 2) for x in os.getloadavg()]}
    slow: dict[str, Any] = {}
    if args.default_pushes > 0:
        def default_series() -> None:
            try:
                slow.update(series(work / "default", DEFAULT, args.default_pushes, False,
                                   args.seed + 1))
            except Exception as exc:  # kept in the results
                slow["error"] = f"{type(exc).__name__}: {exc}"

        thread = threading.Thread(target=default_series)
        thread.start()
    results["interval_10s"] = series(work / "fast", FAST, args.pushes, True, args.seed)
    if args.default_pushes > 0:
        thread.join()
        results["interval_180s"] = slow
    else:
        results["interval_180s_expected"] = {
            "wait_mean_s": round(expected_wait(DEFAULT), 2),
            "wait_max_s": round(DEFAULT * (1 + JITTER), 2)}
    results["load_after"] = [round(x, 2) for x in os.getloadavg()]
    Path(args.output).write_text(json.dumps(results, indent=1) + "\n")
    print(json.dumps({key: {k: v for k, v in value.items() if k != "runs"}
                      if isinstance(value, dict) else value for key, value in results.items()},
                     indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
