"""A thousand targets in one daemon (issue 26): the generator and the figures.

``make_sites(root, n)`` builds ``n`` sites, each with its own bare origin, its own
checkout and its own secret, cheaply: one seed repository (one small commit), each origin
a ``git clone --bare --shared`` of it and each checkout a local clone of its origin
(objects hard-linked).  :meth:`Sites.advance` makes one new commit in the seed and gives
it to every origin with no git process per origin: the new loose objects are hard-linked
into each origin's object folder and its ``refs/heads/main`` is rewritten, so every
checkout has something of its own to fetch.

``python bench/run.py --only targets1000`` runs :func:`run`: start-up and RSS, ``check``
over every target, ignored deliveries at ``/hooks/<last>`` against a one-target daemon
(interleaved), and the storm: a signed push delivery to every target at once (sent by
``python bench/thousand.py send PLAN OUT``, a process of its own), with /health polled
throughout by another process of its own (``python bench/thousand.py health URL OUT``):
polled from a thread of this process, /health's latency included the time its thread
waited for this process's GIL (the sampler's pass over /proc, reading 1,000 HEADs).
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import sqlite3
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fixtures import git, push_payload, read_head, sign
from targets import DeployhookTargets

from tests.helpers import STATUS_PASSWORD

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent


@dataclass
class Site:
    """One target's fixtures: its bare origin, its checkout and its secret."""

    name: str
    origin: Path
    checkout: Path
    secret_file: Path
    secret: bytes

    @property
    def repository(self) -> str:
        return f"octo-org/{self.name}"


@dataclass
class Sites:
    """Every site, and the seed whose commits :meth:`advance` hands to every origin."""

    root: Path
    seed: Path  # a bare repository: the origins borrow its objects (alternates)
    pusher: Path  # a clone of the seed, where new commits are made
    sites: list[Site]

    def advance(self) -> tuple[str, str]:
        """Commit in the pusher, push to the seed, and move every origin's ``main`` to
        the new commit (its objects hard-linked in); returns (before, after)."""
        before = git(self.pusher, "rev-parse", "HEAD")
        (self.pusher / "index.html").write_text(f"<p>a small site, {time.time_ns()}</p>\n")
        git(self.pusher, "commit", "-q", "-am", "update the site")
        git(self.pusher, "push", "-q", "origin", "HEAD:main")
        after = git(self.pusher, "rev-parse", "HEAD")
        objects = git(self.seed, "rev-list", "--objects", f"{before}..{after}").split()
        shas = [o for o in objects if len(o) == 40]
        loose = [self.seed / "objects" / s[:2] / s[2:] for s in shas]
        for site in self.sites:
            for sha, path in zip(shas, loose, strict=True):
                folder = site.origin / "objects" / sha[:2]
                folder.mkdir(exist_ok=True)
                if not (folder / sha[2:]).exists():
                    os.link(path, folder / sha[2:])
            ref = site.origin / "refs" / "heads" / "main"
            ref.parent.mkdir(parents=True, exist_ok=True)
            temporary = ref.with_suffix(".tmp")
            temporary.write_text(after + "\n")
            temporary.replace(ref)
        return before, after


def make_sites(root: Path, n: int = 1000, parallel: int = 3) -> Sites:
    """``n`` sites under ``root`` (which must exist), named t000, t001, ... (``parallel``
    clones at once)."""
    seed = root / "seed.git"
    git(root, "init", "-q", "--bare", "-b", "main", str(seed))
    # Loose objects stay loose on push: advance() hard-links them into every origin.
    git(seed, "config", "receive.unpackLimit", "1000")
    pusher = root / "pusher"
    git(root, "clone", "-q", str(seed), str(pusher))
    (pusher / "index.html").write_text("<p>a small site</p>\n")
    git(pusher, "add", ".")
    git(pusher, "commit", "-q", "-m", "a small site")
    git(pusher, "push", "-q", "origin", "HEAD:main")
    for folder in ("origins", "sites", "secrets"):
        (root / folder).mkdir()
    width = max(3, len(str(n - 1)))

    def make(i: int) -> Site:
        name = f"t{i:0{width}d}"
        origin, checkout = root / "origins" / f"{name}.git", root / "sites" / name
        git(root, "clone", "-q", "--bare", "--shared", str(seed), str(origin))
        git(root, "clone", "-q", "--no-local", str(origin), str(checkout))
        secret = secrets.token_hex(16).encode()
        secret_file = root / "secrets" / name
        secret_file.write_bytes(secret + b"\n")
        secret_file.chmod(0o600)
        return Site(name, origin, checkout, secret_file, secret)

    pool = ThreadPoolExecutor(parallel)
    try:
        made = list(pool.map(make, range(n)))
    finally:  # interrupted: the clones not begun are not made
        pool.shutdown(wait=True, cancel_futures=True)
    return Sites(root, seed, pusher, made)


class SitesDaemon(DeployhookTargets):
    """One daemon serving ``sites`` (each its own secret file), deliveries to
    ``/hooks/<last site>``; ``settings`` are added at the top level of config.py."""

    def __init__(self, root: Path, sites: list[Site], port: int,
                 settings: dict[str, Any] | None = None) -> None:
        self.sites = sites
        self.settings = settings or {}
        super().__init__(root, [s.checkout for s in sites], port)
        self.hook_secret = sites[-1].secret  # measure.ignored_deliveries signs with it

    def argv(self) -> list[str]:
        config = self.root / "config.py"
        values = {
            "address": "127.0.0.1", "port": self.port, "reload": "none", "stop_timeout": 5.0,
            "state_db": str(self.root / "deployhook.sqlite3"), **self.settings,
            "targets": {s.name: {"repo_path": str(s.checkout), "repository": s.repository,
                                 "secret_file": str(s.secret_file)} for s in self.sites},
        }
        config.write_text("".join(f"{k} = {v!r}\n" for k, v in values.items()))
        return [sys.executable, "-m", "deployhook", "serve", "--config", str(config)]


def check_time(daemon: SitesDaemon) -> dict[str, Any]:
    """``deployhook check`` over the daemon's config (stdout a pipe: no progress line),
    and once more on a pseudo-terminal to see its progress indication; seconds, exit
    status, lines printed, and the progress seen on the terminal."""
    import pty

    config = str(daemon.root / "config.py")
    argv = [sys.executable, "-m", "deployhook", "check", "--config", config]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    start = time.perf_counter()
    proc = subprocess.run(argv, capture_output=True, text=True, env=env, cwd=daemon.root,
                          timeout=600)
    seconds = time.perf_counter() - start
    fails = [line for line in proc.stdout.splitlines() if line.startswith("FAIL")]
    start = time.perf_counter()
    master, terminal = pty.openpty()
    child = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=terminal, stderr=terminal,
                             env=env, cwd=daemon.root)
    os.close(terminal)
    chunks: list[bytes] = []
    while True:
        try:
            data = os.read(master, 65536)
        except OSError:  # EIO: the child closed the terminal
            break
        if not data:
            break
        chunks.append(data)
    status = child.wait(600)
    os.close(master)
    tty_seconds = time.perf_counter() - start
    shown = b"".join(chunks).decode(errors="replace")
    progress = [p.strip() for p in shown.replace("\r", "\n").splitlines()
                if p.strip().startswith("checked ")]
    return {"seconds": round(seconds, 2), "status": proc.returncode,
            "lines": len(proc.stdout.splitlines()), "fail_lines": fails[:5],
            "progress_in_pipe": "checked " in proc.stdout + proc.stderr,
            "tty_seconds": round(tty_seconds, 2), "tty_status": status,
            "tty_progress_updates": len(progress), "tty_progress_sample": progress[:2] +
            progress[-1:]}


# -- the storm ------------------------------------------------------------------------------

def storm_plan(daemon: SitesDaemon, before: str, after: str, path: Path,
               window: float = 5.0) -> None:
    """Write what the sender needs: the address, the ``window`` (seconds) to send every
    delivery in, and per site a signed delivery."""
    deliveries = []
    for i, site in enumerate(daemon.sites):
        payload = push_payload(after, before)
        payload["repository"].update(full_name=site.repository, name=site.name)
        body = json.dumps(payload, separators=(",", ":")).encode()
        headers = {"X-GitHub-Event": "push", "X-GitHub-Delivery": f"storm-{i}",
                   "User-Agent": "GitHub-Hookshot/044aadd", "Content-Type": "application/json",
                   "X-Hub-Signature-256": sign(body, site.secret)}
        deliveries.append({"path": f"/hooks/{site.name}", "headers": headers,
                           "body": body.decode()})
    path.write_text(json.dumps({"port": daemon.port, "window": window,
                                "deliveries": deliveries}))


async def _send_one(port: int, delivery: dict[str, Any], timeout: float) -> dict[str, Any]:
    """POST one delivery on a connection of its own; status, result, reason and times."""
    sent = time.time()
    out: dict[str, Any] = {"path": delivery["path"], "sent": sent}
    try:
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection("127.0.0.1", port), timeout)
        body = delivery["body"].encode()
        head = "".join(f"{k}: {v}\r\n" for k, v in delivery["headers"].items())
        writer.write(f"POST {delivery['path']} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                     f"Content-Length: {len(body)}\r\nConnection: close\r\n{head}\r\n"
                     .encode() + body)
        out["written"] = time.time()
        answer = await asyncio.wait_for(reader.read(), timeout)
        writer.close()
        status_line, _, rest = answer.partition(b"\r\n")
        out["status"] = int(status_line.split()[1])
        data = json.loads(rest.partition(b"\r\n\r\n")[2] or b"{}")
        out.update(result=data.get("result"), reason=str(data.get("reason", ""))[:200],
                   run=data.get("run"))
    except (OSError, ValueError, IndexError, TimeoutError) as exc:
        out.update(status=0, result="error", reason=f"{type(exc).__name__}: {exc}"[:200])
    out["answered"] = time.time()
    return out


async def _send_all(plan: dict[str, Any], timeout: float) -> list[dict[str, Any]]:
    """Every delivery of ``plan``, spread evenly over its ``window`` seconds (0: all at
    once), as a forge's workers send the hooks of one push to many repositories."""
    count, window = len(plan["deliveries"]), plan.get("window", 0.0)

    async def paced(i: int, delivery: dict[str, Any]) -> dict[str, Any]:
        await asyncio.sleep(i * window / count)
        return await _send_one(plan["port"], delivery, timeout)

    return await asyncio.gather(*(paced(i, d) for i, d in enumerate(plan["deliveries"])))


def send(plan_file: Path, out_file: Path, timeout: float = 120.0) -> None:
    """The sender process: every delivery of ``plan_file`` at once; answers to
    ``out_file``."""
    plan = json.loads(plan_file.read_text())
    started = time.time()
    answers = asyncio.run(_send_all(plan, timeout))
    out_file.write_text(json.dumps({"started": started, "answers": answers}))


PROBE_NICE = -10  # the /health poller's priority, when the bench may raise it (root)


class HealthPoller:
    """``python bench/thousand.py health URL OUT``: /health polled every 10 ms by a
    process of its own until :meth:`stop`; then :attr:`samples` as
    :class:`measure.Poller` gives them (``time.perf_counter`` is the machine's monotonic
    clock: comparable between processes)."""

    def __init__(self, url: str, workdir: Path) -> None:
        self.out = workdir / "health-samples.json"
        self.out.unlink(missing_ok=True)
        self.proc = subprocess.Popen([sys.executable, str(BENCH / "thousand.py"), "health",
                                      url, str(self.out)], stdin=subprocess.PIPE)
        self.samples: list[tuple[float, float, int]] = []
        self.nice = 0  # its priority: raised when allowed, so that what it measures is
        try:  # the daemon, not how long a busy machine keeps the poller itself waiting
            os.setpriority(os.PRIO_PROCESS, self.proc.pid, PROBE_NICE)
            self.nice = PROBE_NICE
        except OSError:
            pass

    def stop(self) -> None:
        """Stop polling (close its stdin) and read the samples."""
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        self.proc.wait(60)
        self.samples = [tuple(s) for s in json.loads(self.out.read_text())]  # type: ignore[misc]


def poll_health(url: str, out: Path, limit: float = 900.0) -> None:
    """The health poller's process: :class:`measure.Poller` until stdin closes."""
    from measure import Poller

    poller = Poller(url, interval=0.01, limit=limit)
    poller.start()
    sys.stdin.read()
    poller.halt.set()
    poller.join(35)
    out.write_text(json.dumps(poller.samples))


def _deployed(sites: list[Site], sha: str) -> int:
    return sum(1 for s in sites if read_head(s.checkout) == sha)


def _record_runs(db: Path, since: float) -> list[dict[str, Any]]:
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30) as conn:
        conn.row_factory = sqlite3.Row
        return [dict(r) for r in conn.execute(
            "SELECT id, target, trigger, started, finished, outcome, head_before, head_after"
            " FROM runs WHERE started >= ? ORDER BY started", (since,))]


def _record_deliveries(db: Path, since: float) -> list[dict[str, Any]]:
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30) as conn:
        conn.row_factory = sqlite3.Row
        return [dict(r) for r in conn.execute(
            "SELECT d.delivery_id, d.target, d.status, d.result, d.run_id, r.started AS"
            " run_started FROM deliveries d LEFT JOIN runs r ON r.id = d.run_id"
            " WHERE d.received >= ?", (since,))]


def most_at_once(runs: list[dict[str, Any]]) -> int:
    """The most runs of ``runs`` that were under way at the same moment."""
    edges = sorted([(r["started"], 1) for r in runs] +
                   [(r["finished"] or r["started"], -1) for r in runs],
                   key=lambda e: (e[0], e[1]))  # an end before a start at the same time
    now = peak = 0
    for _, step in edges:
        now += step
        peak = max(peak, now)
    return peak


# The git commands of a deploy (a poll's ls-remote, and the upload-pack it starts, and
# the maintenance after a run's answer are none: they run outside the workers bound)
DEPLOY_COMMANDS = {b"fetch", b"checkout", b"merge", b"reset", b"read-tree", b"submodule",
                   b"checkout-index", b"clone"}


class Sampler(threading.Thread):
    """Counts the checkouts in which the daemon runs a git deploy command
    (:data:`DEPLOY_COMMANDS`) every ``interval`` seconds (its process tree's working
    folders): the git deploys under way as the process tree shows them."""

    def __init__(self, pid: int, sites: Path, interval: float = 0.02) -> None:
        super().__init__(daemon=True)
        self.pid, self.sites, self.interval = pid, str(sites), interval
        self.peak, self.samples = 0, 0
        self.at_peak: list[str] = []  # the commands seen at the peak
        self.halt = threading.Event()

    def run(self) -> None:
        from measure import process_tree

        while not self.halt.wait(self.interval):
            busy: set[str] = set()
            commands = []
            for p in process_tree(self.pid)[1:]:
                try:
                    cwd = os.readlink(f"/proc/{p}/cwd")
                    argv = Path(f"/proc/{p}/cmdline").read_bytes().split(b"\0")
                except OSError:
                    continue
                if argv[0] not in (b"git", b"/usr/bin/git") or \
                        not set(argv[1:3]) & DEPLOY_COMMANDS:
                    continue
                if cwd.startswith(self.sites + "/"):
                    busy.add(cwd[len(self.sites) + 1:].split("/", 1)[0])
                    commands.append(b" ".join(argv[:4]).decode(errors="replace"))
            if len(busy) > self.peak:
                self.peak, self.at_peak = len(busy), sorted(commands)
            self.samples += 1


def storm(daemon: SitesDaemon, sites: Sites, workdir: Path, workers: int,
          response_timeout: float, window: float = 5.0, limit: float = 600.0
          ) -> dict[str, Any]:
    """A push to every site, then its delivery to every target, all sent within
    ``window`` seconds (a process of its own sends them); /health polled every 10 ms until
    every checkout is at the new commit and every answer came.  Returns the figures (see
    bench/RESULTS.md)."""
    from measure import _ms, memory, percentile

    load_before = [round(x, 2) for x in os.getloadavg()]
    since = time.time()  # a poll may deploy the new commit before its delivery comes
    before, after = sites.advance()
    plan, answers_file = workdir / "storm-plan.json", workdir / "storm-answers.json"
    storm_plan(daemon, before, after, plan, window)
    poller = HealthPoller(daemon.health_url, workdir)
    sampler = Sampler(daemon.pid, sites.root / "sites")
    sampler.start()
    time.sleep(1.0)
    start = time.perf_counter()
    sender = subprocess.Popen([sys.executable, str(BENCH / "thousand.py"), "send", str(plan),
                               str(answers_file)], cwd=workdir)
    deadline = start + limit
    all_deployed = None
    while time.perf_counter() < deadline:
        if all_deployed is None and _deployed(sites.sites, after) == len(sites.sites):
            all_deployed = time.perf_counter() - start
        if all_deployed is not None and sender.poll() is not None:
            break
        time.sleep(0.5)
    sender.wait(60)
    end = time.perf_counter()
    time.sleep(1.0)  # the runs' last record writes
    poller.stop()
    sampler.halt.set()
    sampler.join(5)
    load_after = [round(x, 2) for x in os.getloadavg()]
    sent = json.loads(answers_file.read_text())
    answers = sent["answers"]
    runs = _record_runs(Path(daemon.root / "deployhook.sqlite3"), since - 1)
    rows = _record_deliveries(Path(daemon.root / "deployhook.sqlite3"), since - 1)
    return {
        "targets": len(sites.sites), "workers": workers, "response_timeout": response_timeout,
        "window_s": window,
        "load_before": load_before, "load_after": load_after,
        "sent_within_s": round(max(a.get("written", a["sent"]) for a in answers)
                               - sent["started"], 2),
        "all_deployed_s": None if all_deployed is None else round(all_deployed, 2),
        "all_answered_s": round(max(a["answered"] for a in answers) - sent["started"], 2),
        "total_s": round(end - start, 2),
        **_answers(answers, rows, response_timeout),
        **_runs(runs, sites, after, workers),
        "git_deploys_seen_at_once": sampler.peak, "sampler_samples": sampler.samples,
        "git_commands_at_peak": sampler.at_peak,
        **_health(poller.samples, start, end, _ms, percentile), "health_poller_nice": poller.nice,
        "memory_after": memory(daemon.pid),
    }


def _answers(answers: list[dict[str, Any]], rows: list[dict[str, Any]],
             response_timeout: float) -> dict[str, Any]:
    """What the senders were answered, and whether each 202 said honestly whether its
    deploy had started: "queued" before its run started, "deploying" after (the record's
    run start against the moment the answer came)."""
    by_status: dict[str, int] = {}
    by_result: dict[str, int] = {}
    for a in answers:
        by_status[str(a["status"])] = by_status.get(str(a["status"]), 0) + 1
        by_result[str(a["result"])] = by_result.get(str(a["result"]), 0) + 1
    started = {r["delivery_id"]: r["run_started"] for r in rows}
    dishonest = []
    for i, a in enumerate(answers):
        if a["status"] != 202:
            continue
        run_started = started.get(f"storm-{i}")
        if a["result"] == "queued" and run_started is not None and \
                run_started < a["answered"] - 0.05:
            dishonest.append((i, a["result"], "its run had started"))
        elif a["result"] == "deploying" and (run_started is None or
                                             run_started > a["answered"] + 0.05):
            dishonest.append((i, a["result"], "its run had not started"))
    waits = sorted(a["answered"] - a["sent"] for a in answers)
    return {"answers_by_status": by_status, "answers_by_result": by_result,
            "errors": [a for a in answers if a["status"] in (0, 500, 503, 504)][:5],
            "answer_s_median": round(waits[len(waits) // 2], 2),
            "answer_s_worst": round(waits[-1], 2),
            "answered_beyond_timeout": sum(1 for w in waits if w > response_timeout + 1),
            "sample_queued": next((a for a in answers if a["result"] == "queued"), None),
            "dishonest_202": len(dishonest), "dishonest_sample": dishonest[:5]}


def _runs(runs: list[dict[str, Any]], sites: Sites, after: str, workers: int
          ) -> dict[str, Any]:
    """Exactly once: one run moved each target's HEAD; how many runs, and how many at once."""
    moved: dict[str, int] = {}
    per_target: dict[str, int] = {}
    for r in runs:
        per_target[r["target"]] = per_target.get(r["target"], 0) + 1
        if r["head_after"] and r["head_after"] != r["head_before"]:
            moved[r["target"]] = moved.get(r["target"], 0) + 1
    names = [s.name for s in sites.sites]
    peak = most_at_once(runs)
    return {
        "runs": len(runs), "runs_by_trigger": _count(r["trigger"] for r in runs),
        "outcomes": _count(r["outcome"] for r in runs),
        "deployed_exactly_once": sum(1 for n in names if moved.get(n) == 1),
        "deployed_more_than_once": [n for n in names if moved.get(n, 0) > 1][:10],
        "never_deployed": [n for n in names if n not in moved][:10],
        "targets_with_two_runs_or_more": sum(1 for n in names if per_target.get(n, 0) > 1),
        "checkouts_at_new_commit": _deployed(sites.sites, after),
        "runs_at_once_max": peak, "runs_at_once_ok": peak <= workers,
    }


def _count(values: Any) -> dict[str, int]:
    out: dict[str, int] = {}
    for v in values:
        out[str(v)] = out.get(str(v), 0) + 1
    return out


def _health(samples: list[tuple[float, float, int]], start: float, end: float, ms: Any,
            percentile: Any) -> dict[str, Any]:
    during = [s for s in samples if start <= s[0] <= end]
    quiet = [s[1] for s in samples if s[0] < start] or [0.0]
    latencies = [s[1] for s in during] or [0.0]
    return {"health_samples": len(during),
            "health_failed": sum(1 for s in during if s[2] != 200),
            "health_worst_ms": ms(max(latencies)), "health_p99_ms": ms(percentile(latencies, 99)),
            "health_p50_ms": ms(percentile(latencies, 50)),
            "health_quiet_worst_ms": ms(max(quiet))}


def settle(daemon: SitesDaemon, quiet: float = 3.0, limit: float = 120.0) -> float:
    """Wait until the daemon's process tree used under 5% of a core over ``quiet`` seconds
    (the start's catch-up polls done); seconds waited."""
    from measure import cpu_seconds

    start = time.perf_counter()
    while time.perf_counter() - start < limit:
        used = cpu_seconds(daemon.pid)
        time.sleep(quiet)
        if cpu_seconds(daemon.pid) - used < 0.05 * quiet:
            break
    return round(time.perf_counter() - start, 1)


def run(work: Path, args: Any) -> dict[str, Any]:
    """Every figure of ``--only targets1000`` (see the module); the daemons are stopped."""
    import measure
    from targets import free_port

    results: dict[str, Any] = {"sites": args.sites, "workers": args.workers}
    print(f"making {args.sites} sites (origin, checkout, secret each) ...", flush=True)
    start = time.perf_counter()
    sites = make_sites(work, args.sites)
    results["generate_s"] = round(time.perf_counter() - start, 1)
    settings = {"workers": args.workers, "keep_runs": 100000}
    one = SitesDaemon(work / "one", sites.sites[-1:], free_port(), settings)
    many = SitesDaemon(work / "many", sites.sites, free_port(), settings)
    daemons = [one, many]
    try:
        for daemon in daemons:
            (daemon.root / "status-password.txt").write_text(STATUS_PASSWORD + "\n")
            print(f"[{daemon.name}] start-up x{args.starts} ...", flush=True)
            results[daemon.name] = {"targets": len(daemon.sites),
                                    "startup": measure.startup(daemon, args.starts)}
        print(f"[{many.name}] deployhook check ...", flush=True)
        results["check"] = check_time(many)
        for daemon in daemons:
            results[daemon.name]["settle_s"] = settle(daemon)
            results[daemon.name]["idle_cpu"] = measure.idle_cpu(daemon)
            results[daemon.name]["memory_settled"] = measure.settled_memory(daemon.pid)
        ignored = measure.ignored_deliveries(daemons, work, args.rounds, args.duration)
        for daemon in daemons:
            results[daemon.name]["ignored"] = ignored[daemon.name]
        one.stop()
        results[many.name]["settle_before_storm_s"] = settle(many)
        print(f"[{many.name}] a push to every target at once ...", flush=True)
        results["storm"] = storm(many, sites, work, args.workers, 8.0, args.window)
        results[many.name]["alive"] = many.proc is not None and many.proc.poll() is None
    finally:
        for daemon in daemons:
            daemon.stop()
    return results


def table(results: dict[str, Any]) -> list[list[str]]:
    """Rows for --only targets1000: the figure, the value, the goal and the verdict."""
    one, many = results["deployhook-1-targets"], results[f"deployhook-{results['sites']}-targets"]
    s, c = results["storm"], results["check"]
    rows = [["figure", "value", "goal", "verdict"]]

    def add(label: str, value: str, goal: str = "", ok: bool | None = None) -> None:
        rows.append([label, value, goal, "" if ok is None else ("PASS" if ok else "MISS")])

    st = many["startup"]
    add("start until /health answers, cold / median (s)",
        f"{st['cold_s']:.2f} / {st['median_s']:.2f}", "< 3 s",
        max(st["cold_s"], st["median_s"]) < 3)
    settled = many["memory_settled"]
    add("RSS: the daemon after start / its process tree once settled (MB)",
        f"{st['daemon_rss_mb']:.1f} / {settled['rss_mb']:.1f} ({settled['processes']} proc)",
        "< 60 MB", max(st["daemon_rss_mb"], settled["rss_mb"]) < 60)
    add("deployhook check over every target (s)",
        f"{c['seconds']:.1f} (exit {c['status']}; on a tty {c['tty_progress_updates']} "
        f"progress updates)", "< 60 s, progress on a tty",
        c["seconds"] < 60 and c["tty_progress_updates"] > 0 and not c["progress_in_pipe"])
    cpu = [r["ignored"]["cpu_ms_per_request"] for r in (one, many)]
    rps = [r["ignored"]["rps"] for r in (one, many)]
    add("ignored deliveries at /hooks/<last>: req/s, 1 target / all",
        f"{rps[0]:,.0f} / {rps[1]:,.0f} ({rps[1] / rps[0]:.2f}x)", "same within noise")
    add("  daemon CPU per ignored delivery (ms), 1 target / all",
        f"{cpu[0]:.3f} / {cpu[1]:.3f} ({cpu[1] / cpu[0]:.2f}x)", "within 10%",
        cpu[1] <= 1.1 * cpu[0])
    idle = [r["idle_cpu"]["percent_of_a_core"] for r in (one, many)]
    add("  daemon CPU while idle (% of a core), 1 target / all",
        f"{idle[0]:.1f} / {idle[1]:.1f}", "")
    net = [c - i * 10 / r for c, i, r in zip(cpu, idle, rps, strict=True)]  # ms a request
    add("  the same net of the idle CPU (polls, HEAD refresh), 1 target / all",
        f"{net[0]:.3f} / {net[1]:.3f} ({net[1] / net[0]:.2f}x)", "within 10%",
        net[1] <= 1.1 * net[0])
    add("storm: deliveries sent within (s)", f"{s['sent_within_s']:.2f}", "< 10 s",
        s["sent_within_s"] < 10)
    add("storm: targets deployed exactly once",
        f"{s['deployed_exactly_once']}/{s['targets']} ({s['runs']} runs)", "all",
        s["deployed_exactly_once"] == s["targets"])
    add("storm: most runs at once (record) / git deploys seen at once",
        f"{s['runs_at_once_max']} / {s['git_deploys_seen_at_once']}",
        f"<= workers ({s['workers']})",
        s["runs_at_once_max"] <= s["workers"] and s["git_deploys_seen_at_once"] <= s["workers"])
    add("storm: /health worst / p99 / p50 (ms)",
        f"{s['health_worst_ms']} / {s['health_p99_ms']} / {s['health_p50_ms']}",
        "worst < 50 ms", s["health_worst_ms"] < 50)
    add("storm: answers", ", ".join(f"{k}: {v}" for k, v in s["answers_by_result"].items()),
        "202 queued past response_timeout, no errors",
        not s["errors"] and s["dishonest_202"] == 0)
    add("storm: all deployed / all answered / total (s)",
        f"{s['all_deployed_s']} / {s['all_answered_s']} / {s['total_s']}", "")
    add("storm: load average before / after", f"{s['load_before']} / {s['load_after']}", "")
    return rows


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "send":
        send(Path(sys.argv[2]), Path(sys.argv[3]))
    elif len(sys.argv) == 4 and sys.argv[1] == "health":
        poll_health(sys.argv[2], Path(sys.argv[3]))
    else:
        sys.exit("usage: thousand.py send PLAN OUT | health URL OUT "
                 "(python bench/run.py --only targets1000)")
