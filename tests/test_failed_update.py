"""A failed update leaves the checkout where it was; only a finished run is "deployed".

Real git repositories and a real DeployHook over HTTP (the CLI through a real
``deployhook deploy`` process).  Covers: an update git rejects after moving HEAD
(an invalid ``.gitmodules``), for every pull strategy; a post_deploy that failed
is run again by the next delivery and by ``deployhook deploy``; git commands and
the hooks git runs are bounded by ``git_timeout``; the wait for the checkout's
lock is bounded by ``lock_timeout``.
"""

from __future__ import annotations

import fcntl
import subprocess
import sys
from pathlib import Path
from typing import Any, ClassVar

from tornado.testing import gen_test

from tests.helpers import Repos, git
from tests.test_git_faults import FaultTestCase, assert_consistent, commit_files, head

INVALID_GITMODULES = ('[submodule "posts"]\n\tpath = posts\n\turl = {url}\n'
                      "\tbranch = main\n\tupdate = !true\n")


def process_gone(pid: int) -> bool:
    """True when ``pid`` no longer runs (or is a zombie nobody reaped)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return True
    return state == "Z"


# -- an update git rejects after it moved HEAD ------------------------------------------


def move_submodule(repos: Repos) -> None:
    """Push a new commit to posts.git and stage it in the pusher's posts submodule."""
    seed = repos.root / "seed-posts"
    (seed / "second.rst").write_text("Second post\n")
    git(seed, "add", ".")
    git(seed, "commit", "-q", "-m", "second post")
    git(seed, "push", "-q", "origin", "HEAD:main")
    git(repos.pusher / "posts", "pull", "-q", "origin", "main")
    git(repos.pusher, "add", "posts")


class InvalidGitmodulesCases:
    """A push that moves the submodule and whose .gitmodules git rejects (``update =
    !true`` is only allowed in .git/config; git 2.39's merge then exits 128 after it
    moved HEAD): 500, HEAD and the work tree as they were, local work kept, and a
    redelivery fails again instead of answering "already deployed"."""

    local_commit = False  # merge: a local commit, so the update makes a merge commit

    @gen_test(timeout=60)
    async def test_invalid_gitmodules_leaves_the_checkout_as_it_was(
            self: Any) -> None:
        deployed = self.repos.deployed
        (deployed / "notes.txt").write_text("local notes\n")
        status_before = "?? notes.txt"
        if self.local_commit:
            (deployed / "README.local").write_text("local work\n")
            git(deployed, "add", "README.local")
            git(deployed, "commit", "-q", "-m", "a local commit")
            (deployed / "README.local").write_text("local edit\n")
            status_before = " M README.local\n" + status_before
        old = head(deployed)
        url = self.repos.sub_origin.as_uri()
        move_submodule(self.repos)
        sha = commit_files(self.repos, {".gitmodules": INVALID_GITMODULES.format(url=url),
                                        "app.py": "print('new blog')\n"}, "bad gitmodules")

        status, body = await self.deliver_push(sha, before=old)
        assert status == 500, body
        assert "submodule.posts.update" in body["reason"], body["reason"]
        assert body["head"] == old, body
        assert (deployed / "app.py").read_text() == "print('blog')\n"
        assert_consistent(deployed, old, status_before, fsck=False)

        status, body = await self.deliver_push(sha, before=old)
        assert status == 500, body  # never "already deployed"
        assert_consistent(deployed, old, status_before, fsck=False)


class FFOnlyInvalidGitmodulesTest(InvalidGitmodulesCases, FaultTestCase):
    pass


class MergeInvalidGitmodulesTest(InvalidGitmodulesCases, FaultTestCase):
    settings: ClassVar[dict[str, Any]] = {"pull_strategy": "merge"}
    local_commit = True


class RebaseInvalidGitmodulesTest(InvalidGitmodulesCases, FaultTestCase):
    settings: ClassVar[dict[str, Any]] = {"pull_strategy": "rebase"}


class ResetInvalidGitmodulesTest(InvalidGitmodulesCases, FaultTestCase):
    settings: ClassVar[dict[str, Any]] = {"pull_strategy": "reset"}


# -- post_deploy failed: the next delivery (or deployhook deploy) runs it again -----------

FLAKY_SCRIPT = """
import os, pathlib
runs = pathlib.Path(os.environ["DEPLOYHOOK_REPO_PATH"]).parent / "post_deploy.runs"
with runs.open("a") as f:
    f.write(os.environ["DEPLOYHOOK_HEAD_AFTER"] + "\\n")
raise SystemExit(3 if (runs.parent / "post_deploy.fail").exists() else 0)
"""


class PostDeployRetryTest(FaultTestCase):
    settings: ClassVar[dict[str, Any]] = {"post_deploy": [sys.executable, "-c", FLAKY_SCRIPT]}

    def runs(self) -> list[str]:
        path = self.tmp / "post_deploy.runs"
        return path.read_text().split() if path.exists() else []

    @gen_test(timeout=60)
    async def test_redelivery_after_a_failed_post_deploy_runs_it_again(self) -> None:
        """post_deploy fails: 500, HEAD at the push.  Redelivered: post_deploy runs again
        (200 "deployed", not "already deployed"); then "already deployed"."""
        (self.tmp / "post_deploy.fail").write_text("")
        old = head(self.repos.deployed)
        sha = self.repos.commit("post.rst", "needs a migration\n")
        status, body = await self.deliver_push(sha, before=old)
        assert status == 500, body
        assert body["head"] == sha and self.runs() == [sha]

        status, body = await self.deliver_push(sha, before=old)
        assert status == 500, body  # still failing: run again, not "already deployed"
        assert self.runs() == [sha, sha]

        (self.tmp / "post_deploy.fail").unlink()
        status, body = await self.deliver_push(sha, before=old)
        assert status == 200, body
        assert body["reason"] == f"deployed {sha[:12]}", body
        assert self.runs() == [sha, sha, sha]

        status, body = await self.deliver_push(sha, before=old)
        assert status == 200, body
        assert body["reason"] == f"already deployed {sha[:12]}", body
        assert self.runs() == [sha, sha, sha]

    @gen_test(timeout=60)
    async def test_deployhook_deploy_after_a_failed_post_deploy_runs_it_again(self) -> None:
        """The daemon's post_deploy failed; ``deployhook deploy`` (nothing to fetch) runs
        it again, and then the daemon answers "already deployed"."""
        (self.tmp / "post_deploy.fail").write_text("")
        sha = self.repos.commit("post.rst", "needs a migration\n")
        status, body = await self.deliver_push(sha)
        assert status == 500, body
        (self.tmp / "post_deploy.fail").unlink()
        config = self.tmp / "config.py"
        config.write_text(f"repo_path = {str(self.repos.deployed)!r}\n"
                          f"post_deploy = {[sys.executable, '-c', FLAKY_SCRIPT]!r}\n"
                          f"state_db = {str(self.tmp / 'cli.sqlite3')!r}\nreload = 'none'\n")
        proc = subprocess.run([sys.executable, "-m", "deployhook", "deploy", "--config",
                               str(config)], capture_output=True, text=True, timeout=60)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert self.runs() == [sha, sha]
        status, body = await self.deliver_push(sha)
        assert status == 200 and body["reason"].startswith("already deployed"), body
        assert self.runs() == [sha, sha]


# -- every git command is bounded, hooks included ---------------------------------------

# The hook's sleep runs in the background so that only killing git's whole process
# group (not git and its children) ends it.
SLOW_HOOK = "#!/bin/sh\nsleep 60 &\necho $! > '{pid}'\nwait\n"
# reference-transaction runs for every ref update: sleep only once HEAD's branch moved.
SLOW_REF_HOOK = ("#!/bin/sh\n[ \"$1\" = committed ] || exit 0\n"
                 "grep -q ' refs/heads/main$' || exit 0\n" + SLOW_HOOK.split("\n", 1)[1])


class HookTimeoutCases:
    """A hook git runs during the update sleeps past ``git_timeout``: the run fails with
    a timeout reason, the hook is killed, HEAD is back where it was."""

    git_hook = "post-merge"

    @gen_test(timeout=60)
    async def test_slow_hook_is_killed_and_head_put_back(self: Any) -> None:
        deployed = self.repos.deployed
        pid_file = self.tmp / "hook.pid"
        hook = deployed / ".git" / "hooks" / self.git_hook
        script = SLOW_REF_HOOK if self.git_hook == "reference-transaction" else SLOW_HOOK
        hook.write_text(script.format(pid=pid_file))
        hook.chmod(0o755)
        old = head(deployed)
        sha = self.repos.commit("slow.rst", "a slow hook\n")
        status, body = await self.deliver_push(sha, before=old)
        assert status == 500, body
        assert "timed out after 2s" in body["reason"], body["reason"]
        assert body["head"] == old, body
        assert process_gone(int(pid_file.read_text())), "the hook outlived its git"
        assert_consistent(deployed, old)
        hook.unlink()
        await self.next_push_deploys()


class FFOnlyHookTimeoutTest(HookTimeoutCases, FaultTestCase):
    settings: ClassVar[dict[str, Any]] = {"git_timeout": 2.0}


class MergeHookTimeoutTest(HookTimeoutCases, FaultTestCase):
    settings: ClassVar[dict[str, Any]] = {"git_timeout": 2.0, "pull_strategy": "merge"}


class RebaseHookTimeoutTest(HookTimeoutCases, FaultTestCase):
    settings: ClassVar[dict[str, Any]] = {"git_timeout": 2.0, "pull_strategy": "rebase"}
    git_hook = "reference-transaction"


class ResetHookTimeoutTest(HookTimeoutCases, FaultTestCase):
    settings: ClassVar[dict[str, Any]] = {"git_timeout": 2.0, "pull_strategy": "reset"}
    git_hook = "reference-transaction"


# -- the wait for the checkout's lock is bounded ------------------------------------------

HOLD_LOCK = ("import fcntl, sys, time; f = open(sys.argv[1], 'a'); "
             "fcntl.flock(f, fcntl.LOCK_EX); print('ready', flush=True); time.sleep(60)")


class LockWaitTest(FaultTestCase):
    settings: ClassVar[dict[str, Any]] = {"lock_timeout": 1.0}

    @gen_test(timeout=60)
    async def test_lock_held_past_lock_timeout_fails_the_run(self) -> None:
        """Another process holds .git/deployhook.lock (as a running deploy would) longer
        than lock_timeout: 500 saying so, nothing changed; once it lets go, the next
        push deploys."""
        deployed = self.repos.deployed
        lock = deployed / ".git" / "deployhook.lock"
        holder = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(lock)],
                                  stdout=subprocess.PIPE, text=True)
        try:
            assert holder.stdout is not None and holder.stdout.readline().strip() == "ready"
            old = head(deployed)
            sha = self.repos.commit("locked.rst", "waits for the lock\n")
            status, body = await self.deliver_push(sha, before=old)
            assert status == 500, body
            assert body["reason"] == ("another deploy holds the checkout's lock "
                                      f"({lock}) for more than 1s"), body
            assert head(deployed) == old
        finally:
            holder.kill()
            holder.wait(10)
            assert holder.stdout is not None
            holder.stdout.close()
        with open(lock, "a") as f:  # released with its holder
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        await self.next_push_deploys()
        assert_consistent(deployed, head(deployed))
