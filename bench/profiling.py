"""Profiles of deployhook's hot paths with py-spy (``python bench/run.py --profile``).

- ignored: the daemon under ``py-spy record`` while wrk sends signed pushes to
  another branch (verified, then ignored); CPU samples per thread.
- deploy: the daemon under ``py-spy record --idle`` for sequential submodule-bump
  deploys, with a ``git`` shim on its PATH that logs every git command it runs.

py-spy here cannot attach to a running pid, so it launches the daemon itself.
Raw collapsed stacks and a text summary are written to ``bench/profiles/``.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from collections import Counter
from pathlib import Path
from typing import Any

import measure
from fixtures import Repos, make_repos, push_payload, read_head, signed
from targets import Deployhook, free_port, kill_group, request

SHIM = """#!/bin/sh
start=$(date +%s%N)
/usr/bin/git "$@"
rc=$?
echo "$start $(date +%s%N) $rc $*" >> '{log}'
exit $rc
"""
_LINE = re.compile(r"^(?P<stack>.*) (?P<count>\d+)$")
# Frames every sample of a thread has: left out of the inclusive lists.
_ROOTS = re.compile(r"\((threading\.py|<frozen runpy>|asyncio/runners\.py|deployhook/cli\.py|"
                    r"deployhook/__main__\.py)\)$|^(BaseEventLoop\.(run_forever|run_until_complete|"
                    r"_run_once)|_worker|_WorkItem\.run|Handle\._run) ")


class Profiled(Deployhook):
    """deployhook launched by ``py-spy record``."""

    def __init__(self, repos: Repos, port: int, raw: Path, idle: bool = False,
                 shim_dir: Path | None = None) -> None:
        super().__init__(repos, port)
        self.raw, self.idle, self.shim_dir = raw, idle, shim_dir

    def argv(self) -> list[str]:
        spy = ["py-spy", "record", "--rate", "200", "--format", "raw", "--threads",
               "--nonblocking", "-o", str(self.raw)]
        return [*spy, *(["--idle"] if self.idle else []), "--", *super().argv()]

    def env(self) -> dict[str, str]:
        env = super().env()
        if self.shim_dir is not None:
            env["PATH"] = f"{self.shim_dir}{os.pathsep}{os.environ.get('PATH', '')}"
        return env

    def stop(self) -> None:
        """SIGTERM the daemon (not py-spy), so py-spy writes its samples; then clean up."""
        if self.proc is None:
            return
        for pid in measure.process_tree(self.proc.pid)[1:]:
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            pass
        kill_group(self.proc, grace=3.0)
        self.proc = None


def parse(raw: Path) -> list[tuple[str, list[str], int]]:
    """(thread name, frames root-first without line numbers, samples) per raw line."""
    out = []
    for line in raw.read_text(errors="replace").splitlines():
        match = _LINE.match(line)
        if not match:
            continue
        frames = match.group("stack").split(";")
        thread = frames[0].split(": ", 1)[1] if ": " in frames[0] else frames[0]
        frames = [re.sub(r":\d+\)$", ")", f) for f in frames[1:]]
        out.append((thread, frames, int(match.group("count"))))
    return out


def summarise(stacks: list[tuple[str, list[str], int]], top: int = 15,
              thread_prefix: str = "", must: str = "") -> dict[str, Any]:
    """Samples per thread, and the top self and inclusive frames of the stacks in threads
    named ``thread_prefix``... that have a frame containing ``must``."""
    threads: Counter[str] = Counter()
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    for thread, frames, count in stacks:
        threads[re.sub(r"_\d+$", "", thread)] += count
        if not thread.startswith(thread_prefix) or not frames:
            continue
        if must and not any(must in frame for frame in frames):
            continue
        total += count
        own[frames[-1]] += count
        for frame in set(frames):
            if not _ROOTS.search(frame):
                inclusive[frame] += count

    def share(counter: Counter[str]) -> list[tuple[str, float]]:
        return [(f, round(100 * c / total, 1)) for f, c in counter.most_common(top)]

    return {"samples": total, "threads": dict(threads.most_common()),
            "self": share(own), "inclusive": share(inclusive)}


def ignored_profile(root: Path, out: Path, duration: int) -> dict[str, Any]:
    """CPU profile of the ignored-delivery path under wrk."""
    repos = make_repos(root)
    raw = out / "ignored.raw.txt"
    target = Profiled(repos, free_port(), raw)
    try:
        target.start()
        body, headers = signed(push_payload("a" * 40, "b" * 40, ref="refs/heads/feature"))
        load = measure.wrk(target, root, body, headers, "profile-ignored", duration)
    finally:
        target.stop()
    stacks = parse(raw)
    return {"wrk": load, "all": summarise(stacks),
            "ioloop": summarise(stacks, thread_prefix="MainThread"),
            "db": summarise(stacks, thread_prefix="deployhook-db")}


def deploy_profile(root: Path, out: Path, deploys: int = 10) -> dict[str, Any]:
    """Wall-time profile of the deploy path, and every git command it runs."""
    repos = make_repos(root)
    shim_dir, log = root / "shim", root / "git-calls.log"
    shim_dir.mkdir()
    (shim_dir / "git").write_text(SHIM.format(log=log))
    (shim_dir / "git").chmod(0o755)
    raw = out / "deploy.raw.txt"
    target = Profiled(repos, free_port(), raw, idle=True, shim_dir=shim_dir)
    calls: list[list[str]] = []
    try:
        target.start()
        for i in range(deploys + 1):
            before = read_head(repos.deployed) or ""
            sha, _ = repos.commit_submodule()
            if i == 1:
                log.write_text("")  # the first deploy warms up; count from the second
            request("POST", target.hook_url, *signed(push_payload(sha, before),
                                                     delivery=f"profile-{i}"), timeout=60)
        time.sleep(0.3)  # the record's last writes
        calls = [line.split(" ", 3) for line in log.read_text().splitlines()]
    finally:
        target.stop()
    per_command: Counter[str] = Counter()
    seconds: Counter[str] = Counter()
    for start, end, _, args in calls:
        words = args.split()
        key = " ".join(words[:2] if words and words[0] in ("submodule", "rev-parse") else
                       words[:1])
        per_command[key] += 1
        seconds[key] += (int(end) - int(start)) / 1e9
    stacks = parse(raw)
    return {
        "deploys": deploys, "git_calls_per_deploy": round(len(calls) / deploys, 1),
        "git_calls": [(k, round(v / deploys, 1), round(1000 * seconds[k] / deploys, 1))
                      for k, v in per_command.most_common()],
        "git_thread": summarise(stacks, top=25, thread_prefix="deployhook-git",
                                must="Checkout.deploy"),
    }


def run(work: Path, out: Path, duration: int) -> dict[str, Any]:
    """Both profiles; writes raw stacks and summary.txt to ``out``."""
    out.mkdir(exist_ok=True)
    for name in ("profile-ignored", "profile-deploy"):
        (work / name).mkdir()
    result = {"ignored": ignored_profile(work / "profile-ignored", out, duration),
              "deploy": deploy_profile(work / "profile-deploy", out)}
    (out / "summary.txt").write_text(render(result))
    return result


def render(result: dict[str, Any]) -> str:
    """The profiles as text."""
    lines = []
    ign = result["ignored"]
    lines.append(f"== ignored deliveries under wrk: {ign['wrk']['rps']} req/s "
                 f"(with py-spy attached); samples per thread: {ign['all']['threads']}")
    for part in ("ioloop", "db"):
        lines.append(f"-- {part} thread: top self frames (% of its {ign[part]['samples']} "
                     "samples)")
        lines += [f"  {p:5.1f}%  {f}" for f, p in ign[part]["self"]]
        lines.append(f"-- {part} thread: top inclusive frames")
        lines += [f"  {p:5.1f}%  {f}" for f, p in ign[part]["inclusive"]]
    dep = result["deploy"]
    lines.append(f"== deploy path ({dep['deploys']} submodule-bump deploys): "
                 f"{dep['git_calls_per_deploy']} git commands per deploy")
    lines.append("  command                 per deploy   ms per deploy (shim-timed)")
    lines += [f"  {k:<24}{n:>10}{ms:>14}" for k, n, ms in dep["git_calls"]]
    lines.append("-- git thread (wall time, --idle): top inclusive frames")
    lines += [f"  {p:5.1f}%  {f}" for f, p in dep["git_thread"]["inclusive"]]
    return "\n".join(lines) + "\n"
