"""The record and the status page with 1,000 targets x 10 deploys (issue 26):
``python bench/record1000.py`` (about a minute on 2 cores), writes bench/record1000.json.

Builds 1,000 small checkouts (tests/helpers.small_checkouts: one empty commit, no remote)
and a record of 10 finished deploys each, written through the Store's own API (a
delivery, a run covering it, three steps), then measures, each a median of ``--reps``
(5) after one unmeasured call:

- ``deployhook history`` as a subprocess (``python -m deployhook``, the package compiled
  first as pip installs it), with the 1,000-target config, with ``--target``, and with a
  one-target config on the same record, interleaved; with ``--old PATH`` (a checkout of
  an older deployhook, say ``git worktree add --detach /tmp/old 00bbfa7``) the same
  commands of that code too, interleaved with these;
- a daemon started on that record and config (and with ``--old``, that code's daemon
  after it): the status page's first page, a search,
  its last page, a target's page, a target page whose checkout was moved away (its
  status: must not be 500), ``/deployments`` (first page, one target, a deep page), and
  the size of ``/health`` without the password and with it;
- pruning 9,000 of the 10,000 runs (``keep_runs`` 1: one run of each target) on a copy
  of the record: the whole prune and its longest batch (the longest the write lock is
  held), against the same prune in one transaction.

The load average is recorded before and after.  Only 127.0.0.1 is used; the daemon's
process group is killed before exit.
"""

from __future__ import annotations

import argparse
import atexit
import compileall
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from fixtures import isolate_git
from targets import ROOT, free_port, kill_all, request, start_group

from deployhook.git.steps import Step
from deployhook.record.store import PRUNE_BATCH, DeliveryRecord, Store, target_groups
from tests.helpers import STATUS_PASSWORD, basic_auth, small_checkouts

BENCH = Path(__file__).resolve().parent
STEPS = [Step("fetch", "git fetch --prune origin", 0, 0.05, "From example.com:org/site"),
         Step("checkout", "git checkout -f main", 0, 0.01, ""),
         Step("submodules", "git submodule update --init --recursive", 0, 0.01, "")]


def write_record(path: Path, names: list[str], deploys: int) -> float:
    """``deploys`` finished runs of each target, round-robin, through the Store's API;
    return the seconds it took."""
    start = time.perf_counter()
    store = Store(str(path))
    try:
        for k in range(deploys):
            for name in names:
                delivery = DeliveryRecord(f"{name}-{k}", "push", "127.0.0.1", "valid",
                                          "refs/heads/main", f"{k:040x}", f"{k + 1:040x}",
                                          "octocat", True, name, 1)
                row = store.add_delivery(delivery)
                run = store.start_run("webhook", "main", f"{k:040x}", [row], ["octocat"],
                                      name)
                store.answer_delivery(row, 200, "deployed", "", run)
                store.finish_run(run, True, f"{k:040x}", f"{k + 1:040x}", "", STEPS)
    finally:
        store.close()
    return time.perf_counter() - start


def write_configs(root: Path, checkouts: dict[str, Path], port: int, runs: int
                  ) -> tuple[Path, Path]:
    """config.py (every target; ``keep_runs`` keeps every run) and config1.py (the first
    target alone), sharing the secret, the password and the record."""
    secret = root / "secret.txt"
    secret.write_text("bench-secret-0123456789abcdef\n")
    secret.chmod(0o600)
    password = root / "status-password.txt"
    password.write_text(STATUS_PASSWORD + "\n")
    password.chmod(0o600)
    common = {"address": "127.0.0.1", "port": port, "secret_file": str(secret),
              "status_password_file": str(password), "state_db": str(root / "record.sqlite3"),
              "reload": "none", "poll_interval": 0, "keep_runs": 2 * runs,
              "stop_timeout": 5.0}
    targets = {name: {"repo_path": str(path), "repository": f"octo-org/{name}",
                      "branch": "main"} for name, path in checkouts.items()}
    many, one = root / "config.py", root / "config1.py"
    many.write_text("".join(f"{k} = {v!r}\n" for k, v in {**common, "targets": targets}.items()))
    first = next(iter(checkouts.values()))
    one.write_text("".join(f"{k} = {v!r}\n" for k, v in
                           {**common, "repo_path": str(first), "branch": "main"}.items()))
    return many, one


def ms(seconds: float) -> float:
    return round(seconds * 1000, 1)


def history_times(commands: dict[str, tuple[list[str], dict[str, str]]], cwd: Path,
                  reps: int) -> dict[str, dict[str, Any]]:
    """Each command run ``reps`` times (after one unmeasured run), interleaved: median,
    min and max wall time in ms."""
    times: dict[str, list[float]] = {name: [] for name in commands}
    for rep in range(reps + 1):
        for name, (argv, env) in commands.items():
            start = time.perf_counter()
            proc = subprocess.run(argv, cwd=cwd, capture_output=True, text=True,
                                  env={**os.environ, **env})
            elapsed = time.perf_counter() - start
            if proc.returncode != 0:
                raise RuntimeError(f"{name} exited {proc.returncode}: {proc.stderr[-2000:]}")
            if rep:
                times[name].append(elapsed)
    return {name: {"median_ms": ms(statistics.median(t)), "min_ms": ms(min(t)),
                   "max_ms": ms(max(t))} for name, t in times.items()}


def page_times(base: str, paths: dict[str, str], reps: int) -> dict[str, dict[str, Any]]:
    """GET each path logged in, ``reps`` times after one unmeasured call, interleaved:
    status, size, median and max ms."""
    auth = basic_auth()
    times: dict[str, list[float]] = {name: [] for name in paths}
    answers: dict[str, tuple[int, int]] = {}
    for rep in range(reps + 1):
        for name, path in paths.items():
            status, body, elapsed = request("GET", base + path, headers=auth)
            answers[name] = (status, len(body))
            if rep:
                times[name].append(elapsed)
    return {name: {"path": paths[name], "status": answers[name][0],
                   "bytes": answers[name][1], "median_ms": ms(statistics.median(t)),
                   "max_ms": ms(max(t))} for name, t in times.items()}


def prune_times(record: Path, keep_runs: int) -> dict[str, Any]:
    """Prune a copy of ``record`` to ``keep_runs`` runs of each target in batches (the
    daemon's way at start: :data:`PRUNE_TARGETS` targets and :data:`PRUNE_BATCH` rows a
    transaction), and another copy in one transaction: total and longest transaction, and
    what pruning one target costs when nothing is due (after each of its runs), in ms."""
    result: dict[str, Any] = {}
    for name, limit in (("batches", PRUNE_BATCH), ("one_transaction", 10**9)):
        copy = record.with_name(f"prune-{name}.sqlite3")
        shutil.copyfile(record, copy)
        store = Store(str(copy))
        names = store.targets()
        groups = target_groups(names) if limit == PRUNE_BATCH else [names]
        longest, gone, start = 0.0, 0, time.perf_counter()
        for group in groups:
            while True:
                began = time.perf_counter()
                runs, more = store.prune_some(keep_runs, 90, limit, group)
                longest = max(longest, time.perf_counter() - began)
                gone += runs
                if not more:
                    break
        total = time.perf_counter() - start
        began = time.perf_counter()
        store.prune_some(keep_runs, 90, limit, names[:1])  # a run's end: nothing due
        nothing = time.perf_counter() - began
        store.close()
        result[name] = {"runs_gone": gone, "total_ms": ms(total),
                        "longest_transaction_ms": ms(longest), "nothing_due_ms": ms(nothing)}
    return result


def daemon_figures(root: Path, config: Path, port: int, checkouts: dict[str, Path],
                   reps: int, code: Path = ROOT) -> dict[str, Any]:
    """Start the daemon (of the deployhook in ``code``) on ``config``; the pages' times,
    /health's sizes; stop it."""
    base = f"http://127.0.0.1:{port}"
    log = root / f"daemon-{time.monotonic_ns()}.log"
    env = {"PYTHONPATH": str(code)}
    start = time.perf_counter()
    proc = start_group([sys.executable, "-m", "deployhook", "serve", "--config", str(config)],
                       log, root, env)
    while request("GET", base + "/health", timeout=2)[0] != 200:
        if proc.poll() is not None or time.perf_counter() - start > 120:
            raise RuntimeError(f"the daemon did not start: {log.read_text()[-3000:]}")
        time.sleep(0.05)
    ready = time.perf_counter() - start
    names = list(checkouts)
    last_page = -(-len(names) // 50)
    paths = {
        "page, first": "/",
        "page, search (100 targets match)": "/?q=t5",
        "page, search (1 target matches)": f"/?q={names[-1]}",
        "page, last": f"/?page={last_page}",
        "target page": f"/targets/{names[len(names) // 2]}",
        "/deployments": "/deployments",
        "/deployments, one target": f"/deployments?target={names[len(names) // 2]}",
        "/deployments, page 400": "/deployments?page=400&per_page=20",
    }
    figures: dict[str, Any] = {"ready_s": round(ready, 2),
                               "requests": page_times(base, paths, reps)}
    status, body, _ = request("GET", base + "/health")
    figures["health_bytes_unauthenticated"] = len(body)
    figures["health_unauthenticated"] = body.decode(errors="replace")
    status, body, _ = request("GET", base + "/health", headers=basic_auth())
    figures["health_bytes_with_password"] = len(body)
    moved = checkouts[names[-2]]
    moved.rename(moved.with_name("moved-away"))  # a checkout gone while the daemon runs
    try:
        status, body, _ = request("GET", base + f"/targets/{names[-2]}", headers=basic_auth())
        figures["target_page_checkout_gone_status"] = status
    finally:
        moved.with_name("moved-away").rename(moved)
    figures["log_errors"] = [line for line in log.read_text(errors="replace").splitlines()
                             if "ERROR" in line or "Traceback" in line][:10]
    kill_all()
    return figures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--targets", type=int, default=1000)
    parser.add_argument("--deploys", type=int, default=10, help="finished runs per target")
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--old", type=Path, help="a checkout of an older deployhook: time "
                        "its history too, interleaved")
    parser.add_argument("--out", type=Path, default=BENCH / "record1000.json")
    args = parser.parse_args()
    atexit.register(kill_all)
    root = Path(tempfile.mkdtemp(prefix="deployhook-record1000-"))
    atexit.register(shutil.rmtree, root, True)
    isolate_git(root)
    results: dict[str, Any] = {"date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
                               "targets": args.targets, "deploys_each": args.deploys,
                               "nproc": os.cpu_count(),
                               "load_before": [round(x, 2) for x in os.getloadavg()]}
    names = [f"t{i:03d}" for i in range(args.targets)]
    checkouts = small_checkouts(root, names)
    port = free_port()
    many, one = write_configs(root, checkouts, port, args.targets * args.deploys)
    record = root / "record.sqlite3"
    results["write_record_s"] = round(write_record(record, names, args.deploys), 2)
    results["record_bytes"] = record.stat().st_size
    for where in (ROOT, args.old):  # as installed: bytecode written first
        if where is not None:
            compileall.compile_dir(str(where / "deployhook"), quiet=1)
    commands: dict[str, tuple[list[str], dict[str, str]]] = {}
    for label, where in (("", ROOT), ("old ", args.old)):
        if where is None:
            continue
        env = {"PYTHONPATH": str(where)}
        history = [sys.executable, "-m", "deployhook", "history"]
        commands[f"{label}history, {args.targets} targets"] = (
            [*history, "--config", str(many)], env)
        commands[f"{label}history --target, {args.targets} targets"] = (
            [*history, "--config", str(many), "--target", names[len(names) // 2]], env)
        commands[f"{label}history, 1 target"] = ([*history, "--config", str(one)], env)
    results["history"] = history_times(commands, root, args.reps)
    results["daemon"] = daemon_figures(root, many, port, checkouts, args.reps)
    if args.old is not None:  # the same requests (an older page ignores q and page)
        results["old daemon"] = daemon_figures(root, many, port, checkouts, args.reps,
                                               args.old)
    results["prune"] = prune_times(record, keep_runs=1)
    results["load_after"] = [round(x, 2) for x in os.getloadavg()]
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
