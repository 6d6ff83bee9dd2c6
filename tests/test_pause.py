"""``deployhook pause`` / ``resume``: a paused target verifies, records and answers
deliveries ``202 paused`` and moves nothing; on resume one run deploys the newest."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from tests.helpers import (
    REPOSITORY,
    Daemon,
    Repos,
    basic_auth,
    deliver_push,
    http,
    small_checkouts,
    start_daemon,
    start_targets,
    wait_for,
)

SETTLE = 30  # seconds: a generous bound for the daemon to notice a resume and deploy


def cli(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "deployhook", *args, "--config", str(config)],
                          capture_output=True, text=True, cwd=config.parent, timeout=60)


def page(url: str) -> str:
    request = urllib.request.Request(url, headers=basic_auth())
    with urllib.request.urlopen(request, timeout=30) as response:
        return response.read().decode()


def _wait_for_head(daemon: Daemon, sha: str) -> dict:
    deadline = time.monotonic() + SETTLE
    while time.monotonic() < deadline:
        body = http("GET", daemon.url + "/health")[1]
        if body.get("head") == sha and not body.get("deploying"):
            return body
        time.sleep(0.1)
    raise AssertionError(f"HEAD not at {sha} within {SETTLE}s:\n{daemon.log()}")


def test_paused_pushes_are_answered_202_and_resume_deploys_the_newest_once(
        repos: Repos, secret_file: Path) -> None:
    db = repos.root / "record.sqlite3"
    daemon = start_daemon(repos, secret_file, state_db=str(db))
    config = repos.root / "config.py"
    before = Repos.head(repos.deployed)
    try:
        daemon.wait_ready()
        paused = cli(config, "pause")
        assert paused.returncode == 0, paused.stderr
        assert "default: paused by " in paused.stdout
        fetches = repos.fetches()
        shas = []
        for n in range(3):
            shas.append(repos.commit("post.rst", f"paused push {n}\n"))
            status, body = deliver_push(daemon.url, shas[-1], delivery=f"p-{n}")
            assert (status, body["result"]) == (202, "paused"), body
            assert "deployhook resume" in body["reason"]
        assert Repos.head(repos.deployed) == before
        assert repos.fetches() == fetches
        health = http("GET", daemon.url + "/health")[1]
        assert health["paused"]["by"].endswith(paused.stdout.split("paused by ")[1]
                                               .split(" since")[0].split("@")[1])
        assert "paused" in page(daemon.url + "/") and health["paused"]["by"] in page(
            daemon.url + "/")
        assert not health["deploying"] and health["head"] == before

        resumed = cli(config, "resume")
        assert resumed.returncode == 0, resumed.stderr
        assert "default: resumed" in resumed.stdout
        _wait_for_head(daemon, shas[-1])
    finally:
        daemon.stop()
    rows = sqlite3.connect(db).execute(
        "SELECT id, trigger, head_after, outcome FROM runs ORDER BY id").fetchall()
    resume_runs = [r for r in rows if r[1] == "resume"]
    assert len(resume_runs) == 1, rows
    run_id, _, head_after, outcome = resume_runs[0]
    assert (head_after, outcome) == (shas[-1], "ok")
    deliveries = sqlite3.connect(db).execute(
        "SELECT delivery_id, status, result, run_id FROM deliveries WHERE accepted=1"
        " ORDER BY id").fetchall()
    assert deliveries == [(f"p-{n}", 202, "paused", run_id) for n in range(3)]


def test_a_restart_while_paused_deploys_nothing_until_resume(
        repos: Repos, secret_file: Path) -> None:
    """The paused deliveries are accepted ones that no run covered: a restart must not
    deploy them as if a crash had interrupted them."""
    db = repos.root / "record.sqlite3"
    config = repos.root / "config.py"
    before = Repos.head(repos.deployed)
    daemon = start_daemon(repos, secret_file, state_db=str(db))
    try:
        daemon.wait_ready()
        assert cli(config, "pause", "--target", "default").returncode == 0
        sha = repos.commit("post.rst", "pushed while paused\n")
        assert deliver_push(daemon.url, sha, delivery="r-1")[0] == 202
    finally:
        daemon.stop()
    daemon = Daemon(config, daemon.port)
    try:
        health = daemon.wait_ready()
        assert health["paused"] is not None and health["head"] == before
        assert Repos.head(repos.deployed) == before
        assert cli(config, "resume", "--target", "default").returncode == 0
        _wait_for_head(daemon, sha)
    finally:
        daemon.stop()


def test_with_many_targets_a_pause_a_push_finds_shows_at_once_and_resume_deploys_it(
        repos: Repos, secret_file: Path) -> None:
    """Past 128 targets a refresh reads each target's pause file only every few seconds;
    the push that finds the pause hands it to its target at once (shown in ``/health``
    with its answer), and from then on every refresh reads it: the resume deploys the
    push accepted meanwhile."""
    db = repos.root / "record.sqlite3"
    checkouts = small_checkouts(repos.root, [f"site-{i:03d}" for i in range(299)])
    targets: dict[str, dict[str, str]] = {
        name: {"repo_path": str(path), "repository": f"octo-org/{name}"}
        for name, path in checkouts.items()}
    targets["blog"] = {"repo_path": str(repos.deployed), "repository": REPOSITORY}
    daemon = start_targets(repos.root, targets, secret_file=str(secret_file),
                           state_db=str(db))
    config = repos.root / "config.py"
    try:
        daemon.wait_ready(60)
        assert cli(config, "pause", "--target", "blog").returncode == 0
        sha = repos.commit("post.rst", "pushed while paused\n")
        status, body = deliver_push(daemon.url, sha, delivery="many-1")
        assert (status, body["result"]) == (202, "paused"), body
        def blog_health() -> dict:
            return http("GET", daemon.url + "/health?target=blog")[1]["targets"]["blog"]

        blog = blog_health()
        assert blog["paused"] is not None and blog["head"] != sha
        assert cli(config, "resume", "--target", "blog").returncode == 0
        wait_for(lambda: blog_health()["head"] == sha, SETTLE,
                 f"the resume's deploy:\n{daemon.log()}")
    finally:
        daemon.stop()
    runs = sqlite3.connect(db).execute(
        "SELECT target, trigger, head_after, outcome FROM runs").fetchall()
    assert runs == [("blog", "resume", sha, "ok")]


def test_pause_names_an_unknown_target(repos: Repos, secret_file: Path) -> None:
    config = repos.root / "config.py"
    start_daemon(repos, secret_file).stop()  # writes config.py
    result = cli(config, "pause", "--target", "nope")
    assert result.returncode == 2 and "no target 'nope' in this config" in result.stderr
    assert cli(config, "resume").stdout.strip() == "default: was not paused"
