"""``pre_deploy`` (before HEAD moves; a failure changes nothing) and ``on_failure``
(after any failed run, with the reason), with real repositories and a real daemon."""

from __future__ import annotations

import json
import sqlite3
import sys
from pathlib import Path

from tests.helpers import Repos, deliver_push, git, start_daemon

# Each script writes next to the checkout (its parent is the test's folder).
RECORD_ENV = """
import json, os, sys
name = sys.argv[1]
out = os.path.join(os.environ["DEPLOYHOOK_REPO_PATH"], os.pardir, name + ".json")
env = {k: v for k, v in os.environ.items() if k.startswith("DEPLOYHOOK_")}
with open(out, "w") as f:
    json.dump({"env": env, "cwd": os.getcwd()}, f)
print(name, "ran")
sys.exit(int(sys.argv[2]))
"""


def script(name: str, status: int = 0) -> list[str]:
    return [sys.executable, "-c", RECORD_ENV, name, str(status)]


def _ran(repos: Repos, name: str) -> dict:
    path = repos.root / f"{name}.json"
    return json.loads(path.read_text()) if path.exists() else {}


def _tree(repos: Repos) -> dict[str, bytes]:
    """Every file of the checkout's work tree (not .git) and its bytes."""
    root = repos.deployed
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and ".git" not in p.relative_to(root).parts}


def test_a_failing_pre_deploy_changes_nothing_and_on_failure_gets_its_reason(
        repos: Repos, secret_file: Path) -> None:
    """pre_deploy exits 3: answered 500 with its reason, HEAD and the work tree as they
    were (nothing left "unfinished"), on_failure ran with that reason; the run records
    both steps."""
    before, tree = Repos.head(repos.deployed), _tree(repos)
    db = repos.root / "record.sqlite3"
    daemon = start_daemon(repos, secret_file, state_db=str(db),
                          pre_deploy=script("pre", 3), on_failure=script("failure"))
    try:
        daemon.wait_ready()
        sha = repos.commit("post.rst", "the new post\n")
        status, body = deliver_push(daemon.url, sha, delivery="pre-1")
    finally:
        daemon.stop()
    assert status == 500, body
    assert body["reason"].startswith("pre_deploy failed: pre ran (exit status 3)"), body
    assert before in body["reason"]
    assert Repos.head(repos.deployed) == before == body["head"]
    assert _tree(repos) == tree
    assert git(repos.deployed, "status", "--porcelain") == ""
    assert not (repos.deployed / ".git" / "deployhook-unfinished").exists()
    pre = _ran(repos, "pre")["env"]
    assert pre["DEPLOYHOOK_AFTER"] == sha and pre["DEPLOYHOOK_HEAD_BEFORE"] == before
    failure = _ran(repos, "failure")
    assert failure["env"]["DEPLOYHOOK_REASON"] == body["reason"]
    assert Path(failure["cwd"]).resolve() == repos.deployed.resolve()
    steps = [row[0] for row in sqlite3.connect(db).execute(
        "SELECT name FROM steps WHERE run_id=? ORDER BY seq", (body["run"],))]
    assert steps[-2:] == ["pre_deploy", "on_failure"]


def test_pre_deploy_runs_before_head_moves_and_on_failure_not_after_a_success(
        repos: Repos, secret_file: Path) -> None:
    before = Repos.head(repos.deployed)
    daemon = start_daemon(repos, secret_file, pre_deploy=script("pre"),
                          on_failure=script("failure"))
    try:
        daemon.wait_ready()
        sha = repos.commit("post.rst", "another post\n")
        status, body = deliver_push(daemon.url, sha, delivery="pre-2")
        assert status == 200, body
        assert Repos.head(repos.deployed) == sha
        assert _ran(repos, "pre")["env"]["DEPLOYHOOK_HEAD_BEFORE"] == before
        assert _ran(repos, "failure") == {}
        # already deployed: no update, so no pre_deploy either
        (repos.root / "pre.json").unlink()
        assert deliver_push(daemon.url, sha, delivery="pre-3")[0] == 200
        assert _ran(repos, "pre") == {}
    finally:
        daemon.stop()


def test_on_failure_failing_is_only_recorded(repos: Repos, secret_file: Path) -> None:
    """post_deploy fails, then on_failure fails too: the answer is post_deploy's failure,
    on_failure's is a step of the run."""
    db = repos.root / "record.sqlite3"
    daemon = start_daemon(repos, secret_file, state_db=str(db),
                          post_deploy=script("post", 4), on_failure=script("failure", 5))
    try:
        daemon.wait_ready()
        sha = repos.commit("post.rst", "a failing post\n")
        status, body = deliver_push(daemon.url, sha, delivery="pre-4")
    finally:
        daemon.stop()
    assert status == 500, body
    assert body["reason"].startswith(f"updated to {sha} but post_deploy failed"), body
    assert _ran(repos, "failure")["env"]["DEPLOYHOOK_REASON"] == body["reason"]
    rows = sqlite3.connect(db).execute(
        "SELECT name, status FROM steps WHERE run_id=? ORDER BY seq", (body["run"],))
    assert list(rows)[-2:] == [("post_deploy", 4), ("on_failure", 5)]
