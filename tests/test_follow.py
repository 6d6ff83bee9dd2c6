"""``deployhook show ID --follow``: a running run's output, live, from the record."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

from tests.helpers import Repos, deliver_push, start_daemon

TICKS = """
import sys, time
for n in range(5):
    print(f"tick {n} {time.time():.3f}", flush=True)
    time.sleep(1)
"""
ARGUMENT = "a-hidden-argument-value"


def test_show_follow_prints_each_line_as_it_comes_and_exits_with_the_outcome(
        repos: Repos, secret_file: Path) -> None:
    """post_deploy prints a line a second for 5 s: ``show --follow`` shows the first line
    while the run is still printing (before the last line is printed; how soon after
    its printing is printed: within a second on an idle machine), every line masked as
    the stored output is, and exits 0 once the run succeeded."""
    db = repos.root / "record.sqlite3"
    daemon = start_daemon(repos, secret_file, state_db=str(db), response_timeout=30.0,
                          post_deploy=[sys.executable, "-c", TICKS + f"#{ARGUMENT}\n",
                                       ARGUMENT])
    answers: list[tuple[int, dict]] = []
    try:
        daemon.wait_ready()
        sha = repos.commit("post.rst", "a watched deploy\n")
        sender = threading.Thread(target=lambda: answers.append(
            deliver_push(daemon.url, sha, delivery="f-1")))
        sender.start()
        run_id = _running_run(db)
        follower = subprocess.Popen(
            [sys.executable, "-m", "deployhook", "show", str(run_id), "--follow",
             "--config", str(repos.root / "config.py")],
            stdout=subprocess.PIPE, text=True, cwd=repos.root)
        assert follower.stdout is not None
        lines: list[tuple[float, str]] = []
        for line in follower.stdout:
            lines.append((time.time(), line.rstrip("\n")))
        assert follower.wait(30) == 0
        sender.join(30)
    finally:
        daemon.stop()
    assert answers and answers[0][0] == 200, answers
    ticks = [(seen, text) for seen, text in lines if text.startswith("  | tick ")]
    assert [text.split()[2] for _, text in ticks] == ["0", "1", "2", "3", "4"], lines
    seen, text = ticks[0]
    printed, last = float(text.split()[3]), float(ticks[-1][1].split()[3])
    print(f"\nfirst line shown {seen - printed:.2f} s after it was printed")
    assert seen < last, f"first line shown {seen - printed:.2f} s after printing, after the last"
    assert all(ARGUMENT not in text for _, text in lines)
    assert lines[-1][1] == f"run {run_id} ok"


def _running_run(db: Path) -> int:
    """The id of the first run once the daemon has recorded it as running."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            row = sqlite3.connect(db).execute(
                "SELECT id FROM runs WHERE outcome='running' ORDER BY id LIMIT 1").fetchone()
        except sqlite3.Error:
            row = None
        if row:
            return int(row[0])
        time.sleep(0.05)
    raise AssertionError("no run started")
