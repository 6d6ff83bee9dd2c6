"""Under attack: a valid push while wrk floods the server with wrongly signed pushes.

For one server (deployhook, the blocking baseline or ``webhook``): wrk (2 threads x 8
connections) POSTs a realistic push signed with the wrong secret, without pause; once
it has run for ``settle`` seconds, ``reps`` valid pushes (a submodule bump each, as in
the deploy-overhead figure) are delivered one after the other, each timed from the
request until the checkout and its submodule are at the pushed commits.  wrk is then
stopped (SIGINT: it prints its summary) and its rate is reported with the times.
"""

from __future__ import annotations

import json
import re
import signal
import statistics
import subprocess
import time
from pathlib import Path
from typing import Any

from fixtures import Repos, push_payload, read_head, signed
from measure import WRK_SCRIPT, deliver_and_wait
from targets import Target

THREADS, CONNECTIONS = 2, 8
WRONG = "sha256=" + "0" * 64


def under_flood(target: Target, repos: Repos, workdir: Path, reps: int = 5,
                settle: float = 1.5) -> dict[str, Any]:
    """Delivery-to-updated-checkout times of ``reps`` valid pushes during a bad-signature
    flood, their median, and the flood's own figures."""
    wrk = _start_wrk(target, workdir)
    times: list[float] = []
    problems: list[str] = []
    try:
        time.sleep(settle)
        for i in range(reps):
            before = read_head(repos.deployed) or ""
            sha, sub = repos.commit_submodule()
            body, headers = signed(push_payload(sha, before), delivery=f"flood-{i}")
            elapsed, _ = deliver_and_wait(target, repos, body, headers, (sha, sub),
                                          f"push {i}", problems)
            times.append(elapsed)
            if wrk.poll() is not None:
                problems.append(f"wrk ended early (exit {wrk.returncode})")
                break
    finally:
        flood = _stop_wrk(wrk)
    return {"reps": reps, "median_ms": round(statistics.median(times) * 1000, 1),
            "deploy_ms": [round(t * 1000, 1) for t in times], "flood": flood,
            "problems": problems[:5]}


def _start_wrk(target: Target, workdir: Path) -> subprocess.Popen[str]:
    body, headers = signed(push_payload("ab" * 20), delivery="flood-bad")
    headers["X-Hub-Signature-256"] = WRONG
    body_file = workdir / f"{target.name}-flood.body"
    body_file.write_bytes(body)
    script = workdir / f"{target.name}-flood.lua"
    script.write_text(WRK_SCRIPT.format(body=body_file, headers="\n".join(
        f'wrk.headers["{k}"] = "{v}"' for k, v in headers.items())))
    return subprocess.Popen(
        ["wrk", f"-t{THREADS}", f"-c{CONNECTIONS}", "-d120s", "--timeout", "5s",
         "-s", str(script), target.hook_url],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _stop_wrk(wrk: subprocess.Popen[str]) -> dict[str, Any]:
    """SIGINT wrk and read its summary: requests per second, answers that were not 2xx."""
    if wrk.poll() is None:
        wrk.send_signal(signal.SIGINT)
    try:
        out, err = wrk.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        wrk.kill()
        out, err = wrk.communicate()
    match = re.search(r"^JSON (\{.*\})$", out, re.MULTILINE)
    if match is None:
        return {"error": f"wrk exit {wrk.returncode}: {(out + err)[-300:]}"}
    stats = json.loads(match.group(1))
    seconds = stats["duration_us"] / 1e6 or 1.0
    return {"rps": round(stats["requests"] / seconds, 1), "requests": stats["requests"],
            "non_2xx": stats["status_errors"], "threads": THREADS, "connections": CONNECTIONS}
