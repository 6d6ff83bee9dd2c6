"""The figures: stall, burst, deploy overhead, throughput (wrk), memory, scale.

Every loop here is bounded in time and count and ends by itself.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import statistics
import subprocess
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

from fixtures import SECRET, Repos, big_push_body, push_payload, read_head, signed
from targets import Target, request

WRK_SCRIPT = """\
wrk.method = "POST"
wrk.body = io.open("{body}", "rb"):read("*a")
{headers}
done = function(summary, latency, requests)
  io.write(string.format(
    "JSON {{\\"requests\\": %d, \\"duration_us\\": %d, \\"status_errors\\": %d, "
    .. "\\"connect_errors\\": %d, \\"read_errors\\": %d, \\"write_errors\\": %d, "
    .. "\\"timeouts\\": %d, \\"p50_us\\": %d, \\"p99_us\\": %d, \\"max_us\\": %d}}\\n",
    summary.requests, summary.duration, summary.errors.status, summary.errors.connect,
    summary.errors.read, summary.errors.write, summary.errors.timeout,
    latency:percentile(50), latency:percentile(99), latency.max))
end
"""


def percentile(values: list[float], q: float) -> float:
    """The ``q``-th percentile (nearest rank) of ``values``."""
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, round(q / 100 * len(ordered) + 0.5) - 1))
    return ordered[rank]


class Poller(threading.Thread):
    """GETs ``url`` every ``interval`` seconds on a keep-alive connection, noting latencies."""

    def __init__(self, url: str, interval: float = 0.01, limit: float = 60.0) -> None:
        super().__init__(daemon=True)
        host, _, rest = url.removeprefix("http://").partition("/")
        self.host, self.port = host.split(":")[0], int(host.split(":")[1])
        self.path = "/" + rest
        self.interval, self.limit = interval, limit
        self.samples: list[tuple[float, float, int]] = []  # (start, seconds, status)
        self.halt = threading.Event()

    def run(self) -> None:
        conn: http.client.HTTPConnection | None = None
        end = time.perf_counter() + self.limit  # bounded even if nobody stops it
        while not self.halt.is_set() and time.perf_counter() < end:
            start = time.perf_counter()
            try:
                if conn is None:
                    conn = http.client.HTTPConnection(self.host, self.port, timeout=30)
                conn.request("GET", self.path)
                response = conn.getresponse()
                response.read()
                status = response.status
            except OSError:
                status = 0
                if conn is not None:
                    conn.close()
                conn = None
            self.samples.append((start, time.perf_counter() - start, status))
            self.halt.wait(self.interval)
        if conn is not None:
            conn.close()


def stall(target: Target, repos: Repos, delay: float = 2.0, idle: float = 1.0) -> dict[str, Any]:
    """Latency of a cheap GET polled every ~10 ms while one deploy waits ``delay`` s on the
    remote; the same for ``idle`` seconds before it, as the machine's own noise floor."""
    before = read_head(repos.deployed) or ""
    sha = repos.commit("stall.rst")
    body, headers = signed(push_payload(sha, before), delivery="stall-1")
    repos.slow(delay)
    poller = Poller(target.health_url)
    try:
        poller.start()
        time.sleep(0.1)
        quiet = time.perf_counter()
        time.sleep(idle)
        start = time.perf_counter()
        status, answer, elapsed = request("POST", target.hook_url, body, headers, timeout=60)
        end = time.perf_counter()
        time.sleep(0.1)
    finally:
        poller.halt.set()
        poller.join(35)
        repos.slow(0)
    during = [s for s in poller.samples if start <= s[0] <= end]
    latencies = [s[1] for s in during]
    floor = [s[1] for s in poller.samples if quiet <= s[0] < start]
    return {
        "deploy_status": status, "deploy_seconds": round(elapsed, 3),
        "deployed": read_head(repos.deployed) == sha, "samples": len(during),
        "failed_polls": sum(1 for s in during if s[2] != 200),
        "worst_ms": _ms(max(latencies)) if latencies else None,
        "p99_ms": _ms(percentile(latencies, 99)) if latencies else None,
        "p50_ms": _ms(percentile(latencies, 50)) if latencies else None,
        "idle_samples": len(floor),
        "idle_worst_ms": _ms(max(floor)) if floor else None,
        "idle_p99_ms": _ms(percentile(floor, 99)) if floor else None,
        "answer": answer[:300].decode(errors="replace") if status >= 300 or status == 0 else "",
    }


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 2)


def burst(target: Target, repos: Repos, n: int = 30, delay: float = 0.25) -> dict[str, Any]:
    """``n`` pushes, then their ``n`` deliveries at once; 2xx, last SHA reached, fetches."""
    before = read_head(repos.pusher) or ""
    pushes = []
    for i in range(n):
        after = repos.commit(f"burst-{i % 5}.rst")
        pushes.append((before, after))
        before = after
    last = pushes[-1][1]
    bodies = [signed(push_payload(a, b), delivery=f"burst-{i}") for i, (b, a) in
              enumerate(pushes)]
    repos.slow(delay)
    fetches_before = repos.fetches()
    gate = threading.Barrier(n + 1)
    results: list[tuple[int, bytes, float]] = [(0, b"", 0.0)] * n

    def deliver(i: int) -> None:
        try:
            gate.wait(10)
        except threading.BrokenBarrierError:
            return
        results[i] = request("POST", target.hook_url, *bodies[i], timeout=90)

    threads = [threading.Thread(target=deliver, args=(i,), daemon=True) for i in range(n)]
    for thread in threads:
        thread.start()
    reached: float | None = None
    try:
        gate.wait(10)
        start = time.perf_counter()
        deadline = start + 120
        while time.perf_counter() < deadline:
            if reached is None and read_head(repos.deployed) == last:
                reached = time.perf_counter() - start
            answered = not any(t.is_alive() for t in threads)
            if reached is not None and answered:
                break
            if answered and time.perf_counter() - start > 5 + max(r[2] for r in results):
                break  # all answered long ago and the checkout never got there
            time.sleep(0.005)
        all_answered = max(r[2] for r in results)
    finally:
        for thread in threads:
            thread.join(1)
        repos.slow(0)
    statuses = Counter(r[0] for r in results)
    failures = [r[1][:200].decode(errors="replace") for r in results if not 200 <= r[0] < 300]
    return {
        "n": n, "remote_delay": delay, "ok_2xx": sum(1 for r in results if 200 <= r[0] < 300),
        "statuses": {str(k): v for k, v in sorted(statuses.items())},
        "reached_last": reached is not None,
        "seconds_to_last": round(reached, 3) if reached is not None else None,
        "seconds_all_answered": round(all_answered, 3),
        "fetches": repos.fetches() - fetches_before,
        "final_head_is_last": read_head(repos.deployed) == last,
        "sample_failure": failures[0] if failures else "",
    }


def deliver_and_wait(target: Target, repos: Repos, body: bytes, headers: dict[str, str],
                     heads: tuple[str, str], label: str, problems: list[str]
                     ) -> tuple[float, bytes]:
    """POST one delivery and wait (at most 30 s) until the deployed clone and its ``posts``
    submodule are at ``heads``; (seconds from the request, the answer's body).  A non-2xx
    answer or a checkout that never got there is appended to ``problems``."""
    sha, sub = heads
    start = time.perf_counter()
    status, answer, _ = request("POST", target.hook_url, body, headers, timeout=60)
    deadline = start + 30
    while not (read_head(repos.deployed) == sha
               and read_head(repos.deployed / "posts") == sub):
        if time.perf_counter() > deadline:
            problems.append(f"{label}: not deployed ({status}: {answer[:120]!r})")
            break
        time.sleep(0.002)
    elapsed = time.perf_counter() - start
    if not 200 <= status < 300:
        problems.append(f"{label}: {status}: {answer[:120]!r}")
    return elapsed, answer


def overhead(target: Target, repos: Repos, reps: int = 7) -> dict[str, Any]:
    """Delivery-to-updated-checkout time vs. the plain deploy script on an equivalent clone,
    for ``reps`` submodule bumps each.  One untimed warm-up round first; the order of the
    two alternates every round.  ``server_ms``: the run time deployhook reports, if any.
    """
    delivered: list[float] = []
    plain: list[float] = []
    server: list[float] = []
    problems: list[str] = []
    for i in range(reps + 1):
        before = read_head(repos.deployed) or ""
        sha, sub = repos.commit_submodule()
        body, headers = signed(push_payload(sha, before), delivery=f"overhead-{i}")

        def deliver(body: bytes = body, headers: dict[str, str] = headers,
                    sha: str = sha, sub: str = sub, i: int = i) -> float:
            elapsed, answer = deliver_and_wait(target, repos, body, headers, (sha, sub),
                                               f"round {i}", problems)
            reported = _json(answer).get("duration")
            if i > 0 and isinstance(reported, (int, float)):
                server.append(reported)
            return elapsed

        if i % 2 == 0:
            p, d = repos.plain_pull(), deliver()
        else:
            d, p = deliver(), repos.plain_pull()
        if i > 0:
            delivered.append(d)
            plain.append(p)
    med_d, med_p = statistics.median(delivered), statistics.median(plain)
    return {
        "reps": reps, "median_ms": round(med_d * 1000, 1),
        "plain_median_ms": round(med_p * 1000, 1), "ratio": round(med_d / med_p, 3),
        "server_median_ms": round(statistics.median(server) * 1000, 1) if server else None,
        "delivered_ms": [round(x * 1000, 1) for x in delivered],
        "plain_ms": [round(x * 1000, 1) for x in plain], "problems": problems[:5],
    }


def _json(data: bytes) -> dict[str, Any]:
    try:
        value = json.loads(data)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def wrk(target: Target, workdir: Path, body: bytes, headers: dict[str, str], name: str,
        duration: int = 5, threads: int = 2, connections: int = 16) -> dict[str, Any]:
    """Run wrk POSTing ``body`` with ``headers`` for ``duration`` seconds; requests per second."""
    body_file = workdir / f"{name}.body"
    body_file.write_bytes(body)
    lines = "\n".join(f'wrk.headers["{k}"] = "{v}"' for k, v in headers.items())
    script = workdir / f"{name}.lua"
    script.write_text(WRK_SCRIPT.format(body=body_file, headers=lines))
    proc = subprocess.run(
        ["wrk", f"-t{threads}", f"-c{connections}", f"-d{duration}s", "--timeout", "5s",
         "-s", str(script), target.hook_url],
        capture_output=True, text=True, timeout=duration + 30)
    match = re.search(r"^JSON (\{.*\})$", proc.stdout, re.MULTILINE)
    if proc.returncode != 0 or match is None:
        raise RuntimeError(f"wrk failed ({proc.returncode}): {proc.stdout}{proc.stderr}")
    stats = json.loads(match.group(1))
    seconds = stats["duration_us"] / 1e6
    return {
        "rps": round(stats["requests"] / seconds, 1), "requests": stats["requests"],
        "non_2xx": stats["status_errors"],
        "socket_errors": sum(stats[k] for k in ("connect_errors", "read_errors",
                                                 "write_errors", "timeouts")),
        "p50_ms": round(stats["p50_us"] / 1000, 2), "p99_ms": round(stats["p99_us"] / 1000, 2),
        "max_ms": round(stats["max_us"] / 1000, 2),
        "duration": duration, "threads": threads, "connections": connections,
    }


def throughput(target: Target, workdir: Path, duration: int = 5) -> dict[str, Any]:
    """wrk: signed pushes to another branch (verified, then ignored) and bad signatures."""
    body, headers = signed(push_payload("a" * 40, "b" * 40, ref="refs/heads/feature"),
                           delivery="wrk-ignored")
    ignored = wrk(target, workdir, body, headers, f"{target.name}-ignored", duration)
    bad = dict(headers, **{"X-Hub-Signature-256": "sha256=" + "0" * 64})
    bad_sig = wrk(target, workdir, body, bad, f"{target.name}-badsig", duration)
    return {"body_bytes": len(body), "ignored": ignored, "bad_signature": bad_sig}


def combine(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    """Several throughput() results as one: median req/s and p99, errors summed."""
    out: dict[str, Any] = {"body_bytes": rounds[0]["body_bytes"], "rounds": len(rounds)}
    for kind in ("ignored", "bad_signature"):
        runs = [r[kind] for r in rounds]
        out[kind] = {
            "rps": round(statistics.median(r["rps"] for r in runs), 1),
            "rps_rounds": [r["rps"] for r in runs],
            "p99_ms": round(statistics.median(r["p99_ms"] for r in runs), 2),
            "requests": sum(r["requests"] for r in runs),
            "non_2xx": sum(r["non_2xx"] for r in runs),
            "socket_errors": sum(r["socket_errors"] for r in runs),
            **{k: runs[0][k] for k in ("duration", "threads", "connections")},
        }
    return out


def process_tree(pid: int) -> list[int]:
    """``pid`` and all its descendants, from /proc."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry))
    tree, todo = [], [pid]
    while todo:
        current = todo.pop()
        tree.append(current)
        todo += children.get(current, [])
    return tree


def memory(pid: int) -> dict[str, Any]:
    """Resident set size (and proportional set size) summed over ``pid``'s process tree."""
    rss = pss = 0
    names = []
    for p in process_tree(pid):
        try:
            status = Path(f"/proc/{p}/status").read_text()
            rollup = Path(f"/proc/{p}/smaps_rollup").read_text()
        except OSError:
            continue
        rss += int(re.search(r"^VmRSS:\s+(\d+)", status, re.MULTILINE).group(1))  # type: ignore[union-attr]
        found = re.search(r"^Pss:\s+(\d+)", rollup, re.MULTILINE)
        pss += int(found.group(1)) if found else 0
        names.append(re.search(r"^Name:\s+(\S+)", status, re.MULTILINE).group(1))  # type: ignore[union-attr]
    return {"rss_mb": round(rss / 1024, 1), "pss_mb": round(pss / 1024, 1),
            "processes": len(names), "names": names}


def settled_memory(pid: int, interval: float = 0.1, limit: float = 5.0) -> dict[str, Any]:
    """memory(``pid``) once its process tree has kept the same processes over two looks
    ``interval`` seconds apart (or after ``limit`` seconds): a git child still finishing a
    deploy is not counted, helpers that stay (GitPython's ``cat-file``) are, for every
    server alike."""
    deadline = time.monotonic() + limit
    seen = sorted(process_tree(pid))
    while time.monotonic() < deadline:
        time.sleep(interval)
        now = sorted(process_tree(pid))
        if now == seen:
            break
        seen = now
    return memory(pid)


def big_delivery(target: Target, body: bytes, reps: int = 3) -> dict[str, Any]:
    """POST a signed 25 MB push to another branch (verified, parsed, ignored): round trips."""
    _, headers = signed(b"", delivery="big")
    headers["X-Hub-Signature-256"] = signed(body)[1]["X-Hub-Signature-256"]
    times, statuses = [], []
    for _ in range(reps):
        status, _, elapsed = request("POST", target.hook_url, body, headers, timeout=60)
        times.append(elapsed)
        statuses.append(status)
    return {"median_ms": round(statistics.median(times) * 1000, 1), "statuses": statuses,
            "bytes": len(body)}


def scale_in_process(size: int = 25_000_000, reps: int = 3) -> tuple[bytes, dict[str, Any]]:
    """Verify+parse a ``size``-byte push in this process: deployhook's forge path (size
    check, ``forges.verify``, ``parse_body``, ``forges.parse``) vs the blocking baseline's
    verify_and_parse.  Returns the body too (for the end-to-end runs)."""
    from blocking_server import verify_and_parse
    from tornado.httputil import HTTPHeaders

    from deployhook import forges
    from deployhook.forges.delivery import check_size, parse_body

    def verify_and_parse_github() -> forges.Event:
        check_size(len(body), 27262976)
        forges.verify("github", [SECRET], headers, body)
        return forges.parse("github", headers, parse_body(headers.get("Content-Type"), body))

    body = big_push_body(size)
    _, plain_headers = signed(body, delivery="big")
    headers = HTTPHeaders(plain_headers)
    out: dict[str, Any] = {"bytes": len(body)}
    for name, fn in (
        # The key keeps its name (bench/run.py, RESULTS.md): it was the GitHub-only
        # read_delivery, now the forge path the daemon takes for every forge.
        ("deployhook_read_delivery", verify_and_parse_github),
        ("blocking_verify_and_parse",
         lambda: verify_and_parse(SECRET, body, plain_headers["X-Hub-Signature-256"])),
    ):
        fn()  # warm-up
        times = []
        for _ in range(reps):
            start = time.perf_counter()
            fn()
            times.append(time.perf_counter() - start)
        out[name + "_ms"] = round(statistics.median(times) * 1000, 1)
    return body, out


def _concurrently(target: Target, bodies: list[tuple[bytes, dict[str, str]]],
                  pid: int | None = None) -> dict[str, Any]:
    """POST ``bodies`` all at once while polling /health (and ``pid``'s tree's RSS)."""
    poller = Poller(target.health_url, interval=0.005)
    statuses: list[int] = []
    peak = {"rss_mb": 0.0}
    done = threading.Event()

    def send(body: bytes, headers: dict[str, str]) -> None:
        statuses.append(request("POST", target.hook_url, body, headers, timeout=120)[0])

    def watch_memory() -> None:
        while not done.wait(0.05):
            peak["rss_mb"] = max(peak["rss_mb"], memory(pid)["rss_mb"] if pid else 0.0)

    senders = [threading.Thread(target=send, args=item, daemon=True) for item in bodies]
    watcher = threading.Thread(target=watch_memory, daemon=True)
    poller.start()
    watcher.start()
    time.sleep(1.0)
    start = time.perf_counter()
    for sender in senders:
        sender.start()
    for sender in senders:
        sender.join(180)
    end = time.perf_counter()
    done.set()
    poller.halt.set()
    poller.join(35)
    watcher.join(5)
    during = [s for s in poller.samples if start <= s[0] <= end]
    latencies = [s[1] for s in during] or [0.0]
    floor = [s[1] for s in poller.samples if s[0] < start] or [0.0]  # the machine's noise
    return {"statuses": sorted(statuses), "seconds": round(end - start, 2),
            "idle_worst_ms": _ms(max(floor)), "idle_p50_ms": _ms(percentile(floor, 50)),
            "samples": len(during), "failed_polls": sum(1 for s in during if s[2] != 200),
            "worst_ms": _ms(max(latencies)), "p99_ms": _ms(percentile(latencies, 99)),
            "p50_ms": _ms(percentile(latencies, 50)), "peak_rss_mb": peak["rss_mb"]}


def big_stall(target: Target, body: bytes, n: int = 5) -> dict[str, Any]:
    """/health latency while ``n`` signed 25 MB deliveries (verified, parsed, ignored:
    another branch) arrive at once."""
    _, headers = signed(b"", delivery="big")
    headers["X-Hub-Signature-256"] = signed(body)[1]["X-Hub-Signature-256"]
    return _concurrently(target, [(body, dict(headers, **{"X-GitHub-Delivery": f"big-{i}"}))
                                  for i in range(n)])


def strangers(target: Target, n: int = 20, size: int = 26 * 1024 * 1024) -> dict[str, Any]:
    """/health latency and peak RSS while ``n`` wrongly signed ``size``-byte bodies arrive."""
    body = b" " * size
    _, headers = signed(b"{}", delivery="stranger", secret=b"not the secret")
    return _concurrently(target, [(body, headers)] * n, pid=target.pid)


def releases(repos: Repos, reps: int = 7) -> dict[str, Any]:
    """Deploy time in releases mode against in-place on the bench repository (a commit
    each time, deployed in-process by ``run_deploy``, no daemon), interleaved: one
    warm-up pair, then ``reps`` pairs, the order within a pair alternating.  Also the
    median time of each recorded step per mode (what is not a step is "other"), the
    ratio of the medians and the median of the per-pair ratios, the load average
    before and after, the median time of the work each mode leaves for after the answer
    (``Checkout.housekeep``, run untimed after each deploy as the daemon runs it: git
    maintenance; in releases mode also deleting pruned releases and making the next
    release's git dirs), and the disk used per release (``du`` of the releases folder,
    hard links counted once, over the number of releases; its ``.git`` part too).
    ``keep_releases`` is the default (5), so the later deploys prune as they would."""
    from deployhook.git.checkout import Checkout
    from deployhook.service.runs import Unrecorded, run_deploy
    from deployhook.settings import Config

    site = repos.root / "site"
    modes = {
        "in-place": Config().default_target("inplace", repo_path=str(repos.plain),
                                            branch="main", reload="none"),
        "releases": Config().default_target(repo_path=str(repos.deployed), branch="main",
                                            reload="none", deploy_mode="releases",
                                            releases_path=str(site)),  # keeps 5: prunes
    }
    times: dict[str, list[float]] = {mode: [] for mode in modes}
    after: dict[str, list[float]] = {mode: [] for mode in modes}
    steps: dict[str, dict[str, list[float]]] = {mode: {} for mode in modes}
    load_before = [round(x, 2) for x in os.getloadavg()]
    for rep in range(reps + 1):  # the first pair warms up
        repos.commit()
        for mode in (list(modes) if rep % 2 else list(reversed(modes))):
            config = modes[mode]
            checkout = Checkout(config)
            start = time.perf_counter()
            result = run_deploy(checkout, Unrecorded(), target=config.name, trigger="bench",
                                branch="main")
            elapsed = time.perf_counter() - start
            start = time.perf_counter()
            checkout.housekeep()  # what the daemon does after the answer, untimed
            later = time.perf_counter() - start
            checkout.close()
            if not result.ok:
                raise RuntimeError(f"{mode} deploy failed: {result.reason}")
            if rep:
                times[mode].append(elapsed)
                after[mode].append(later)
                for step in result.steps:
                    steps[mode].setdefault(step.name, []).append(step.duration)
                steps[mode].setdefault("other", []).append(
                    elapsed - sum(step.duration for step in result.steps))
    load_after = [round(x, 2) for x in os.getloadavg()]
    folders = [p for p in (site / "releases").iterdir() if p.is_dir()]
    used = _du(site / "releases")
    git_used = sum(_du(p / ".git") for p in folders)
    tree = int(subprocess.run(["du", "-sk", "--exclude=.git", str(repos.plain)],
                              capture_output=True, text=True, check=True).stdout.split()[0])
    in_place, released = times["in-place"], times["releases"]
    return {
        "reps": reps,
        "load_before": load_before, "load_after": load_after,
        "in_place_ms_median": _ms(statistics.median(in_place)),
        "releases_ms_median": _ms(statistics.median(released)),
        "ratio_of_medians": round(statistics.median(released) / statistics.median(in_place), 2),
        "ratio_per_pair_median": round(statistics.median(
            r / i for r, i in zip(released, in_place, strict=True)), 2),
        "after_the_answer_ms_median": {mode: _ms(statistics.median(values))
                                       for mode, values in after.items()},
        "in_place_ms": [_ms(t) for t in in_place],
        "releases_ms": [_ms(t) for t in released],
        "steps_ms_median": {mode: {name: _ms(statistics.median(values))
                                   for name, values in named.items()}
                            for mode, named in steps.items()},
        "releases": len(folders),
        "kib_per_release": round(used / len(folders), 1),
        "git_kib_per_release": round(git_used / len(folders), 1),
        "checked_out_kib": tree,
    }


def startup(target: Target, reps: int = 3) -> dict[str, Any]:
    """Seconds from starting the process until /health answers 200 (polled every 5 ms),
    ``reps`` times: the first on a fresh record (cold), the others on the record the
    previous start left.  The server is left running after the last start, and the RSS
    of its process tree (and of the daemon alone) is read then."""
    times = []
    for i in range(reps):
        if i:
            target.stop()
        start = time.perf_counter()
        target.start(timeout=60, interval=0.005)
        times.append(time.perf_counter() - start)
    own = Path(f"/proc/{target.pid}/status").read_text()
    found = re.search(r"^VmRSS:\s+(\d+)", own, re.MULTILINE)
    return {"cold_s": round(times[0], 3), "seconds": [round(t, 3) for t in times],
            "median_s": round(statistics.median(times), 3),
            "memory": memory(target.pid),
            "daemon_rss_mb": round(int(found.group(1)) / 1024, 1) if found else None}


def _du(path: Path) -> int:
    """KiB ``du -sk`` says ``path`` uses (each hard-linked file once)."""
    return int(subprocess.run(["du", "-sk", str(path)], capture_output=True, text=True,
                              check=True).stdout.split()[0])


def ignored_deliveries(targets: list[Target], workdir: Path, rounds: int = 3,
                       duration: int = 5) -> dict[str, dict[str, Any]]:
    """wrk: signed GitHub pushes to a branch no target deploys, POSTed to each server's
    ``hook_url`` (verified, then ignored; signed with its ``hook_secret`` when it has
    one, else the bench's ``SECRET``), ``rounds`` rounds round-robin over ``targets``,
    the order reversed every other round (so a drift in the machine's load hits all
    alike); per target the median req/s and every round's."""
    from deployhook.forges import sign_headers

    out: dict[str, dict[str, Any]] = {}
    runs: dict[str, list[dict[str, Any]]] = {t.name: [] for t in targets}
    for i in range(rounds):
        for target in targets if i % 2 == 0 else targets[::-1]:
            print(f"[{target.name}] ignored deliveries, round {i + 1}/{rounds} (wrk) ...",
                  flush=True)
            repository = f"octo-org/{target.hook_url.rsplit('/', 1)[1]}"
            payload = push_payload("a" * 40, "b" * 40, ref="refs/heads/feature")
            payload["repository"].update(full_name=repository,
                                         name=repository.partition("/")[2])
            body = json.dumps(payload, separators=(",", ":")).encode()
            headers = sign_headers("github", getattr(target, "hook_secret", SECRET), body, "push",
                                   delivery_id="wrk-ignored")
            if i == 0:  # what every request of the rounds gets: verified, then ignored
                status, answer, _ = request("POST", target.hook_url, body, headers)
                if status != 202:
                    raise RuntimeError(f"{target.name}: {status} {answer[:300]!r}, not 202")
                out[target.name] = {"answer": _json(answer)}
            cpu = cpu_seconds(target.pid)
            result = wrk(target, workdir, body, headers, f"{target.name}-ignored", duration)
            result["cpu_ms_per_request"] = round(
                (cpu_seconds(target.pid) - cpu) * 1000 / max(1, result["requests"]), 3)
            runs[target.name].append(result)
    for name, results in runs.items():
        out[name] |= {"rps": round(statistics.median(r["rps"] for r in results), 1),
                     "rps_rounds": [r["rps"] for r in results],
                     "p99_ms": round(statistics.median(r["p99_ms"] for r in results), 2),
                     "cpu_ms_per_request": round(statistics.median(
                         r["cpu_ms_per_request"] for r in results), 3),
                     "cpu_ms_rounds": [r["cpu_ms_per_request"] for r in results],
                     "requests": sum(r["requests"] for r in results),
                     "non_2xx": sum(r["non_2xx"] for r in results),
                     "socket_errors": sum(r["socket_errors"] for r in results)}
    return out


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time used so far by ``pid``'s process tree, in seconds."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for p in process_tree(pid):
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / ticks


def idle_cpu(target: Target, seconds: float = 5.0) -> dict[str, Any]:
    """The CPU the server's process tree uses while no request arrives, over ``seconds``:
    its background work (e.g. re-reading every target's HEAD), in % of one core."""
    before, start = cpu_seconds(target.pid), time.perf_counter()
    time.sleep(seconds)
    used, elapsed = cpu_seconds(target.pid) - before, time.perf_counter() - start
    return {"percent_of_a_core": round(100 * used / elapsed, 2), "seconds": seconds}


def health_latency(target: Target, auth: dict[str, str], n: int = 50) -> dict[str, Any]:
    """Median and worst time of ``n`` authenticated GET /health (every target's entry)."""
    times, statuses, size, entries = [], [], 0, 0
    for _ in range(n):
        status, body, elapsed = request("GET", target.health_url, headers=auth, timeout=10)
        times.append(elapsed)
        statuses.append(status)
        size, entries = len(body), len(_json(body).get("targets") or {})
    return {"median_ms": _ms(statistics.median(times)), "worst_ms": _ms(max(times)),
            "statuses": sorted(set(statuses)), "bytes": size, "targets": entries}
