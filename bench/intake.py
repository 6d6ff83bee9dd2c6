"""What strangers cost at the edges between routes (issue 21's acceptance figures).

    .venv/bin/python bench/intake.py [--output bench/intake.json]

Runs real daemons (``python -m deployhook serve``) on loopback, with the helpers of
``tests/test_intake.py`` (raw sockets, real git), and measures:

- 10 parallel 100 MiB POSTs to ``/health``, an unknown path and ``/deployments``:
  each answer's status and time (connect to the status line), the daemon's peak RSS;
- 10 parallel 26 MiB wrongly signed bodies at the shared path with two targets: the
  statuses and the daemon's peak RSS;
- 300 wrongly signed deliveries naming an unknown repository at the shared path with
  two targets, one carrying a forged log line: the statuses, the record's new rows,
  the aggregate count, the new log lines and whether the forged line appeared.
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.helpers import http, isolate_git  # noqa: E402
from tests.test_intake import (  # noqa: E402
    FORGED,
    MiB,
    blast,
    in_parallel,
    peak_rss,
    start_one,
    start_two,
    unknown_repository_push,
    wrongly_signed,
)

PARALLEL = 10


def timed_blast(port: int, path: str, size: int) -> dict[str, Any]:
    start = time.monotonic()
    status, _ = blast(port, path, size)
    return {"status": status, "ms": round((time.monotonic() - start) * 1000, 1)}


def routes(work: Path) -> dict[str, Any]:
    """Ten 100 MiB bodies at once to each route that takes none."""
    daemon = start_one(work)
    found: dict[str, Any] = {}
    try:
        for path in ("/health", "/no-such-path", "/deployments"):
            answers = in_parallel(PARALLEL, lambda p=path: timed_blast(daemon.port, p, 100 * MiB))
            found[path] = {"statuses": sorted({a["status"] for a in answers}, key=str),
                           "worst_ms": max(a["ms"] for a in answers)}
        found["peak_rss_mb"] = round(peak_rss(daemon) / MiB, 1)
    finally:
        daemon.stop()
    return found


def shared_path(work: Path) -> dict[str, Any]:
    """Two targets: 10 parallel 26 MiB bad bodies, then 300 forged strangers."""
    db = work / "state.sqlite3"
    daemon = start_two(work)
    found: dict[str, Any] = {}
    try:
        big = unknown_repository_push("octo-org/elsewhere", pad=26 * MiB - 1024)
        headers = wrongly_signed(big)
        start = time.monotonic()
        answers = in_parallel(PARALLEL, lambda: http("POST", daemon.url + "/github", big,
                                                     headers, auth=False, timeout=120)[0])
        found["bad_26mib"] = {"statuses": sorted(set(answers)),
                              "all_answered_s": round(time.monotonic() - start, 2),
                              "peak_rss_mb": round(peak_rss(daemon) / MiB, 1)}
        with sqlite3.connect(db) as conn:
            rows_before = conn.execute("SELECT count(*) FROM deliveries").fetchone()[0]
        lines_before = len(daemon.log().splitlines())
        statuses = []
        for n in range(300):
            body = unknown_repository_push("octo-org/elsewhere" + FORGED if n % 2 else
                                           f"octo-org/nobody-{n}")
            statuses.append(http("POST", daemon.url + "/github", body, wrongly_signed(body),
                                 auth=False)[0])
    finally:
        daemon.stop()
    with sqlite3.connect(db) as conn:
        rows = conn.execute("SELECT count(*) FROM deliveries").fetchone()[0] - rows_before
        counted = conn.execute("SELECT sum(count) FROM rejections").fetchone()[0]
    log = daemon.log()
    found["strangers_300"] = {
        "statuses": sorted(set(statuses)), "new_record_rows": rows,
        "rejections_counted": counted, "new_log_lines": len(log.splitlines()) - lines_before,
        "forged_line_in_log": "FORGED" in log}
    return found


def _folder(path: Path) -> Path:
    path.mkdir()
    return path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--output", default=str(ROOT / "bench" / "intake.json"))
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="deployhook-intake-"))
    (work / "home").mkdir()
    isolate_git(work / "home")
    results = {"date": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "load": os.getloadavg(),
               "routes_10x100mib": routes(_folder(work / "one")),
               "shared_path_two_targets": shared_path(_folder(work / "two"))}
    Path(args.output).write_text(json.dumps(results, indent=1) + "\n")
    print(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
