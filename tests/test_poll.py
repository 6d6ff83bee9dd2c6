"""Polling (issue 24, "A push is never lost"): the daemon asks each target's remote for
its tip and deploys a commit no delivery brought, with trigger ``poll``.

Real git, real daemons; time is injected as a short ``poll_interval`` and every wait
is on a condition with a deadline.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, ClassVar

from tornado.testing import gen_test

from deployhook.service.poller import MAX_WAIT
from tests import helpers
from tests.apptest import HookTestCase
from tests.helpers import (
    Daemon,
    Repos,
    deliver_push,
    git,
    http,
    make_repos,
    push_payload,
    start_daemon,
    start_targets,
)

FAST = 0.2  # seconds: the poll_interval of these tests
SETTLE = 30.0  # seconds: a generous bound for what must happen


def wait_for(check: Any, what: str, daemon: Daemon | None = None,
             timeout: float = SETTLE) -> Any:
    """``check()``'s first true value (:func:`tests.helpers.wait_for`); on a timeout the
    AssertionError carries ``daemon``'s log too."""
    try:
        return helpers.wait_for(check, timeout, what)
    except AssertionError as exc:
        if daemon is None:
            raise
        raise AssertionError(f"{exc}:\n{daemon.log()}") from None


def health(daemon: Daemon, target: str = "default") -> dict[str, Any]:
    return http("GET", daemon.url + "/health")[1]["targets"][target]


def runs(daemon: Daemon) -> list[dict[str, Any]]:
    return http("GET", daemon.url + "/deployments")[1]["runs"]


def settled_at(daemon: Daemon, sha: str, target: str = "default") -> dict[str, Any]:
    """/health of ``target`` once its HEAD is ``sha`` and no run goes on."""
    return wait_for(lambda: (lambda t: t if t["head"] == sha and not t["deploying"]
                             else None)(health(daemon, target)), f"HEAD at {sha}", daemon)


def reason_for(sha: str, where: str = "main") -> str:
    return (f"polled: {sha[:12]} is on {where} but no delivery brought it: check the "
            "forge's webhook")


def test_a_push_no_delivery_brought_is_deployed_by_the_poll_with_trigger_and_reason(
        repos: Repos, secret_file: Path) -> None:
    daemon = start_daemon(repos, secret_file, poll_interval=FAST)
    try:
        daemon.wait_ready()
        pushed = time.monotonic()
        sha = repos.commit("post.rst", "no webhook told anyone\n")
        target = settled_at(daemon, sha)
        moved = time.monotonic() - pushed
        [run, *_] = runs(daemon)
        assert (run["trigger"], run["outcome"], run["head_after"]) == ("poll", "ok", sha)
        assert run["reason"] == reason_for(sha)
        assert target["poll"]["tip"] == sha and target["poll"]["error"] == ""
        assert target["poll"]["last_poll"] is not None
        assert target["poll"]["last_delivery"] is None  # no delivery ever came
        assert target["poll"]["interval"] == FAST
        assert "no delivery brought it" in daemon.log()
        print(f"checkout moved {moved:.2f}s after the push (poll_interval {FAST}s)")
    finally:
        daemon.stop()


def test_at_start_a_push_made_while_the_daemon_was_down_is_deployed(
        repos: Repos, secret_file: Path) -> None:
    """The catch-up poll at start, with an interval too long to be what deployed it."""
    daemon = start_daemon(repos, secret_file, poll_interval=3600)
    daemon.wait_ready()
    daemon.stop()
    sha = repos.commit("post.rst", "pushed while the daemon was down\n")
    daemon = start_daemon(repos, secret_file, poll_interval=3600)
    try:
        daemon.wait_ready()
        settled_at(daemon, sha)
        assert runs(daemon)[0]["trigger"] == "poll"
        assert Repos.head(repos.deployed) == sha
    finally:
        daemon.stop()


def test_poll_interval_0_never_asks_the_remote(tmp_path: Path, secret_file: Path) -> None:
    """Target ``quiet`` (0) next to target ``polled`` (FAST) in one daemon: by the time
    ``polled`` has deployed a push by polling and polled again, ``quiet`` has run no
    ls-remote (its upload-pack counter) and moved nothing."""
    for name in ("quiet", "polled"):
        (tmp_path / name).mkdir()
    quiet, polled = make_repos(tmp_path / "quiet"), make_repos(tmp_path / "polled")
    common = {"secret_file": str(secret_file), "repository": "octo/blog"}
    daemon = start_targets(tmp_path, {
        "quiet": {"repo_path": str(quiet.deployed), "poll_interval": 0, **common},
        "polled": {"repo_path": str(polled.deployed), "poll_interval": FAST, **common}})
    try:
        daemon.wait_ready()
        before = Repos.head(quiet.deployed)
        quiet.commit("post.rst", "never polled\n")
        sha = polled.commit("post.rst", "polled\n")
        first = settled_at(daemon, sha, "polled")["poll"]["last_poll"]
        wait_for(lambda: health(daemon, "polled")["poll"]["last_poll"] > first,
                 "another poll of polled", daemon)
        assert quiet.fetches() == 0
        assert Repos.head(quiet.deployed) == before
        assert health(daemon, "quiet")["poll"]["last_poll"] is None
        assert polled.fetches() >= 3  # the polls, and the fetch of the deploy
    finally:
        daemon.stop()


def test_a_paused_target_polls_but_deploys_only_after_resume(
        repos: Repos, secret_file: Path) -> None:
    daemon = start_daemon(repos, secret_file, poll_interval=FAST)
    config = repos.root / "config.py"
    before = Repos.head(repos.deployed)
    try:
        daemon.wait_ready()
        pause = cli(config, "pause")
        assert pause.returncode == 0, pause.stderr
        wait_for(lambda: health(daemon)["paused"], "the daemon seeing the pause", daemon)
        sha = repos.commit("post.rst", "pushed while paused\n")
        seen = wait_for(lambda: (lambda p: p if p["tip"] == sha else None)(
            health(daemon)["poll"]), "a poll seeing the push", daemon)
        wait_for(lambda: health(daemon)["poll"]["last_poll"] > seen["last_poll"],
                 "a poll after it", daemon)
        assert Repos.head(repos.deployed) == before
        assert runs(daemon) == []
        resume = cli(config, "resume")
        assert resume.returncode == 0, resume.stderr
        settled_at(daemon, sha)
        assert [r["trigger"] for r in runs(daemon)] == ["poll"]
    finally:
        daemon.stop()


def test_tags_mode_polls_the_newest_matching_tag_by_version(
        repos: Repos, secret_file: Path) -> None:
    """v1.10 (annotated, on an older commit) is newer than v1.9 by git's version sort,
    as a tags-mode deploy reckons; rc-9 does not match."""
    older = repos.commit("post.rst", "release 1.10\n", push=False)
    git(repos.pusher, "tag", "-a", "-m", "one ten", "v1.10")
    newer = repos.commit("post.rst", "release 1.9\n", push=False)
    git(repos.pusher, "tag", "v1.9")
    git(repos.pusher, "tag", "rc-9")
    daemon = start_daemon(repos, secret_file, poll_interval=FAST, tags="v*")
    try:
        daemon.wait_ready()
        git(repos.pusher, "push", "-q", "origin", "HEAD:main", "v1.10", "v1.9", "rc-9")
        settled_at(daemon, older)
        [run] = runs(daemon)
        assert (run["trigger"], run["branch"]) == ("poll", "refs/tags/v1.10")
        assert run["reason"] == reason_for(older, "tag v1.10")
        assert Repos.head(repos.deployed) == older != newer
        wait_for(lambda: health(daemon)["poll"]["failures"] == 0 and len(runs(daemon)) == 1
                 and health(daemon)["poll"]["last_poll"] > time.time() - 1,
                 "a later poll", daemon)
        assert len(runs(daemon)) == 1  # the annotated tag counts as deployed
    finally:
        daemon.stop()


def test_a_failing_poll_is_logged_once_shown_and_clears(
        repos: Repos, secret_file: Path) -> None:
    url = git(repos.deployed, "remote", "get-url", "origin")
    daemon = start_daemon(repos, secret_file, poll_interval=FAST)
    try:
        daemon.wait_ready()
        git(repos.deployed, "remote", "set-url", "origin", str(repos.root / "gone.git"))
        failing = wait_for(lambda: (lambda p: p if p["failures"] >= 3 else None)(
            health(daemon)["poll"]), "three failed polls", daemon)
        assert "gone.git" in failing["error"] and failing["failing_since"] is not None
        assert daemon.log().count("polling the remote failed") == 1
        page = http_text(daemon.url + "/")
        assert "gone.git" in page
        git(repos.deployed, "remote", "set-url", "origin", url)
        wait_for(lambda: health(daemon)["poll"]["error"] == "", "a poll answering", daemon)
        assert "the remote answers polls again" in daemon.log()
        sha = repos.commit("post.rst", "after the outage\n")
        settled_at(daemon, sha)
    finally:
        daemon.stop()


def cli(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "deployhook", *args, "--config", str(config)],
                          capture_output=True, text=True, cwd=config.parent, timeout=60)


def http_text(url: str) -> str:
    import urllib.request

    from tests.helpers import basic_auth

    request = urllib.request.Request(url, headers=basic_auth())
    with urllib.request.urlopen(request, timeout=30) as response:
        return response.read().decode()


def test_deliver_push_reaches_a_polling_daemon_as_usual(repos: Repos, secret_file: Path
                                                         ) -> None:
    """A delivery still deploys at once (trigger webhook) and is shown as the last one.
    The push comes after the start's poll: one racing it would be that poll's run."""
    daemon = start_daemon(repos, secret_file, poll_interval=3600)
    try:
        daemon.wait_ready()
        wait_for(lambda: health(daemon)["poll"]["last_poll"] is not None,
                 "the start's poll", daemon)
        sha = repos.commit()
        status, body = deliver_push(daemon.url, sha)
        assert (status, body["result"]) == (200, "deployed"), body
        assert runs(daemon)[0]["trigger"] == "webhook"
        assert health(daemon)["poll"]["last_delivery"] > time.time() - SETTLE
    finally:
        daemon.stop()


GATE = "gate"  # post_deploy waits for this file in the checkout's parent


class PollRacingDeliveryTest(HookTestCase):
    """A delivery of the commit a poll's run is deploying joins that run."""

    settings: ClassVar[dict[str, Any]] = {
                "poll_interval": FAST,
                "post_deploy": ["sh", "-c", f"while [ ! -e ../{GATE} ]; do sleep 0.02; done"]}

    @gen_test(timeout=60)
    async def test_the_same_commit_polled_and_delivered_makes_one_run(self) -> None:
        worker = self.hook.targets["default"].worker
        sha = self.repos.commit("post.rst", "polled and delivered\n")
        await until(lambda: worker.busy, "the poll's run")
        answer = asyncio.ensure_future(self.deliver(push_payload(sha), delivery="race-1"))
        await until(lambda: self._accepted(), "the delivery accepted")
        assert worker.waiting == 0  # it joined the run under way
        (self.tmp / GATE).write_text("open\n")
        status, body = await answer
        assert (status, body["result"]) == (200, "deployed"), body
        page = await self.hook.record.runs_page(10)
        [run] = page[0]
        assert (run["id"], run["trigger"], run["head_after"]) == (body["run"], "poll", sha)
        assert self.hook.targets["default"].polling.delivered is not None

    async def _accepted(self) -> int:
        """Accepted deliveries in the record."""
        return int(await self.hook.record.run(lambda s: s.db.execute(
            "SELECT COUNT(*) FROM deliveries WHERE accepted=1").fetchone()[0]))


async def until(check: Any, what: str, timeout: float = SETTLE) -> None:
    """Wait until ``check()`` (or what it gives to await) is true, at most ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return
        assert time.monotonic() < deadline, f"{what} not within {timeout}s"
        await asyncio.sleep(0.01)


class PollDueWhileItRunsTest(HookTestCase):
    """A target whose next poll falls due while its last one still runs (a slow remote,
    the start's catch-up of many targets) is looked at again a little later: the poller
    neither starts a second poll nor goes round its loop without waiting."""

    settings: ClassVar[dict[str, Any]] = {"poll_interval": 60}

    @gen_test(timeout=30)
    async def test_a_poll_due_while_the_last_one_runs_is_looked_at_again_later(self) -> None:
        poller, target = self.hook.poller, self.hook.targets["default"]
        running = asyncio.get_running_loop().create_future()  # the last poll, not over
        poller._polling["default"] = running  # type: ignore[assignment]
        now = time.monotonic()
        for due, then in ((now - 5, now + MAX_WAIT), (now, now + MAX_WAIT),
                          (now + 30, now + 30)):
            poller.due["default"] = due
            poller._schedule("default", target, now)
            assert poller.due["default"] == then
            assert poller._polling["default"] is running
        running.set_result(None)
