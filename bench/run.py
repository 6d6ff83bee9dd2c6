"""deployhook benchmarks: ``python bench/run.py`` (about 5 minutes on 2 cores; longer once, to
build the cached large repository).

Builds its own fixtures (a bare origin with a submodule, a deployed clone, an
equivalent plain clone, a pusher clone, fetching through a counting and
slowable upload-pack wrapper) for each target in turn -- deployhook, the
blocking baseline (bench/blocking_server.py), the seed-style GitPython handler
(bench/seed_server.py: ``seed`` updates submodules with ``git submodule update`` through
``repo.git``, as the seed did; ``seed-gitpython`` with GitPython's own
``submodule_update``) and Debian's ``webhook`` -- and
measures stall, burst, deploy overhead, a valid push under a bad-signature flood
(bench/flood.py), throughput (wrk), memory and the 25 MB scale case.  Prints a
table with PASS/MISS per deployhook target and writes everything to
bench/results.json.  Only 127.0.0.1 is used; every process
started is killed (its process group) before exit.

Every server also deploys on a large repository (bench/largerepo.py: 10,000 files, a
long history, a submodule; built once into ~/.cache/deployhook-bench).
``--only deploy`` measures deploy latency only (the small and the large repository,
bench/deploy.json); ``--only strangers`` measures large bodies only; ``--only targets``
one daemon with 100 targets against one with a single target (bench/targets.json);
``--only releases`` deploy time in releases mode against in-place (interleaved, with the
time of each step, the ratios and the load average), and disk per release
(bench/releases.json); ``--only fleet`` three daemons sharing a Redis against one daemon
alone (bench/fleet.json, see bench/fleet.py); ``--only targets1000`` a thousand targets in
one daemon, each its own origin, checkout and secret, and a push to all of them at once
(bench/targets1000.json, see bench/thousand.py).
"""

from __future__ import annotations

import argparse
import atexit
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import flood
import largerepo
import measure
from fixtures import isolate_git, make_repos
from targets import TARGETS, DeployhookTargets, Target, ensure_tools, free_port, kill_all

from tests.helpers import STATUS_PASSWORD, basic_auth

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
ORDER = ("deployhook", "blocking", "seed", "seed-gitpython", "webhook")  # the table's columns
DEFAULT = ("deployhook", "blocking", "seed", "seed-gitpython", "webhook")  # without --targets


def machine() -> dict[str, Any]:
    """nproc, CPU model, memory and tool versions."""
    import git
    import tornado

    cpu = next((line.split(":", 1)[1].strip() for line in
                Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    mem = next(line.split()[1] for line in Path("/proc/meminfo").read_text().splitlines()
               if line.startswith("MemTotal"))

    def version(*argv: str) -> str:
        try:
            out = subprocess.run(argv, capture_output=True, text=True, timeout=10)
            return (out.stdout or out.stderr).strip().splitlines()[0]
        except (OSError, IndexError, subprocess.TimeoutExpired):
            return "unknown"

    return {
        "nproc": os.cpu_count(), "cpu": cpu, "mem_gib": round(int(mem) / 1024 ** 2, 1),
        "kernel": platform.release(), "python": platform.python_version(),
        "tornado": tornado.version, "gitpython": git.__version__,
        "git": version("git", "--version"), "webhook": version("webhook", "-version"),
        "wrk": version("wrk", "-v"),
    }


def bench_all(names: list[str], work: Path, args: argparse.Namespace,
              big_body: bytes) -> dict[str, Any]:
    """All figures for every target, each on its own fresh fixtures and process.

    Stall, burst and deploy overhead run one target at a time; the wrk rounds go
    round-robin over the targets (so a change in the machine's load hits them
    alike); memory is read last, then the 25 MB delivery is sent.
    """
    targets: dict[str, Target] = {}
    out: dict[str, dict[str, Any]] = {}
    try:
        for name in names:
            root = work / name
            root.mkdir()
            target = targets[name] = TARGETS[name](make_repos(root), free_port())
            target.start()
            out[name] = {"name": name, "label": target.label,
                         "memory_start": measure.memory(target.pid)}
        for name, target in targets.items():
            print(f"[{name}] stall, burst, deploy overhead ...", flush=True)
            out[name]["stall"] = measure.stall(target, target.repos, args.stall_delay)
            out[name]["burst"] = measure.burst(target, target.repos, args.burst,
                                               args.burst_delay)
            out[name]["overhead"] = measure.overhead(target, target.repos, args.reps)
            out[name]["memory_after_deploys"] = measure.settled_memory(target.pid)
            print(f"[{name}] a valid push during a bad-signature flood ...", flush=True)
            out[name]["flood"] = flood.under_flood(target, target.repos, target.repos.root)
        for name, large in largerepo.bench(list(targets), work, args.reps).items():
            out[name]["large"] = large
        for name, target in targets.items():
            out[name]["memory_before_load"] = measure.memory(target.pid)
        rounds: dict[str, list[dict[str, Any]]] = {name: [] for name in targets}
        for i in range(args.rounds):
            for name, target in targets.items():
                print(f"[{name}] throughput round {i + 1}/{args.rounds} (wrk) ...", flush=True)
                rounds[name].append(measure.throughput(target, target.repos.root,
                                                       args.duration))
        for name, target in targets.items():
            out[name]["throughput"] = measure.combine(rounds[name])
            out[name]["memory"] = measure.memory(target.pid)
            print(f"[{name}] 25 MB delivery ...", flush=True)
            out[name]["big_delivery"] = measure.big_delivery(target, big_body)
            out[name]["memory_after_big"] = measure.memory(target.pid)
            out[name]["alive"] = target.proc is not None and target.proc.poll() is None
    finally:
        for target in targets.values():
            target.stop()
    return out


def fmt(value: Any, digits: int = 1) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.{digits}f}"
    return str(value)


def table(results: dict[str, Any]) -> tuple[list[list[str]], dict[str, str]]:
    """Rows of the summary table (figure, one column per target, target, verdict)."""
    t = results["targets"]
    names = [n for n in ORDER if n in t]
    rows: list[list[str]] = []
    verdicts: dict[str, str] = {}

    def row(label: str, cell: Any, goal: str = "", ok: bool | None = None,
            key: str = "") -> None:
        verdict = "" if ok is None else ("PASS" if ok else "MISS")
        if key and ok is not None:
            verdicts[key] = verdict
        rows.append([label, *[cell(t[n]) for n in names], goal, verdict])

    def get(d: dict[str, Any], *path: str) -> Any:
        for p in path:
            d = d.get(p) if isinstance(d, dict) else None  # type: ignore[assignment]
        return d

    dh = t.get("deployhook", {})
    worst = get(dh, "stall", "worst_ms")
    row("stall: worst GET during a 2 s deploy (ms)", lambda r: fmt(get(r, "stall", "worst_ms")),
        "< 10 ms", worst is not None and worst < 10, "stall")
    row("stall: p99 GET (ms)", lambda r: fmt(get(r, "stall", "p99_ms")))
    row("stall: worst / p99 GET, no deploy (noise floor, ms)",
        lambda r: f"{fmt(get(r, 'stall', 'idle_worst_ms'))} / "
                  f"{fmt(get(r, 'stall', 'idle_p99_ms'))}")
    b = get(dh, "burst") or {}
    row(f"burst: 2xx of {b.get('n', 30)} concurrent deliveries",
        lambda r: f"{get(r, 'burst', 'ok_2xx')}/{get(r, 'burst', 'n')}",
        "all", b.get("ok_2xx") == b.get("n"), "burst_2xx")
    row("burst: checkout reached the last SHA (s)",
        lambda r: (f"yes, {fmt(get(r, 'burst', 'seconds_to_last'), 2)}"
                   if get(r, "burst", "reached_last") else "no"),
        "reached", bool(b.get("reached_last")), "burst_reached")
    row("burst: all answered (s)", lambda r: fmt(get(r, "burst", "seconds_all_answered"), 2))
    row("burst: fetches", lambda r: fmt(get(r, "burst", "fetches")), "<= 3",
        b.get("fetches", 99) <= 3, "burst_fetches")
    row("deploy: delivery to updated checkout, median (ms)",
        lambda r: fmt(get(r, "overhead", "median_ms")))
    row("deploy: run time the server reports, median (ms)",
        lambda r: fmt(get(r, "overhead", "server_median_ms")))
    row("deploy: plain pull + submodule update, median (ms)",
        lambda r: fmt(get(r, "overhead", "plain_median_ms")))
    ratio = get(dh, "overhead", "ratio")
    row("deploy overhead (x plain git)", lambda r: fmt(get(r, "overhead", "ratio"), 2) + "x",
        "<= 1.05x", ratio is not None and ratio <= 1.05, "overhead")
    mine = get(dh, "overhead", "median_ms")
    deploy_peers = [get(t[n], "overhead", "median_ms") for n in names if n != "deployhook"]
    deploy_fastest = min((p for p in deploy_peers if p is not None), default=None)
    row("deploy: delivery to updated checkout, x fastest peer",
        lambda r: fmt(mine / deploy_fastest, 2) + "x" if mine and deploy_fastest and r["name"] ==
        "deployhook" else "", "<= 1.0x", None if mine is None or deploy_fastest is None
        else mine <= deploy_fastest, "overhead_peers")
    held = get(dh, "memory_after_deploys", "rss_mb")
    seed = get(t.get("seed", {}), "memory_after_deploys", "rss_mb")
    ratios = [f"{fmt(held / theirs, 2)}x{'' if n == 'seed' else ' ' + n}"
              for n in sorted(names, key=lambda n: n != "seed") if n != "deployhook"
              and held and (theirs := get(t[n], "memory_after_deploys", "rss_mb"))]

    def rss_cell(r: dict[str, Any]) -> str:
        mem = get(r, "memory_after_deploys") or {}
        return fmt(mem.get("rss_mb")) + (f" ({mem['processes']} proc)"
                                          if "processes" in mem else "")

    row("deploy: RSS of the process tree after the deploys (MB)", rss_cell,
        "<= 0.6x seed" + (f" ({'; '.join(ratios)})" if ratios else ""),
        None if not (held and seed) else held <= 0.6 * seed, "rss_deploys")
    rows += largerepo.rows(t, names)
    flooded = get(dh, "flood", "median_ms")
    peers = [get(t[n], "flood", "median_ms") for n in names if n != "deployhook"]
    fastest = min((p for p in peers if p is not None), default=None)
    row("flood: valid push to updated checkout, bad-signature flood (wrk 2x8), median (ms)",
        lambda r: fmt(get(r, "flood", "median_ms")), "<= fastest peer",
        flooded is not None and fastest is not None and flooded <= fastest, "flood")
    row("flood: bad-signature requests answered meanwhile (req/s)",
        lambda r: fmt(get(r, "flood", "flood", "rps"), 0))
    ignored = get(dh, "throughput", "ignored", "rps")
    base = get(t.get("blocking", {}), "throughput", "ignored", "rps")
    row("throughput: signed, ignored deliveries (req/s)",
        lambda r: fmt(get(r, "throughput", "ignored", "rps"), 0),
        ">= 1.0x blocking" + (f" ({fmt(ignored / base, 2)}x)" if ignored and base else ""),
        bool(ignored and base and ignored >= base), "throughput")
    row("throughput: bad signature (req/s)",
        lambda r: fmt(get(r, "throughput", "bad_signature", "rps"), 0))
    rss = get(dh, "memory", "rss_mb")
    row("memory: RSS of the process tree after the run (MB)",
        lambda r: fmt(get(r, "memory", "rss_mb")) + f" ({get(r, 'memory', 'processes')} proc)",
        "<= 30 MB", rss is not None and rss <= 30, "rss")
    row("memory: RSS before the wrk runs (MB)",
        lambda r: fmt(get(r, "memory_before_load", "rss_mb")))
    row("memory: RSS after a 25 MB delivery (MB)",
        lambda r: fmt(get(r, "memory_after_big", "rss_mb")))
    scale = results.get("scale", {})
    row("scale: verify+parse 25 MB in-process (ms)",
        lambda r: fmt(scale.get({"deployhook": "deployhook_read_delivery_ms",
                                 "blocking": "blocking_verify_and_parse_ms"}.get(
            r["name"], ""))))
    row("scale: 25 MB delivery round trip (ms)",
        lambda r: fmt(get(r, "big_delivery", "median_ms")))
    header = ["figure", *[t[n]["label"] for n in names], "target", "deployhook"]
    return [header, *rows], verdicts


def markdown(rows: list[list[str]]) -> str:
    """A GitHub/RST-friendly pipe table with aligned columns."""
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["| " + " | ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) + " |"
             for r in rows]
    lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(lines)


def write(results: dict[str, Any], args: argparse.Namespace, default: str) -> Path:
    """Write ``results`` as JSON to ``--output``, or to bench/``default`` when ``--output``
    was left at its own default; the path written."""
    output = BENCH / default if args.output == str(BENCH / "results.json") \
        else Path(args.output)
    output.write_text(json.dumps(results, indent=2) + "\n")
    return output


def summary(results: dict[str, Any], rows: list[list[str]], output: Path) -> None:
    """Print the table ``rows``, the load averages, the run's length and where it went."""
    took = f"{results['seconds']} s; " if "seconds" in results else ""
    print()
    print(markdown(rows))
    print(f"\nload average before {results['load_before']}, after {results['load_after']}; "
          f"{took}written to {output}")


def run_strangers(args: argparse.Namespace, rounds: int = 3) -> int:
    """The large-body figures only, for deployhook: ``rounds`` of each, all printed."""
    from fixtures import big_push_body

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    atexit.register(kill_all)
    work = Path(tempfile.mkdtemp(prefix="deployhook-bench-"))
    isolate_git(work)
    results: dict[str, Any] = {"date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
                               "machine": machine(), "stall_5x25mb": [], "strangers_20x26mib": []}
    body = big_push_body(25_000_000)
    try:
        (work / "deployhook").mkdir()
        target = TARGETS["deployhook"](make_repos(work / "deployhook"), free_port())
        target.start()
        results["memory_start"] = measure.memory(target.pid)
        for i in range(rounds):
            print(f"[strangers] round {i + 1}/{rounds} ...", flush=True)
            results["stall_5x25mb"].append(measure.big_stall(target, body))
            results["strangers_20x26mib"].append(measure.strangers(target))
        results["memory_end"] = measure.memory(target.pid)
        target.stop()
    finally:
        kill_all()
        shutil.rmtree(work, ignore_errors=True)
    write(results, args, "strangers.json")
    print(json.dumps({k: v for k, v in results.items() if k != "machine"}, indent=1))
    return 0


def run_deploy(args: argparse.Namespace, names: list[str]) -> int:
    """Deploy latency only: each server on the small repository, then on the large one;
    the table's deploy rows, bench/deploy.json."""
    # no wrk: no throughput here
    work, results = begin(("webhook",) if "webhook" in names else (), targets={})
    try:
        for name in names:
            (work / name).mkdir()
            target = TARGETS[name](make_repos(work / name), free_port())
            print(f"[{name}] deploy overhead ...", flush=True)
            try:
                target.start()
                results["targets"][name] = {"name": name, "label": target.label,
                                            "overhead": measure.overhead(target, target.repos,
                                                                         args.reps),
                                            "memory_after_deploys":
                                                measure.settled_memory(target.pid)}
            finally:
                target.stop()
        for name, large in largerepo.bench(names, work, args.reps).items():
            results["targets"][name]["large"] = large
    finally:
        kill_all()
        shutil.rmtree(work, ignore_errors=True)
    results["load_after"] = [round(x, 2) for x in os.getloadavg()]
    rows = [row for row in table(results)[0] if row[0].startswith(("figure", "deploy"))]
    results["table"] = rows
    summary(results, rows, write(results, args, "deploy.json"))
    return 0


def run_releases(args: argparse.Namespace) -> int:
    """Deploy time in releases mode against in-place, and disk per release."""
    work = Path(tempfile.mkdtemp(prefix="deployhook-bench-"))
    isolate_git(work)
    try:
        (work / "releases").mkdir()
        figures = measure.releases(make_repos(work / "releases"), args.reps)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    results = {"date": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "machine": machine(),
               "releases": figures}
    write(results, args, "releases.json")
    print(json.dumps(figures, indent=1))
    return 0


def run_fleet(args: argparse.Namespace) -> int:
    """Three daemons sharing a Redis against one alone (bench/fleet.py): bench/fleet.json."""
    import fleet

    work = Path(tempfile.mkdtemp(prefix="deployhook-bench-"))
    isolate_git(work)
    try:
        figures = fleet.run(work, args.rounds, 10)
    finally:
        kill_all()
        shutil.rmtree(work, ignore_errors=True)
    results = {"date": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "machine": machine(), **figures}
    write(results, args, "fleet.json")
    print(json.dumps(figures, indent=1))
    return 0


def begin(tools: tuple[str, ...], **header: Any) -> tuple[Path, dict[str, Any]]:
    """What a bench run starts with: SIGTERM exits (so that atexit's ``kill_all`` stops
    every process started), ``tools`` installed (:func:`ensure_tools`), a scratch folder
    with git isolated in it; returns that folder and the results' header (date, machine,
    load average before, then ``header``)."""
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    atexit.register(kill_all)
    ensure_tools(tools)
    work = Path(tempfile.mkdtemp(prefix="deployhook-bench-"))
    isolate_git(work)
    return work, {"date": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "machine": machine(),
                  "load_before": [round(x, 2) for x in os.getloadavg()], **header}


def run_targets(args: argparse.Namespace) -> int:
    """Many targets in one daemon: ``args.sites`` clones of one small origin.  Start time
    until /health answers and RSS, with 1 and with ``args.sites`` targets; then signed
    deliveries to a branch no target deploys at ``/hooks/<last target>``, wrk rounds
    alternating between the two daemons.  Results go to bench/targets.json."""
    from fixtures import make_clones

    work, results = begin(("wrk",), sites=args.sites, rounds=args.rounds,
                          duration=args.duration)
    started = time.time()
    try:
        print(f"making {args.sites} clones ...", flush=True)
        _, clones = make_clones(work, args.sites)
        daemons = [DeployhookTargets(work / "one", clones[:1], free_port()),
                   DeployhookTargets(work / "many", clones, free_port())]
        for daemon in daemons:
            (daemon.root / "status-password.txt").write_text(STATUS_PASSWORD + "\n")
            print(f"[{daemon.name}] start-up x{args.starts} ...", flush=True)
            results[daemon.name] = {"targets": len(daemon.clones), "hook": daemon.hook_url,
                                    "startup": measure.startup(daemon, args.starts)}
            results[daemon.name]["health"] = measure.health_latency(daemon, basic_auth())
            results[daemon.name]["idle_cpu"] = measure.idle_cpu(daemon)
        ignored = measure.ignored_deliveries(daemons, work, args.rounds, args.duration)
        for daemon in daemons:
            results[daemon.name]["ignored"] = ignored[daemon.name]
            results[daemon.name]["memory_after"] = measure.memory(daemon.pid)
            results[daemon.name]["alive"] = daemon.proc is not None and \
                daemon.proc.poll() is None
            daemon.stop()
    finally:
        kill_all()
        shutil.rmtree(work, ignore_errors=True)
    results["load_after"] = [round(x, 2) for x in os.getloadavg()]
    results["seconds"] = round(time.time() - started, 1)
    rows = targets_table(results, [d.name for d in daemons])
    results["table"] = rows
    summary(results, rows, write(results, args, "targets.json"))
    return 0


def run_targets1000(args: argparse.Namespace) -> int:
    """A thousand targets (``--sites``, default 1,000 here) in one daemon: bench/thousand.py;
    results to bench/targets1000.json."""
    import thousand

    work, results = begin(("wrk",), rounds=args.rounds, duration=args.duration)
    started = time.time()
    try:
        results |= thousand.run(work, args)
    finally:
        kill_all()
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
        else:
            print(f"fixtures kept in {work}")
    results["load_after"] = [round(x, 2) for x in os.getloadavg()]
    results["seconds"] = round(time.time() - started, 1)
    rows = thousand.table(results)
    results["table"] = rows
    summary(results, rows, write(results, args, "targets1000.json"))
    return 0


def targets_table(results: dict[str, Any], names: list[str]) -> list[list[str]]:
    """Rows for --only targets: one column per daemon, the goal, and the verdict."""
    one, many = (results[n] for n in names)
    rows = [["figure", *names, "goal", "verdict"]]

    def verdict(ok: bool) -> str:
        return "PASS" if ok else "MISS"

    cold, median = many["startup"]["cold_s"], many["startup"]["median_s"]
    rows.append(["start until /health answers, cold / median (s)",
                 *[f"{r['startup']['cold_s']:.2f} / {r['startup']['median_s']:.2f}"
                   for r in (one, many)], "< 2 s", verdict(max(cold, median) < 2)])
    rss = many["startup"]["memory"]["rss_mb"]
    rows.append(["RSS after start, process tree (MB)",
                 *[f"{r['startup']['memory']['rss_mb']:.1f} "
                   f"({r['startup']['memory']['processes']} proc)" for r in (one, many)],
                 "< 45 MB", verdict(rss < 45)])
    rows.append(["RSS after the wrk rounds, process tree (MB)",
                 *[f"{r['memory_after']['rss_mb']:.1f}" for r in (one, many)], "", ""])
    ratio = many["ignored"]["rps"] / one["ignored"]["rps"] if one["ignored"]["rps"] else 0
    rows.append(["ignored signed deliveries at /hooks/<name> (req/s, median)",
                 *[f"{r['ignored']['rps']:,.0f}" for r in (one, many)],
                 f"within 10% ({ratio:.2f}x)", verdict(ratio >= 0.9)])
    cpu = [r["ignored"]["cpu_ms_per_request"] for r in (one, many)]
    rows.append(["daemon CPU per ignored delivery (ms, median)",
                 *[f"{c:.3f}" for c in cpu], f"within 10% ({cpu[1] / cpu[0]:.2f}x)"
                 if cpu[0] else "", verdict(cpu[1] <= 1.1 * cpu[0])])
    rows.append(["daemon CPU while idle (% of a core)",
                 *[f"{r['idle_cpu']['percent_of_a_core']:.1f}" for r in (one, many)], "", ""])
    rows.append(["  rounds (req/s)", *[", ".join(f"{x:,.0f}" for x in r["ignored"]["rps_rounds"])
                                       for r in (one, many)], "", ""])
    rows.append(["  p99 (ms), non-2xx", *[f"{r['ignored']['p99_ms']}, {r['ignored']['non_2xx']}"
                                          for r in (one, many)], "", ""])
    rows.append(["GET /health with the password, median / worst (ms)",
                 *[f"{r['health']['median_ms']} / {r['health']['worst_ms']}"
                   for r in (one, many)], "", ""])
    return rows


def main() -> int:
    """Run every figure for every target, print the table, write results.json."""
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--targets", default=",".join(DEFAULT),
                        help=f"comma-separated subset of {','.join(ORDER)}")
    parser.add_argument("--duration", type=int, default=5, help="wrk seconds per run")
    parser.add_argument("--rounds", type=int, default=3,
                        help="wrk rounds per target (round-robin; the median is reported)")
    parser.add_argument("--reps", type=int, default=7, help="deploy-overhead repetitions")
    parser.add_argument("--burst", type=int, default=30, help="pushes in the burst")
    parser.add_argument("--burst-delay", type=float, default=0.25,
                        help="remote delay (s) during the burst")
    parser.add_argument("--stall-delay", type=float, default=2.0,
                        help="remote delay (s) during the stall deploy")
    parser.add_argument("--only", choices=["deploy", "strangers", "targets", "targets1000",
                                           "releases", "fleet"],
                        help="deploy: delivery -> updated checkout only, on the small and "
                        "the large repository, to bench/deploy.json; strangers: only the "
                        "large-body figures for deployhook (5 signed "
                        "25 MB at once; 20 wrongly signed 26 MiB), to bench/strangers.json; "
                        "targets: one daemon with --sites targets against one with 1 (start "
                        "time, RSS, ignored deliveries), to bench/targets.json; "
                        "releases: deploy time in releases mode against in-place and disk "
                        "per release, to bench/releases.json; fleet: bench/fleet.py; "
                        "targets1000: bench/thousand.py, to bench/targets1000.json")
    parser.add_argument("--sites", type=int, default=None,
                        help="--only targets: how many targets (clones) in the big daemon "
                        "(default 100); --only targets1000: how many sites (default 1,000)")
    parser.add_argument("--workers", type=int, default=4,
                        help="--only targets1000: the daemon's workers")
    parser.add_argument("--window", type=float, default=5.0,
                        help="--only targets1000: seconds over which the deliveries of the "
                        "push to every target are sent (0: all at once)")
    parser.add_argument("--starts", type=int, default=3,
                        help="--only targets: start-ups timed per daemon (the first cold)")
    parser.add_argument("--profile", action="store_true",
                        help="also profile deployhook with py-spy (bench/profiles/)")
    parser.add_argument("--output", default=str(BENCH / "results.json"))
    parser.add_argument("--keep", action="store_true", help="keep the fixtures directory")
    args = parser.parse_args()
    names = [n for n in args.targets.split(",") if n]
    unknown = set(names) - set(ORDER)
    if unknown:
        parser.error(f"unknown targets: {', '.join(sorted(unknown))}")

    if args.only == "strangers":
        return run_strangers(args)
    if args.only == "deploy":
        return run_deploy(args, [n for n in ORDER if n in names])
    if args.only == "releases":
        return run_releases(args)
    if args.only == "targets":
        args.sites = args.sites or 100
        return run_targets(args)
    if args.only == "targets1000":
        args.sites = args.sites or 1000
        return run_targets1000(args)
    if args.only == "fleet":
        return run_fleet(args)
    if args.profile and shutil.which("py-spy") is None:
        parser.error("--profile needs py-spy: python -m pip install py-spy")
    work, results = begin(("webhook", "wrk"), settings={
        k: v for k, v in vars(args).items() if k not in ("output", "keep")}, targets={})
    started = time.time()
    try:
        print("scale: building a 25 MB push and parsing it in-process ...", flush=True)
        big_body, results["scale"] = measure.scale_in_process()
        results["targets"] = bench_all([n for n in ORDER if n in names], work, args,
                                       big_body)
        if args.profile:
            import profiling

            print("[profile] py-spy on deployhook ...", flush=True)
            results["profile"] = profiling.run(work, BENCH / "profiles", args.duration)
    finally:
        kill_all()
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
        else:
            print(f"fixtures kept in {work}")
    results["load_after"] = [round(x, 2) for x in os.getloadavg()]
    results["seconds"] = round(time.time() - started, 1)
    rows, verdicts = table(results)
    results["verdicts"] = verdicts
    results["table"] = rows
    Path(args.output).write_text(json.dumps(results, indent=2) + "\n")
    summary(results, rows, Path(args.output))
    return 0


if __name__ == "__main__":
    sys.exit(main())
