"""The daemon's git work goes through GitPython, which can leak in a long-running
process (persistent ``git cat-file`` processes behind object reads, objects relying on
``__del__``).  A Repo is opened per run and closed when it ends, and the deploy path
never reads objects through GitPython: after hundreds of deploys the daemon holds the
same files, no child process once idle, and about the same memory."""

from __future__ import annotations

import time
from pathlib import Path

from tests.helpers import (
    Daemon,
    Repos,
    child_commands,
    deliver_push,
    git,
    open_files,
    rss_kib,
    start_daemon,
)

RUNS = 200
WARM = 20  # runs before the first measure: caches, the record and the allocator settle
RSS_SLACK_KIB = 5 * 1024
LOCK = "/.git/deployhook.lock"
RESTING_SOCKETS = 3  # the listening socket and the socketpair asyncio wakes its loop with


def _deploy_next(daemon: Daemon, repos: Repos, n: int) -> None:
    """Commit and push once (no file: the fewest git processes), deliver it signed and
    wait for the answer saying it was deployed."""
    git(repos.pusher, "commit", "-q", "--allow-empty", "-m", f"run {n}")
    git(repos.pusher, "push", "-q", "origin", "HEAD:main")
    sha = Repos.head(repos.pusher)
    status, body = deliver_push(daemon.url, sha, delivery=f"d-{n}")
    assert status == 200 and body["result"] == "deployed" and body["head"] == sha, body


def _idle(daemon: Daemon, timeout: float = 20) -> tuple[list[str], list[str], int]:
    """(open files, child processes, RSS in KiB) once the daemon is at rest: the run and
    its git maintenance (after the answer) ended (no child process, the checkout's lock
    closed) and the delivery's connection closed (as many sockets as when it started
    listening: :data:`RESTING_SOCKETS`); else fail naming what is left."""
    pid = daemon.proc.pid
    deadline = time.monotonic() + timeout
    while True:
        files, children = open_files(pid), child_commands(pid)
        busy = children or any(f.endswith(LOCK) for f in files) or \
            files.count("socket") > RESTING_SOCKETS
        if not busy:
            return files, children, rss_kib(pid)
        assert time.monotonic() < deadline, f"never at rest: {children} {files}"
        time.sleep(0.01)


def test_two_hundred_deploys_leave_files_children_and_memory_flat(
        repos: Repos, secret_file: Path) -> None:
    daemon = start_daemon(repos, secret_file)
    try:
        daemon.wait_ready()
        for n in range(1, WARM + 1):
            _deploy_next(daemon, repos, n)
        files, children, rss = _idle(daemon)
        for n in range(WARM + 1, RUNS + 1):
            _deploy_next(daemon, repos, n)
        files_after, children_after, rss_after = _idle(daemon)
    finally:
        daemon.stop()
    print(f"\n[{RUNS} deploys] fds {len(files)} -> {len(files_after)}, "
          f"RSS {rss} -> {rss_after} KiB")
    assert files_after == files, (files, files_after)
    assert children_after == children == []
    assert rss_after - rss <= RSS_SLACK_KIB, (rss, rss_after)
