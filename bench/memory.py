"""Where deployhook's memory goes: ``python bench/memory.py [--sites 100] [--runs 3]``.

A shorter companion of ``run.py`` for the memory figures alone.  For one target: the RSS
of the daemon's process tree (git helpers included, per process) after start, after
deploys (submodule bumps, as run.py's deploy-overhead figure), after wrk rounds of
ignored and badly signed deliveries, right after three signed 25 MB deliveries and two
seconds later.  Then one daemon with ``--sites`` targets: after start and after a wrk
round of ignored deliveries.  Each run on fresh fixtures; the load average is noted.
Only 127.0.0.1 is used; every process started is killed (its process group) before exit.
"""

from __future__ import annotations

import argparse
import atexit
import json
import os
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import measure
from fixtures import isolate_git, make_clones, make_repos
from targets import Deployhook, DeployhookTargets, free_port, kill_all


def snapshot(pid: int) -> dict[str, Any]:
    """The tree's RSS and each process's name and RSS (MB)."""
    total = measure.memory(pid)
    per = []
    for p in measure.process_tree(pid):
        try:
            status = Path(f"/proc/{p}/status").read_text()
        except OSError:
            continue
        fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
        per.append(f"{fields['Name'].strip()} {int(fields['VmRSS'].split()[0]) / 1024:.1f}")
    return {"rss_mb": total["rss_mb"], "pss_mb": total["pss_mb"], "processes": per}


def one_target(work: Path, big_body: bytes, duration: int) -> dict[str, Any]:
    """The single-target stages."""
    (work / "one").mkdir()
    target = Deployhook(make_repos(work / "one"), free_port())
    out: dict[str, Any] = {}
    try:
        target.start()
        out["start"] = snapshot(target.pid)
        measure.overhead(target, target.repos, reps=3)
        out["after_deploys"] = snapshot(target.pid)
        measure.throughput(target, target.repos.root, duration)
        out["after_wrk"] = snapshot(target.pid)
        out["big"] = measure.big_delivery(target, big_body)
        out["after_big"] = snapshot(target.pid)
        time.sleep(2)
        out["after_big_2s"] = snapshot(target.pid)
    finally:
        target.stop()
    return out


def many_targets(work: Path, sites: int, duration: int) -> dict[str, Any]:
    """The ``sites``-target stages."""
    (work / "many").mkdir()
    _, clones = make_clones(work / "many", sites)
    daemon = DeployhookTargets(work / "many" / "daemon", clones, free_port())
    out: dict[str, Any] = {}
    try:
        daemon.start(timeout=60)
        out["start"] = snapshot(daemon.pid)
        measure.ignored_deliveries([daemon], work, rounds=1, duration=duration)
        out["after_wrk"] = snapshot(daemon.pid)
    finally:
        daemon.stop()
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--sites", type=int, default=100)
    parser.add_argument("--duration", type=int, default=3, help="wrk seconds per run")
    parser.add_argument("--output", default="", help="also write the results as JSON here")
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    atexit.register(kill_all)
    from fixtures import big_push_body

    big_body = big_push_body(25_000_000)
    results: list[dict[str, Any]] = []
    for i in range(args.runs):
        work = Path(tempfile.mkdtemp(prefix="deployhook-memory-"))
        isolate_git(work)
        try:
            run = {"load": [round(x, 2) for x in os.getloadavg()]}
            run["one"] = one_target(work, big_body, args.duration)
            if args.sites:
                run["many"] = many_targets(work, args.sites, args.duration)
            results.append(run)
        finally:
            kill_all()
            shutil.rmtree(work, ignore_errors=True)
        one = run["one"]
        print(f"run {i + 1}: load {run['load']}; one target: start {one['start']['rss_mb']}, "
              f"after deploys {one['after_deploys']['rss_mb']}, after wrk "
              f"{one['after_wrk']['rss_mb']}, after 25 MB {one['after_big']['rss_mb']} "
              f"(+2 s {one['after_big_2s']['rss_mb']}) MB", flush=True)
        print(f"  processes after wrk: {', '.join(one['after_wrk']['processes'])}")
        if args.sites:
            many = run["many"]
            print(f"  {args.sites} targets: start {many['start']['rss_mb']}, after wrk "
                  f"{many['after_wrk']['rss_mb']} MB ({len(many['after_wrk']['processes'])} "
                  "processes)", flush=True)
    if args.output:
        Path(args.output).write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
