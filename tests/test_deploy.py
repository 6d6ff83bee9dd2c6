"""Deploys end to end: real git repositories, a real DeployHook on a real Tornado server.

Every test checks what a user sees: the HTTP answer GitHub records, and the
state of the deployed checkout (HEAD, worktree, leftovers of git operations).
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
import uuid
from pathlib import Path
from typing import Any, ClassVar

from tornado.httpclient import AsyncHTTPClient
from tornado.testing import gen_test

from deployhook import Config
from tests.apptest import LOGIN, HookTestCase
from tests.helpers import REPOSITORY, ZERO, git, push_payload

Answer = tuple[int, dict[str, Any]]


def head(repo: Path) -> str:
    """The commit ``repo`` has checked out."""
    return git(repo, "rev-parse", "HEAD")


def assert_intact(repo: Path, sha: str, status: str = "") -> None:
    """HEAD is ``sha``, ``git status`` is ``status``, and no git operation is half done."""
    assert head(repo) == sha
    assert git(repo, "status", "--porcelain") == status
    for leftover in ("index.lock", "MERGE_HEAD", "rebase-merge", "rebase-apply"):
        assert not (repo / ".git" / leftover).exists(), f".git/{leftover} left behind"
    git(repo, "fsck", "--no-progress")  # raises when the repository is damaged


def local_commit(repo: Path, name: str, text: str, message: str = "local change") -> str:
    """Commit a file directly in the deployed checkout (diverging from origin)."""
    (repo / name).write_text(text)
    git(repo, "add", name)
    git(repo, "commit", "-q", "-m", message)
    return head(repo)


def process_gone(pid: int) -> bool:
    """True when ``pid`` no longer runs (an unreaped zombie counts as gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] in ("Z", "X")


class DeployTestCase(HookTestCase):
    """HookTestCase with helpers for pushes, /health and history rewrites."""

    async def deliver_push(self, after: str, before: str | None = None,
                           delivery: str | None = None, forced: bool = False,
                           **fields: Any) -> Answer:
        """Deliver a signed push of ``after`` to main (``before``: the deployed HEAD)."""
        payload = push_payload(after, before=before or head(self.repos.deployed), **fields)
        payload["forced"] = forced
        return await self.deliver(payload, delivery=delivery or str(uuid.uuid4()))

    async def health(self) -> dict[str, Any]:
        response = await self.http_client.fetch(self.get_url("/health"), request_timeout=10)
        return json.loads(response.body)

    async def wait_until(self, deploying: bool, timeout: float = 30) -> dict[str, Any]:
        """Poll /health until its ``deploying`` flag is ``deploying``; return the body."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            body = await self.health()
            if body["deploying"] is deploying:
                return body
            await asyncio.sleep(0.02)
        raise AssertionError(f"/health never reported deploying={deploying}")

    def force_push(self, name: str, text: str) -> str:
        """Rewrite origin's main: drop the pusher's last commit, commit anew, push -f."""
        pusher = self.repos.pusher
        git(pusher, "reset", "-q", "--hard", "HEAD~1")
        (pusher / name).write_text(text)
        git(pusher, "add", name)
        git(pusher, "commit", "-q", "-m", "rewritten history")
        git(pusher, "push", "-q", "-f", "origin", "HEAD:main")
        return head(pusher)


# -- the default configuration (ff-only) -----------------------------------------------


class DeployTest(DeployTestCase):
    """Pushes under the default settings."""

    @gen_test(timeout=30)
    async def test_submodule_bump_deploys_both(self) -> None:
        """A push that bumps the submodule updates the project and the submodule."""
        sha = self.repos.commit_submodule("Second post\n")
        status, body = await self.deliver_push(sha)
        assert status == 200, body
        assert body["result"] == "deployed"
        assert body["head"] == sha
        assert (self.repos.deployed / "posts" / "index.rst").read_text() == "Second post\n"
        assert_intact(self.repos.deployed, sha)

    @gen_test(timeout=30)
    async def test_failing_remote_leaves_checkout_intact_then_recovers(self) -> None:
        """An unreachable origin answers 500 with git's reason; the next push deploys."""
        old = head(self.repos.deployed)
        sha = self.repos.commit("post.rst", "lost\n")
        away = self.tmp / "origin-moved.git"
        self.repos.origin.rename(away)
        status, body = await self.deliver_push(sha, before=old)
        assert status == 500, body
        assert body["result"] == "failed"
        assert body["reason"].startswith("fetch failed: fatal:"), body["reason"]
        assert "does not appear to be a git repository" in body["reason"]
        assert body["head"] == old
        assert_intact(self.repos.deployed, old)

        away.rename(self.repos.origin)
        sha2 = self.repos.commit("post.rst", "found\n")
        status, body = await self.deliver_push(sha2, before=sha)
        assert status == 200, body
        assert body["head"] == sha2
        assert_intact(self.repos.deployed, sha2)

    @gen_test(timeout=30)
    async def test_conflicting_local_edit_is_kept(self) -> None:
        """An uncommitted edit that the push would overwrite: 500, and the edit survives."""
        deployed = self.repos.deployed
        old = head(deployed)
        (deployed / "app.py").write_text("print('hotfix')\n")
        sha = self.repos.commit("app.py", "print('blog v2')\n")
        status, body = await self.deliver_push(sha)
        assert status == 500, body
        assert "would be overwritten" in body["reason"], body["reason"]
        assert (deployed / "app.py").read_text() == "print('hotfix')\n"
        assert_intact(deployed, old, status="M app.py")

    @gen_test(timeout=30)
    async def test_non_conflicting_local_edit_is_kept(self) -> None:
        """An uncommitted edit of a file the push does not touch: deployed, edit kept."""
        deployed = self.repos.deployed
        (deployed / "app.py").write_text("print('hotfix')\n")
        sha = self.repos.commit("notes.rst", "notes\n")
        status, body = await self.deliver_push(sha)
        assert status == 200, body
        assert (deployed / "app.py").read_text() == "print('hotfix')\n"
        assert (deployed / "notes.rst").read_text() == "notes\n"
        assert_intact(deployed, sha, status="M app.py")

    @gen_test(timeout=30)
    async def test_unreachable_submodule_keeps_checkout_then_recovers(self) -> None:
        """posts.git gone: 500 naming it, HEAD and worktree as before; back, it deploys."""
        deployed = self.repos.deployed
        old = head(deployed)
        sha = self.repos.commit_submodule("Unreachable post\n")
        hidden = self.tmp / "posts-moved.git"
        self.repos.sub_origin.rename(hidden)
        status, body = await self.deliver_push(sha)
        assert status == 500, body
        assert f"'{self.repos.sub_origin}' does not appear to be a git repository" in (
            body["reason"]), body["reason"]
        assert body["head"] == old
        assert_intact(deployed, old)
        assert (deployed / "posts" / "index.rst").read_text() == "Hello\n=====\n"

        hidden.rename(self.repos.sub_origin)
        sha2 = self.repos.commit("post.rst", "again\n")
        status, body = await self.deliver_push(sha2)
        assert status == 200, body
        assert_intact(deployed, sha2)
        assert (deployed / "posts" / "index.rst").read_text() == "Unreachable post\n"

    @gen_test(timeout=30)
    async def test_unreachable_submodule_is_blamed_and_rolled_back(self) -> None:
        """posts.git gone: the 500 says the submodule failed and the checkout was restored."""
        old = head(self.repos.deployed)
        sha = self.repos.commit_submodule("Unreachable post\n")
        self.repos.sub_origin.rename(self.tmp / "posts-moved.git")
        status, body = await self.deliver_push(sha)
        assert status == 500, body
        assert_intact(self.repos.deployed, old)
        assert body["reason"].startswith("submodule update failed"), body["reason"]
        assert body["reason"].endswith(f"checkout restored to {old}")

    @gen_test(timeout=30)
    async def test_submodule_failure_rolls_back(self) -> None:
        """The submodule cannot be checked out: 500, HEAD moved back to where it was."""
        deployed = self.repos.deployed
        old = head(deployed)
        sha = self.repos.commit_submodule("Upstream post\n")
        (deployed / "posts" / "index.rst").write_text("Edited on the server\n")
        status, body = await self.deliver_push(sha)
        assert status == 500, body
        assert body["reason"].startswith("submodule update failed"), body["reason"]
        assert "submodule path 'posts'" in body["reason"]
        assert body["reason"].endswith(f"checkout restored to {old}")
        assert body["head"] == old
        assert_intact(deployed, old, status="M posts")  # the local edit survives
        assert (deployed / "posts" / "index.rst").read_text() == "Edited on the server\n"

        git(deployed / "posts", "checkout", "--", "index.rst")
        status, body = await self.deliver_push(sha, before=old)
        assert status == 200, body
        assert_intact(deployed, sha)
        assert (deployed / "posts" / "index.rst").read_text() == "Upstream post\n"


class SubmodulesDisabledTest(DeployTestCase):
    """submodules=False: the deploy never touches the submodule."""

    settings: ClassVar[dict[str, Any]] = {"submodules": False}

    @gen_test(timeout=30)
    async def test_unreachable_submodule_does_not_matter(self) -> None:
        """A bump of an unreachable submodule deploys the superproject alone."""
        sha = self.repos.commit_submodule("Not deployed\n")
        self.repos.sub_origin.rename(self.tmp / "posts-moved.git")
        status, body = await self.deliver_push(sha)
        assert status == 200, body
        assert head(self.repos.deployed) == sha
        assert (self.repos.deployed / "posts" / "index.rst").read_text() == "Hello\n=====\n"


# -- coalescing and the IOLoop ------------------------------------------------------------


class CoalescingTest(DeployTestCase):
    """Bursts of deliveries share fetches; nothing blocks the IOLoop."""

    def get_http_client(self) -> AsyncHTTPClient:
        # The default client sends at most 10 requests at once; a burst needs more.
        return AsyncHTTPClient(force_instance=True, max_clients=64, defaults=LOGIN)

    def push_burst(self, count: int) -> list[str]:
        """Push ``count`` commits, one push each; return their SHAs in order."""
        return [self.repos.commit("post.rst", f"version {i}\n") for i in range(count)]

    def burst(self, shas: list[str], before: str, tag: str) -> list[Any]:
        """One delivery coroutine per SHA, each with its own ``before`` and delivery id."""
        befores = [before, *shas[:-1]]
        return [self.deliver_push(sha, before=prev, delivery=f"{tag}-{i}")
                for i, (sha, prev) in enumerate(zip(shas, befores, strict=True))]

    @gen_test(timeout=60)
    async def test_burst_of_twenty_costs_a_handful_of_fetches(self) -> None:
        """20 concurrent deliveries: all 200, HEAD at the last SHA, at most 3 fetches."""
        old = head(self.repos.deployed)
        shas = self.push_burst(20)
        answers = await asyncio.gather(*self.burst(shas, old, "burst"))
        for status, body in answers:
            assert status == 200, body
            assert body["result"] == "deployed"
        assert_intact(self.repos.deployed, shas[-1])
        fetches = self.repos.fetches()
        print(f"\n[burst of 20] fetches={fetches} runs={self.hook.worker.runs}")
        assert 1 <= fetches <= 3

    @gen_test(timeout=60)
    async def test_burst_during_slow_deploy_costs_a_handful_of_fetches(self) -> None:
        """Deliveries arriving while a slow deploy runs wait for it and share one more run."""
        old = head(self.repos.deployed)
        shas = self.push_burst(20)
        self.repos.slow(1)
        first = asyncio.ensure_future(self.deliver_push(shas[0], before=old, delivery="slow-0"))
        await self.wait_until(deploying=True)
        assert self.hook.worker.last is None  # the first run is still going
        rest = await asyncio.gather(*self.burst(shas[1:], shas[0], "slow"))
        answers = [await first, *rest]
        for status, body in answers:
            assert status == 200, body
            assert body["result"] == "deployed"
        assert_intact(self.repos.deployed, shas[-1])
        fetches = self.repos.fetches()
        print(f"\n[burst of 20 during a slow deploy] fetches={fetches} "
              f"runs={self.hook.worker.runs}")
        assert 1 <= fetches <= 3

    @gen_test(timeout=60)
    async def test_slow_remote_does_not_block_the_ioloop(self) -> None:
        """While a 2 s fetch runs, /health keeps answering quickly."""
        self.repos.slow(2)
        sha = self.repos.commit("post.rst", "slow\n")
        deploy = asyncio.ensure_future(self.deliver_push(sha))
        latencies: list[float] = []
        while not deploy.done():
            start = time.perf_counter()
            body = await self.health()
            if body["deploying"]:
                latencies.append(time.perf_counter() - start)
            await asyncio.sleep(0.01)
        status, body = await deploy
        assert status == 200, body
        assert body["duration"] >= 2
        assert_intact(self.repos.deployed, sha)
        worst = max(latencies)
        print(f"\n[/health during a 2 s fetch] polls={len(latencies)} "
              f"worst={worst * 1000:.1f} ms")
        assert len(latencies) >= 10
        assert worst < 1.0


class ResponseTimeoutTest(DeployTestCase):
    """A deploy slower than response_timeout is answered 202 and still finishes."""

    settings: ClassVar[dict[str, Any]] = {"response_timeout": 0.5}

    @gen_test(timeout=30)
    async def test_slow_deploy_answers_202_then_completes(self) -> None:
        """202 "deploying" at once; /health then shows the deploy done at the pushed SHA."""
        self.repos.slow(2)
        sha = self.repos.commit("post.rst", "later\n")
        status, body = await self.deliver_push(sha)
        assert status == 202, body
        assert body["result"] == "deploying"
        assert body["after"] == sha  # "deploying": answered while the slow fetch went on
        health = await self.wait_until(deploying=False)
        assert health["head"] == sha
        assert health["last_deploy"]["ok"] is True
        assert_intact(self.repos.deployed, sha)


# -- pull strategies ------------------------------------------------------------------------


class FastForwardCases:
    """A plain fast-forward push deploys under every pull strategy."""

    @gen_test(timeout=30)
    async def test_fast_forward_push_deploys(self: Any) -> None:
        """origin moved ahead, the checkout did not: HEAD becomes the pushed SHA."""
        sha = self.repos.commit("post.rst", "fast forward\n")
        status, body = await self.deliver_push(sha)
        assert status == 200, body
        assert body["result"] == "deployed"
        assert body["head"] == sha
        assert_intact(self.repos.deployed, sha)


class FFOnlyTest(FastForwardCases, DeployTestCase):
    settings: ClassVar[dict[str, Any]] = {"pull_strategy": "ff-only"}

    @gen_test(timeout=30)
    async def test_diverged_history_is_refused(self) -> None:
        """A local commit blocks a fast-forward: 500, the checkout untouched."""
        local = local_commit(self.repos.deployed, "local.txt", "local\n")
        sha = self.repos.commit("post.rst", "upstream\n")
        status, body = await self.deliver_push(sha)
        assert status == 500, body
        assert "Not possible to fast-forward" in body["reason"], body["reason"]
        assert_intact(self.repos.deployed, local)

    @gen_test(timeout=30)
    async def test_force_push_is_refused(self) -> None:
        """origin's history rewritten by a force-push: 500, HEAD stays."""
        first = self.repos.commit("post.rst", "first\n")
        assert (await self.deliver_push(first))[0] == 200
        sha = self.force_push("post.rst", "rewritten\n")
        status, body = await self.deliver_push(sha, forced=True)
        assert status == 500, body
        assert "Not possible to fast-forward" in body["reason"], body["reason"]
        assert_intact(self.repos.deployed, first)


class MergeTest(FastForwardCases, DeployTestCase):
    settings: ClassVar[dict[str, Any]] = {"pull_strategy": "merge"}

    @gen_test(timeout=30)
    async def test_diverged_history_is_merged(self) -> None:
        """A local commit and a pushed one: HEAD is a merge of both."""
        deployed = self.repos.deployed
        local = local_commit(deployed, "local.txt", "local\n")
        sha = self.repos.commit("post.rst", "upstream\n")
        status, body = await self.deliver_push(sha)
        assert status == 200, body
        merge = head(deployed)
        assert body["head"] == merge
        assert git(deployed, "rev-parse", "HEAD^1", "HEAD^2").split() == [local, sha]
        assert (deployed / "local.txt").read_text() == "local\n"
        assert (deployed / "post.rst").read_text() == "upstream\n"
        assert_intact(deployed, merge)

    @gen_test(timeout=30)
    async def test_merge_conflict_is_aborted(self) -> None:
        """Both sides changed app.py: 500, the merge aborted, the checkout untouched."""
        local = local_commit(self.repos.deployed, "app.py", "print('local')\n")
        sha = self.repos.commit("app.py", "print('upstream')\n")
        status, body = await self.deliver_push(sha)
        assert status == 500, body
        assert body["reason"].startswith("merge failed"), body["reason"]
        assert_intact(self.repos.deployed, local)
        assert (self.repos.deployed / "app.py").read_text() == "print('local')\n"


class RebaseTest(FastForwardCases, DeployTestCase):
    settings: ClassVar[dict[str, Any]] = {"pull_strategy": "rebase"}

    @gen_test(timeout=30)
    async def test_diverged_history_is_rebased(self) -> None:
        """A local commit is replayed on top of the pushed one."""
        deployed = self.repos.deployed
        local = local_commit(deployed, "local.txt", "local\n", message="local tweak")
        sha = self.repos.commit("post.rst", "upstream\n")
        status, body = await self.deliver_push(sha)
        assert status == 200, body
        rebased = head(deployed)
        assert rebased not in (local, sha)
        assert body["head"] == rebased
        assert git(deployed, "rev-parse", "HEAD^") == sha
        assert git(deployed, "log", "-1", "--format=%s") == "local tweak"
        assert (deployed / "local.txt").read_text() == "local\n"
        assert_intact(deployed, rebased)

    @gen_test(timeout=30)
    async def test_rebase_conflict_is_aborted(self) -> None:
        """Both sides changed app.py: 500, the rebase aborted, the checkout untouched."""
        local = local_commit(self.repos.deployed, "app.py", "print('local')\n")
        sha = self.repos.commit("app.py", "print('upstream')\n")
        status, body = await self.deliver_push(sha)
        assert status == 500, body
        assert body["reason"].startswith("rebase failed"), body["reason"]
        assert_intact(self.repos.deployed, local)
        assert (self.repos.deployed / "app.py").read_text() == "print('local')\n"


class ResetTest(FastForwardCases, DeployTestCase):
    settings: ClassVar[dict[str, Any]] = {"pull_strategy": "reset"}

    @gen_test(timeout=30)
    async def test_diverged_history_is_reset(self) -> None:
        """The local commit is dropped: HEAD is exactly the pushed SHA."""
        deployed = self.repos.deployed
        local_commit(deployed, "local.txt", "local\n")
        sha = self.repos.commit("post.rst", "upstream\n")
        status, body = await self.deliver_push(sha)
        assert status == 200, body
        assert body["head"] == sha
        assert not (deployed / "local.txt").exists()
        assert_intact(deployed, sha)

    @gen_test(timeout=30)
    async def test_force_push_is_deployed(self) -> None:
        """origin's history rewritten by a force-push: HEAD follows it."""
        first = self.repos.commit("post.rst", "first\n")
        assert (await self.deliver_push(first))[0] == 200
        sha = self.force_push("post.rst", "rewritten\n")
        status, body = await self.deliver_push(sha, forced=True)
        assert status == 200, body
        assert body["head"] == sha
        assert (self.repos.deployed / "post.rst").read_text() == "rewritten\n"
        assert_intact(self.repos.deployed, sha)


# -- post_deploy ------------------------------------------------------------------------------

# The scripts write next to the checkout (its parent is the test's temp folder),
# so the checkout's worktree stays clean.
ENV_SCRIPT = """
import json, os
out = os.path.join(os.environ["DEPLOYHOOK_REPO_PATH"], os.pardir, "post_deploy.json")
env = {k: v for k, v in os.environ.items() if k.startswith("DEPLOYHOOK_")}
with open(out, "w") as f:
    json.dump({"env": env, "cwd": os.getcwd()}, f)
"""

FAIL_SCRIPT = """
import sys
print("migrating the database")
print("migration 0042 failed", file=sys.stderr)
sys.exit(3)
"""

HANG_SCRIPT = """
import os, subprocess, time
child = subprocess.Popen(["sleep", "60"])
out = os.path.join(os.environ["DEPLOYHOOK_REPO_PATH"], os.pardir, "child.pid")
with open(out, "w") as f:
    f.write(str(child.pid))
print("started", child.pid, flush=True)
time.sleep(60)
"""

LOUD_SCRIPT = """
import sys
for _ in range(10):
    sys.stdout.write("x" * (1024 * 1024 - 1) + "\\n")
sys.stdout.write("THE END\\n")
"""


def post_deploy(script: str, **more: Any) -> dict[str, Any]:
    """Settings running ``script`` with this Python as the post_deploy command."""
    return {"post_deploy": [sys.executable, "-c", script], **more}


class PostDeployEnvTest(DeployTestCase):
    settings: ClassVar[dict[str, Any]] = post_deploy(ENV_SCRIPT)

    @gen_test(timeout=30)
    async def test_post_deploy_sees_the_delivery(self) -> None:
        """post_deploy runs in the checkout with the delivery's facts in DEPLOYHOOK_*."""
        out = self.tmp / "post_deploy.json"
        old = head(self.repos.deployed)
        sha = self.repos.commit("post.rst", "with post_deploy\n")
        status, body = await self.deliver_push(sha, before=old, delivery="pd-1",
                                               pusher="hubot")
        assert status == 200, body
        record = json.loads(out.read_text())
        env = record["env"]
        assert env["DEPLOYHOOK_BEFORE"] == old
        assert env["DEPLOYHOOK_AFTER"] == sha
        assert env["DEPLOYHOOK_REF"] == "refs/heads/main"
        assert env["DEPLOYHOOK_HEAD_BEFORE"] == old
        assert env["DEPLOYHOOK_HEAD_AFTER"] == sha
        assert env["DEPLOYHOOK_PUSHER"] == "hubot"
        assert env["DEPLOYHOOK_REPOSITORY"] == REPOSITORY
        assert env["DEPLOYHOOK_DELIVERY"] == "pd-1"
        assert env["DEPLOYHOOK_BRANCH"] == "main"
        assert Path(env["DEPLOYHOOK_REPO_PATH"]).resolve() == self.repos.deployed.resolve()
        assert Path(record["cwd"]).resolve() == self.repos.deployed.resolve()
        assert_intact(self.repos.deployed, sha)

        out.unlink()
        status, body = await self.deliver_push(sha, before=old, delivery="pd-2")
        assert status == 200, body
        assert body["reason"].startswith("already deployed")
        assert not out.exists(), "post_deploy ran although HEAD did not move"


class PostDeployFailureTest(DeployTestCase):
    settings: ClassVar[dict[str, Any]] = post_deploy(FAIL_SCRIPT)

    @gen_test(timeout=30)
    async def test_failing_post_deploy_answers_500(self) -> None:
        """post_deploy exits 3: 500 naming post_deploy and the exit status."""
        sha = self.repos.commit("post.rst", "broken migration\n")
        status, body = await self.deliver_push(sha)
        assert status == 500, body
        assert "post_deploy" in body["reason"], body["reason"]
        assert "exit status 3" in body["reason"]
        assert "migration 0042 failed" in body["reason"]
        assert body["head"] == sha  # the code is deployed; only the command failed
        assert_intact(self.repos.deployed, sha)


class PostDeployTimeoutTest(DeployTestCase):
    settings: ClassVar[dict[str, Any]] = post_deploy(HANG_SCRIPT, post_deploy_timeout=1.0)

    @gen_test(timeout=30)
    async def test_hanging_post_deploy_is_killed_with_its_children(self) -> None:
        """A hanging post_deploy: 500 within seconds; the process it started is killed."""
        sha = self.repos.commit("post.rst", "hang\n")
        start = time.monotonic()
        status, body = await self.deliver_push(sha)
        elapsed = time.monotonic() - start
        assert status == 500, body
        assert "post_deploy" in body["reason"], body["reason"]
        assert "timed out" in body["reason"]  # killed at post_deploy_timeout: it hangs
        assert elapsed < 25, f"answered after {elapsed:.1f} s: the hang was not cut short"
        pid = int((self.tmp / "child.pid").read_text())
        deadline = time.monotonic() + 5
        while not process_gone(pid) and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        assert process_gone(pid), f"post_deploy's child {pid} is still running"


class PostDeployOutputTest(DeployTestCase):
    settings: ClassVar[dict[str, Any]] = post_deploy(LOUD_SCRIPT)

    @gen_test(timeout=30)
    async def test_huge_output_is_bounded(self) -> None:
        """10 MB of output: the deploy succeeds and keeps only the output's tail."""
        sha = self.repos.commit("post.rst", "loud\n")
        status, body = await self.deliver_push(sha)
        assert status == 200, body
        last = self.hook.worker.last
        assert last is not None
        step = last.steps[-1]
        assert step.name == "post_deploy"
        assert len(step.output) <= 70_000
        assert step.output.rstrip().endswith("THE END")


# -- cloning from repo_url -------------------------------------------------------------------


class CloneTest(DeployTestCase):
    """repo_path does not exist yet: the first push clones repo_url there."""

    def make_config(self, **overrides: Any) -> Config:
        self.target = self.tmp / "srv" / "blog"
        values = {"repo_path": str(self.target), "repo_url": self.repos.origin.as_uri(),
                  "branch": None, **overrides}
        return super().make_config(**values)

    @gen_test(timeout=30)
    async def test_first_push_clones(self) -> None:
        """The first push to main clones with the submodule; no temp folder is left."""
        assert not self.target.exists()
        sha = self.repos.commit("post.rst", "first deploy\n")
        status, body = await self.deliver_push(sha, before=ZERO)
        assert status == 200, body
        assert body["head"] == sha
        assert git(self.target, "symbolic-ref", "--short", "HEAD") == "main"
        assert (self.target / "posts" / "index.rst").read_text() == "Hello\n=====\n"
        assert_intact(self.target, sha)
        assert list(self.target.parent.glob(".deployhook-clone-*")) == []
        assert (await self.health())["branch"] == "main"

        sha2 = self.repos.commit_submodule("After the clone\n")
        status, body = await self.deliver_push(sha2, before=sha)
        assert status == 200, body
        assert (self.target / "posts" / "index.rst").read_text() == "After the clone\n"
        assert_intact(self.target, sha2)


class FailedCloneTest(DeployTestCase):
    """repo_url cannot be cloned: 500, and neither a checkout nor a temp folder appears."""

    def make_config(self, **overrides: Any) -> Config:
        self.target = self.tmp / "srv" / "blog"
        missing = (self.tmp / "missing.git").as_uri()
        return super().make_config(repo_path=str(self.target), repo_url=missing,
                                   branch=None, **overrides)

    @gen_test(timeout=30)
    async def test_failed_clone_leaves_nothing(self) -> None:
        """A failing clone answers 500 with git's reason and leaves no half clone."""
        sha = self.repos.commit("post.rst", "never cloned\n")
        status, body = await self.deliver_push(sha, before=ZERO)
        assert status == 500, body
        assert body["reason"].startswith("clone failed"), body["reason"]
        assert not self.target.exists()
        assert list(self.target.parent.glob(".deployhook-clone-*")) == []
        assert os.listdir(self.target.parent) == []
