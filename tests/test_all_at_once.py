"""Issue 26, a thousand targets, in small: a push to every target at once.

Thirty targets, each with its own bare origin, checkout and secret, in one real daemon
with ``workers = 2``; each target's ``post_deploy`` writes when it starts and ends.  A
signed delivery to every target, all at once: every target is deployed exactly once,
never more than ``workers`` runs (and ``post_deploy`` commands) go on at a time, and
an answer the daemon gives before its deploy has started says so: 202 ``queued``
(also behind its own target's run).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from deployhook.forges import sign_headers
from tests.helpers import (
    SECRET,
    Daemon,
    deliver_push,
    git,
    http,
    make_repos,
    push_payload,
    start_daemon,
    start_targets,
    wait_for,
)

TARGETS = 30
WORKERS = 2
# The deploy's own work (post_deploy) takes this long, so that runs would overlap
# without the workers bound and the last ones start long after response_timeout.
POST_DEPLOY = ("echo \"$(basename \"$DEPLOYHOOK_REPO_PATH\") start $(date +%s%N)\" >> \"$1\"; "
               "sleep 0.2; "
               "echo \"$(basename \"$DEPLOYHOOK_REPO_PATH\") end $(date +%s%N)\" >> \"$1\"")


@dataclass
class Sites:
    daemon: Daemon
    root: Path
    names: list[str]
    secrets: dict[str, bytes]
    pusher: Path

    def push(self) -> str:
        """A new commit pushed to every origin; its SHA."""
        (self.pusher / "index.html").write_text(f"<p>{time.time_ns()}</p>\n")
        git(self.pusher, "commit", "-q", "-am", "update")
        for name in self.names:
            git(self.pusher, "push", "-q", str(self.root / "origins" / f"{name}.git"),
                "HEAD:main")
        return git(self.pusher, "rev-parse", "HEAD")

    def head(self, name: str) -> str:
        return git(self.root / "sites" / name, "rev-parse", "HEAD")


@pytest.fixture
def sites(tmp_path: Path) -> Iterator[Sites]:
    pusher = tmp_path / "pusher"
    git(tmp_path, "init", "-q", "-b", "main", str(pusher))
    (pusher / "index.html").write_text("<p>a small site</p>\n")
    git(pusher, "add", ".")
    git(pusher, "commit", "-q", "-m", "a small site")
    names = [f"s{i:02d}" for i in range(TARGETS)]
    targets, secrets = {}, {}
    for folder in ("origins", "sites", "secrets"):
        (tmp_path / folder).mkdir()
    for name in names:
        origin = tmp_path / "origins" / f"{name}.git"
        git(tmp_path, "init", "-q", "--bare", "-b", "main", str(origin))
        git(pusher, "push", "-q", str(origin), "HEAD:main")
        git(tmp_path, "clone", "-q", str(origin), str(tmp_path / "sites" / name))
        secrets[name] = f"the secret of {name} 0123456789".encode()
        secret_file = tmp_path / "secrets" / name
        secret_file.write_bytes(secrets[name] + b"\n")
        secret_file.chmod(0o600)
        targets[name] = {"repo_path": str(tmp_path / "sites" / name),
                         "repository": f"octo-org/{name}", "secret_file": str(secret_file)}
    daemon = start_targets(tmp_path, targets, workers=WORKERS, response_timeout=0.5,
                           post_deploy=["sh", "-c", POST_DEPLOY, "sh",
                                        str(tmp_path / "post_deploy.log")])
    try:
        daemon.wait_ready()
        yield Sites(daemon, tmp_path, names, secrets, pusher)
    finally:
        daemon.stop()


Answers = dict[str, tuple[int, dict[str, Any], float, float]]


def deliver_all(sites: Sites, before: str, after: str) -> Answers:
    """Every target's signed push delivery sent at once (a thread each); per target the
    status, the answer, when it was sent and when the answer came (time.time())."""
    answers: Answers = {}
    gate = threading.Barrier(len(sites.names))

    def send(name: str) -> None:
        payload = push_payload(after, before)
        payload["repository"].update(full_name=f"octo-org/{name}", name=name)
        body = json.dumps(payload).encode()
        headers = sign_headers("github", sites.secrets[name], body, "push",
                               delivery_id=f"all-at-once-{name}")
        gate.wait(30)
        sent = time.time()
        status, answer = http("POST", f"{sites.daemon.url}/hooks/{name}", body, headers,
                              auth=False)
        answers[name] = (status, answer, sent, time.time())

    threads = [threading.Thread(target=send, args=(name,)) for name in sites.names]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    return answers


def most_at_once(intervals: list[tuple[float, float]]) -> int:
    """The most ``(start, end)`` intervals that overlap at one moment."""
    edges = sorted([(start, 1) for start, _ in intervals] + [(end, -1) for _, end in intervals])
    now = peak = 0
    for _, step in edges:  # at the same moment an end (-1) sorts before a start
        now += step
        peak = max(peak, now)
    return peak


def runs_of(sites: Sites) -> list[dict[str, Any]]:
    status, listing = http("GET", f"{sites.daemon.url}/deployments?per_page=100")
    assert status == 200, listing
    return listing["runs"]


def test_a_push_to_every_target_at_once(sites: Sites) -> None:
    before = sites.head(sites.names[0])
    after = sites.push()
    answers = deliver_all(sites, before, after)
    wait_for(lambda: all(sites.head(n) == after for n in sites.names), 60,
             "every checkout at the pushed commit")
    runs = wait_for(lambda: (lambda r: r if len(r) >= TARGETS and all(
        run["finished"] is not None for run in r) else None)(runs_of(sites)), 30,
        "every run finished in the record")

    # Exactly once: one run per target, and it moved HEAD to the push.
    assert sorted(run["target"] for run in runs) == sites.names, runs
    assert all(run["outcome"] == "ok" and run["head_after"] == after for run in runs), runs
    # Never more than `workers` at a time: the record's runs, and the post_deploy commands.
    assert most_at_once([(run["started"], run["finished"]) for run in runs]) <= WORKERS
    lines = (sites.root / "post_deploy.log").read_text().split("\n")
    marks: dict[str, dict[str, float]] = {}
    for line in filter(None, lines):
        name, what, ns = line.split()
        marks.setdefault(name, {})[what] = int(ns) / 1e9
    assert sorted(marks) == sites.names
    assert most_at_once([(m["start"], m["end"]) for m in marks.values()]) <= WORKERS

    # The answers: the outcome, or 202 saying honestly whether the deploy had started.
    started = {run["target"]: run["started"] for run in runs}
    queued = [name for name, (_, answer, _, _) in answers.items()
              if answer["result"] == "queued"]
    assert queued, answers  # 30 deploys of 0.2 s on 2 workers outlast response_timeout
    for name, (status, answer, sent, _came) in answers.items():
        assert (status, answer["result"]) in ((200, "deployed"), (202, "queued"),
                                              (202, "deploying")), (name, status, answer)
        if answer["result"] == "queued":
            assert started[name] > sent, (name, answer, started[name], sent)
            assert "has not started" in answer["reason"] and "workers" in answer["reason"]
            assert answer["see"] == "/deployments" and answer["after"] == after
        # "deploying" means the worker had taken the run; the record stamps its start
        # a moment later on its own thread, so that stamp cannot bound the answer's time
        # (it was 1.4 ms after the answer in a loaded run).


def test_a_push_behind_its_targets_run_is_answered_queued(tmp_path: Path) -> None:
    """One target whose run is held (its post_deploy waits for a file): the push that
    run deploys is answered 202 deploying at response_timeout, the next push 202 queued
    behind it; both are deployed once the run may end."""
    repos = make_repos(tmp_path)
    secret_file = tmp_path / "secret.txt"
    secret_file.write_bytes(SECRET + b"\n")
    gate = tmp_path / "release"
    hold = f"while [ ! -e '{gate}' ]; do sleep 0.05; done"
    daemon = start_daemon(repos, secret_file, response_timeout=0.5,
                          post_deploy=["sh", "-c", hold])
    try:
        daemon.wait_ready()
        first = repos.commit()
        status, answer = deliver_push(daemon.url, first, delivery="held-1")
        assert (status, answer["result"]) == (202, "deploying"), answer
        second = repos.commit()
        status, answer = deliver_push(daemon.url, second, delivery="held-2")
        assert (status, answer["result"]) == (202, "queued"), answer
        assert "the run of default under way must end first" in answer["reason"], answer
        gate.write_text("")
        wait_for(lambda: git(repos.deployed, "rev-parse", "HEAD") == second, 30,
                 "the second push deployed")
    finally:
        daemon.stop()
