"""Git faults on a production checkout: no fault may leave the server worse off.

Real git, a real DeployHook on a real HTTP server (or a real daemon process),
real processes holding locks, a real full filesystem.  Each case checks the
answer GitHub records (status and a reason a user understands), that the
checkout is consistent afterwards (HEAD where expected, ``git fsck`` clean, no
lock, no merge or rebase left in progress, local work intact), and that the
next push deploys normally.  docs/reliability.rst is the matrix of these cases.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

from tornado.testing import gen_test

from deployhook import Config
from tests.apptest import HookTestCase
from tests.helpers import (
    Daemon,
    Repos,
    free_port,
    git,
    http,
    push_payload,
    signed,
    start_daemon,
)
from tests.tools import require_tool

Answer = tuple[int, dict[str, Any]]
LEFTOVERS = ("MERGE_HEAD", "CHERRY_PICK_HEAD", "REVERT_HEAD", "rebase-merge", "rebase-apply")


def check(ok: bool, what: str) -> None:
    """Assert ``ok``; ``what`` says what went wrong."""
    assert ok, what


# -- checking a checkout ------------------------------------------------------------------


def head(repo: Path) -> str:
    """The commit ``repo`` has checked out."""
    return git(repo, "rev-parse", "HEAD")


def git_dirs(repo: Path) -> Iterator[Path]:
    """The checkout's git dir and its submodules' git dirs."""
    yield repo / ".git"
    modules = repo / ".git" / "modules"
    if modules.is_dir():
        yield from (p.parent for p in modules.rglob("HEAD")
                    if (p.parent / "objects").is_dir() and p.parent.name != "logs")


def locks(repo: Path) -> list[str]:
    """Every git lock file in the checkout's (and its submodules') git dirs."""
    found: list[str] = []
    for directory in git_dirs(repo):
        candidates = [*directory.glob("*.lock"), *directory.glob("refs/**/*.lock")]
        found += [str(p.relative_to(repo)) for p in candidates if p.name != "deployhook.lock"]
    return sorted(found)


def read_git(repo: Path, *args: str) -> str:
    """Run a read-only git command that writes nothing (so it works on a full disk)."""
    proc = subprocess.run(["git", "--no-optional-locks", *args], cwd=repo, capture_output=True,
                          text=True, env={**os.environ, "GIT_OPTIONAL_LOCKS": "0"})
    assert proc.returncode == 0, f"git {' '.join(args)} failed: {proc.stderr}"
    return proc.stdout.rstrip("\n")


def porcelain(repo: Path, *args: str) -> str:
    """``git status --porcelain`` exactly (leading spaces kept), without the last newline."""
    return read_git(repo, "status", "--porcelain", *args)


def assert_consistent(repo: Path, sha: str, status: str = "", fsck: bool = True) -> None:
    """HEAD is ``sha``, ``git status`` is ``status``, nothing half done, fsck clean
    (``fsck=False``: when a fetched object is one fsck rejects, as a bad .gitmodules)."""
    assert head(repo) == sha
    assert porcelain(repo) == status
    assert locks(repo) == [], f"lock files left behind: {locks(repo)}"
    for directory in git_dirs(repo):
        for leftover in LEFTOVERS:
            assert not (directory / leftover).exists(), f"{directory}/{leftover} left behind"
    if fsck:
        read_git(repo, "fsck", "--no-progress")  # fails when the repository is damaged
    submodules = read_git(repo, "submodule", "status", "--recursive")
    assert not any(line.startswith(("-", "+", "U")) for line in submodules.splitlines()), \
        submodules


def show(repo: Path, spec: str) -> bytes:
    """The exact bytes of a blob (``rev:path``), as git would check it out."""
    return subprocess.run(["git", "show", spec], cwd=repo, capture_output=True,
                          check=True).stdout


def commit_files(repos: Repos, files: dict[str, bytes | str], message: str) -> str:
    """Commit several files in the pusher clone in one commit, push; return the SHA."""
    for name, content in files.items():
        path = repos.pusher / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content)
    git(repos.pusher, "add", *files)
    git(repos.pusher, "commit", "-q", "-m", message)
    git(repos.pusher, "push", "-q", "origin", "HEAD:main")
    return head(repos.pusher)


class LockHolder:
    """A child process that keeps ``path`` open (as a running git keeps its lock)."""

    def __init__(self, path: Path) -> None:
        code = ("import sys, time; f = open(sys.argv[1], 'a'); print('ready', flush=True); "
                "time.sleep(60)")
        self.proc = subprocess.Popen([sys.executable, "-c", code, str(path)],
                                     stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None
        assert self.proc.stdout.readline().strip() == "ready"

    @property
    def pid(self) -> int:
        return self.proc.pid

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(10)
        if self.proc.stdout is not None:
            self.proc.stdout.close()


# -- the in-process server ----------------------------------------------------------------


class FaultTestCase(HookTestCase):
    """HookTestCase with push, record and next-push helpers."""

    async def deliver_push(self, after: str, before: str | None = None) -> Answer:
        """Deliver a signed push of ``after`` to main with a fresh delivery ID."""
        payload = push_payload(after, before=before or head(self.repos.deployed))
        return await self.deliver(payload, delivery=str(uuid.uuid4()))

    async def get_json(self, path: str) -> Answer:
        return await self.send(b"", {}, method="GET", path=path)

    async def run_record(self, run_id: int) -> dict[str, Any]:
        """``GET /deployments/<run_id>``: the run with its steps."""
        status, run = await self.get_json(f"/deployments/{run_id}")
        assert status == 200, run
        return run

    async def repair_output(self, run_id: int) -> str:
        """The output of the run's ``repair`` step (it must have one)."""
        run = await self.run_record(run_id)
        repairs = [s for s in run["steps"] if s["name"] == "repair"]
        assert len(repairs) == 1, run["steps"]
        assert repairs[0]["status"] == 0
        return str(repairs[0]["output"])

    async def next_push_deploys(self, repo: Path | None = None, status: str = "",
                                merged: bool = False) -> str:
        """A fresh push deploys normally (200, HEAD at it, consistent); return its SHA.
        ``merged``: HEAD is a merge with local history, so it only contains the push."""
        repo = repo or self.repos.deployed
        sha = self.repos.commit("next.rst", f"next push {uuid.uuid4()}\n")
        code, body = await self.deliver_push(sha, before=head(repo))
        assert code == 200, body
        assert body["result"] == "deployed" and body["head"] == head(repo), body
        if merged:
            assert git(repo, "merge-base", "--is-ancestor", sha, "HEAD") == ""
        else:
            assert body["head"] == sha
        assert_consistent(repo, head(repo), status)
        return sha


# -- the remote misbehaves ----------------------------------------------------------------


class SlowRemoteTest(FaultTestCase):
    """The remote stalls for longer than git_timeout."""

    settings: ClassVar[dict[str, Any]] = {"git_timeout": 1.0}

    @gen_test(timeout=30)
    async def test_fetch_past_git_timeout_is_killed_promptly(self) -> None:
        """A 20 s stall with git_timeout=1: 500 naming the timeout long before the stall
        ends (its answer does not wait for the stalled process tree); HEAD stays."""
        old = head(self.repos.deployed)
        sha = self.repos.commit("post.rst", "slow\n")
        self.repos.slow(20)
        start = time.monotonic()
        status, body = await self.deliver_push(sha, before=old)
        elapsed = time.monotonic() - start
        print(f"\n[fetch past git_timeout=1 s] answered in {elapsed:.2f} s")
        assert status == 500, body
        assert body["result"] == "failed"
        assert body["reason"].startswith("fetch failed:"), body["reason"]
        assert "timed out after 1s" in body["reason"], body["reason"]
        assert elapsed < 15, f"answered after {elapsed:.1f} s: the stalled git was not killed"
        assert body["head"] == old
        assert_consistent(self.repos.deployed, old)

        self.repos.slow(0)
        await self.next_push_deploys()


class _AskForCredentials(BaseHTTPRequestHandler):
    """Git smart HTTP that wants a login: every request is answered 401 Basic."""

    server: _CredentialServer

    def do_GET(self) -> None:
        self.server.requests.append((self.path, self.headers.get("Authorization")))
        body = b"Authentication required\n"
        self.send_response(401)
        self.send_header("WWW-Authenticate", 'Basic realm="deployhook-test"')
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_POST = do_GET

    def log_message(self, format: str, *args: Any) -> None:
        pass


class _CredentialServer(ThreadingHTTPServer):
    requests: list[tuple[str, str | None]]


class CredentialsTest(FaultTestCase):
    """The remote is a git HTTP server that asks for a user name and password."""

    def setUp(self) -> None:
        super().setUp()
        self.server = _CredentialServer(("127.0.0.1", 0), _AskForCredentials)
        self.server.requests = []
        thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        thread.start()
        self.addCleanup(self.server.server_close)
        self.addCleanup(self.server.shutdown)
        self.base = f"127.0.0.1:{self.server.server_address[1]}"
        self.origin_url = git(self.repos.deployed, "remote", "get-url", "origin")
        # A hostile environment: an askpass helper that would hang for 60 s if git ran it.
        askpass = self.tmp / "askpass.sh"
        askpass.write_text("#!/bin/sh\nsleep 60\necho hunter2\n")
        askpass.chmod(0o755)
        for name, value in (("GIT_ASKPASS", str(askpass)), ("SSH_ASKPASS", str(askpass)),
                            ("GIT_TERMINAL_PROMPT", "1")):
            self.addCleanup(_restore_env, name, os.environ.get(name))
            os.environ[name] = value

    async def fail_against(self, url: str) -> tuple[Answer, float]:
        """Point origin at ``url``, deliver a push; return the answer and its time."""
        git(self.repos.deployed, "remote", "set-url", "origin", url)
        sha = self.repos.commit("post.rst", "behind a login\n")
        start = time.monotonic()
        answer = await self.deliver_push(sha)
        return answer, time.monotonic() - start

    async def recover(self) -> None:
        git(self.repos.deployed, "remote", "set-url", "origin", self.origin_url)
        await self.next_push_deploys()

    @gen_test(timeout=30)
    async def test_login_prompt_fails_fast(self) -> None:
        """401 with no credentials: 500 at once, never a prompt or an askpass helper."""
        old = head(self.repos.deployed)
        (status, body), elapsed = await self.fail_against(f"http://{self.base}/x.git")
        print(f"\n[remote asks for a login] answered in {elapsed:.2f} s")
        assert status == 500, body
        assert body["reason"].startswith("fetch failed: fatal:"), body["reason"]
        assert "could not read Username" in body["reason"], body["reason"]
        assert "terminal prompts disabled" in body["reason"], body["reason"]
        assert elapsed < 20, f"{elapsed:.1f} s: git waited for a prompt (askpass hangs 60 s)"
        assert self.server.requests, "git never asked the server"
        assert self.server.requests[0][0] == "/x.git/info/refs?service=git-upload-pack"
        assert_consistent(self.repos.deployed, old)
        await self.recover()

    @gen_test(timeout=30)
    async def test_refused_credentials_are_not_shown(self) -> None:
        """Credentials in the URL, refused: 500 "Authentication failed"; the password
        appears neither in the answer nor in /deployments."""
        old = head(self.repos.deployed)
        (status, body), elapsed = await self.fail_against(f"http://user:pw@{self.base}/x.git")
        assert status == 500, body
        assert "Authentication failed" in body["reason"], body["reason"]
        assert elapsed < 20, f"{elapsed:.1f} s: git ran the askpass helper (it hangs 60 s)"
        sent = [auth for _, auth in self.server.requests if auth]
        assert sent, "git never sent the credentials (so they were not refused)"
        assert_consistent(self.repos.deployed, old)

        _, listing = await self.get_json("/deployments")
        run = await self.run_record(body["run"])
        assert run["outcome"] == "failed"
        scrub = str(self.tmp)  # temp folder names are random letters: ignore them
        for shown in (body, listing, run):
            text = json.dumps(shown).replace(scrub, "")
            assert "pw" not in text, text
            assert "user:" not in text, text
        await self.recover()


def _restore_env(name: str, value: str | None) -> None:
    if value is None:
        os.environ.pop(name, None)
    else:
        os.environ[name] = value


# -- local files in the way ---------------------------------------------------------------


class UntrackedCases:
    """An untracked file at a path the push adds (and one elsewhere) under a strategy."""

    repos: Repos

    async def untracked_in_the_way(self: Any) -> None:
        deployed = self.repos.deployed
        old = head(deployed)
        (deployed / "settings.local").write_text("server-only settings\n")
        (deployed / "scratch.txt").write_text("unrelated local file\n")
        sha = self.repos.commit("settings.local", "upstream settings\n")
        status, body = await self.deliver_push(sha, before=old)
        check((deployed / "settings.local").read_text() == "server-only settings\n",
            "the untracked settings.local was overwritten by the deploy")
        assert status == 500, body
        assert "untracked working tree files would be overwritten" in body["reason"], body
        assert "settings.local" in body["reason"], body["reason"]
        assert (deployed / "scratch.txt").read_text() == "unrelated local file\n"
        assert_consistent(deployed, old, status="?? scratch.txt\n?? settings.local")

        (deployed / "settings.local").rename(self.tmp / "settings.local.saved")
        await self.next_push_deploys(status="?? scratch.txt")
        assert (deployed / "settings.local").read_text() == "upstream settings\n"


class FFOnlyUntrackedTest(UntrackedCases, FaultTestCase):
    settings: ClassVar[dict[str, Any]] = {"pull_strategy": "ff-only"}

    @gen_test(timeout=30)
    async def test_untracked_file_in_the_way_is_kept(self) -> None:
        """500 naming the file; the file kept; once moved away the next push deploys."""
        await self.untracked_in_the_way()

    # git treats ignored files as expendable (merge, rebase and reset --hard would all
    # replace a server-only settings file listed in .gitignore), so deployhook's own
    # check before the update lists ignored files at the paths the push adds as well.
    @gen_test(timeout=30)
    async def test_ignored_file_in_the_way_is_kept(self) -> None:
        """An ignored file at a path the push adds is local work too: 500, file kept."""
        deployed = self.repos.deployed
        (deployed / ".git" / "info" / "exclude").write_text("*.local\n")
        old = head(deployed)
        (deployed / "settings.local").write_text("server-only settings\n")
        sha = self.repos.commit("settings.local", "upstream settings\n")
        status, body = await self.deliver_push(sha, before=old)
        check((deployed / "settings.local").read_text() == "server-only settings\n",
            "the ignored settings.local was overwritten by the deploy")
        assert status == 500, body
        assert "settings.local" in body["reason"], body["reason"]
        assert_consistent(deployed, old)


class MergeUntrackedTest(UntrackedCases, FaultTestCase):
    settings: ClassVar[dict[str, Any]] = {"pull_strategy": "merge"}

    @gen_test(timeout=30)
    async def test_untracked_file_in_the_way_is_kept(self) -> None:
        """500 naming the file; the file kept; once moved away the next push deploys."""
        await self.untracked_in_the_way()


class RebaseUntrackedTest(UntrackedCases, FaultTestCase):
    settings: ClassVar[dict[str, Any]] = {"pull_strategy": "rebase"}

    @gen_test(timeout=30)
    async def test_untracked_file_in_the_way_is_kept(self) -> None:
        """500 naming the file; the file kept; once moved away the next push deploys."""
        await self.untracked_in_the_way()


class ResetUntrackedTest(UntrackedCases, FaultTestCase):
    settings: ClassVar[dict[str, Any]] = {"pull_strategy": "reset"}

    # `git reset --hard` alone would overwrite an untracked file at a path the target
    # commit adds; deployhook refuses the update before reset runs, as for the other
    # strategies, so "untracked files stay" (docs/deploying.rst) holds under reset too.
    @gen_test(timeout=30)
    async def test_untracked_file_in_the_way_is_kept(self) -> None:
        """500 naming the file; the file kept; once moved away the next push deploys."""
        await self.untracked_in_the_way()

    @gen_test(timeout=30)
    async def test_untracked_file_elsewhere_stays(self) -> None:
        """reset discards local commits, but an untracked file out of the way stays."""
        deployed = self.repos.deployed
        (deployed / "scratch.txt").write_text("unrelated local file\n")
        await self.next_push_deploys(status="?? scratch.txt")
        assert (deployed / "scratch.txt").read_text() == "unrelated local file\n"


# -- locks left behind --------------------------------------------------------------------


class StaleLockTest(FaultTestCase):
    """Lock files a crashed git left behind, and one a running process still holds."""

    @gen_test(timeout=30)
    async def test_stale_locks_are_removed_and_recorded(self) -> None:
        """index.lock, a ref lock and the submodule's index.lock, held by nobody: removed,
        deployed (200), and the run's "repair" step says what it removed."""
        deployed = self.repos.deployed
        stale = [".git/index.lock", ".git/modules/posts/index.lock", ".git/refs/heads/main.lock"]
        for name in stale:
            (deployed / name).write_text("")
        sha = self.repos.commit("post.rst", "after a crash\n")
        status, body = await self.deliver_push(sha)
        assert status == 200, body
        assert body["head"] == sha
        assert_consistent(deployed, sha)
        output = await self.repair_output(body["run"])
        assert output.startswith("removed stale lock files left by a crashed git: "), output
        for name in stale:
            assert name in output, output
        await self.next_push_deploys()

    @gen_test(timeout=30)
    async def test_lock_held_by_a_live_process_is_kept(self) -> None:
        """index.lock open in a live process: 500 naming its pid, the lock untouched;
        after the holder exits, the next push deploys."""
        deployed = self.repos.deployed
        lock = deployed / ".git" / "index.lock"
        old = head(deployed)
        holder = LockHolder(lock)
        try:
            sha = self.repos.commit("post.rst", "while git runs\n")
            status, body = await self.deliver_push(sha, before=old)
            assert status == 500, body
            assert body["result"] == "failed"
            assert body["reason"].startswith(
                f".git/index.lock is held by a running git process (pid {holder.pid})"), body
            assert lock.exists(), "a held lock was removed"
            assert head(deployed) == old and body["head"] == old
            assert self.repos.fetches() == 0
        finally:
            holder.stop()
        assert lock.exists()  # the holder is gone; now it is a stale lock like any other
        sha2 = await self.next_push_deploys()
        assert head(deployed) == sha2


class SymlinkedCheckoutLockTest(FaultTestCase):
    """repo_path given through a symbolic link (an embedding app's Config, not load())."""

    def make_config(self, **overrides: Any) -> Config:
        link = self.tmp / "current"
        if not link.exists():
            link.symlink_to(self.repos.deployed)
        return super().make_config(repo_path=str(link), **overrides)

    # /proc/*/fd link targets are always resolved paths, so repair.holders() compares
    # them with the lock's realpath; otherwise a lock held through a symlinked (or
    # relative) repo_path would look stale and be deleted under the running git.
    @gen_test(timeout=30)
    async def test_lock_held_through_a_symlink_is_kept(self) -> None:
        """The same held index.lock, with repo_path a symlink to the checkout: kept, 500."""
        deployed = self.repos.deployed
        lock = deployed / ".git" / "index.lock"
        holder = LockHolder(lock)
        try:
            sha = self.repos.commit("post.rst", "while git runs\n")
            status, body = await self.deliver_push(sha)
            check(lock.exists(), "the held index.lock was removed")
            assert status == 500, body
            assert f"pid {holder.pid}" in body["reason"], body
        finally:
            holder.stop()
        await self.next_push_deploys()


# -- an update cut short ------------------------------------------------------------------


class CutShortUpdateTest(FaultTestCase):
    """What a git killed in the middle of a fast-forward leaves, and how it is undone."""

    @gen_test(timeout=30)
    async def test_cut_short_update_is_put_back_then_deployed(self) -> None:
        """Some new files written, index.lock left, a local edit elsewhere: repaired,
        deployed (200) at the pushed SHA, the local edit kept, the repair recorded."""
        deployed = self.repos.deployed
        first = self.repos.commit("readme.rst", "readme v1\n")
        assert (await self.deliver_push(first))[0] == 200
        sha = commit_files(self.repos, {"readme.rst": "readme v2\n", "new.rst": "new\n",
                                        "later.rst": "not written yet\n"}, "v2")
        # The killed git had fetched, then written two of the three files.
        git(deployed, "fetch", "-q", "origin")
        for name in ("readme.rst", "new.rst"):
            (deployed / name).write_bytes(show(deployed, f"origin/main:{name}"))
        (deployed / ".git" / "index.lock").write_bytes(b"")
        (deployed / "app.py").write_text("print('hotfix')\n")  # unrelated local work

        status, body = await self.deliver_push(sha, before=first)
        assert status == 200, body
        assert body["head"] == sha
        assert_consistent(deployed, sha, status=" M app.py")
        assert (deployed / "app.py").read_text() == "print('hotfix')\n"
        assert (deployed / "later.rst").read_text() == "not written yet\n"
        output = await self.repair_output(body["run"])
        assert "removed stale lock files left by a crashed git: .git/index.lock" in output
        assert "put back files a cut-short update had written: " in output, output
        put_back = output.split("had written: ", 1)[1].split(";")[0].split(", ")
        assert sorted(put_back) == ["new.rst", "readme.rst"], output
        await self.next_push_deploys(status=" M app.py")


class LeftInProgressTest(FaultTestCase):
    """A merge or rebase left in progress (stopped by a conflict, or by a killed git)."""

    @gen_test(timeout=30)
    async def test_merge_left_in_progress_is_aborted(self) -> None:
        """A conflicted merge in the checkout (MERGE_HEAD): aborted, deployed (200), and
        the repair step says so."""
        deployed = self.repos.deployed
        git(deployed, "checkout", "-q", "-b", "topic")
        (deployed / "app.py").write_text("print('topic')\n")
        git(deployed, "commit", "-q", "-am", "topic")
        git(deployed, "checkout", "-q", "main")
        (deployed / "app.py").write_text("print('main')\n")
        git(deployed, "commit", "-q", "-am", "main")
        git(deployed, "merge", "-q", "topic", check=False)
        assert (deployed / ".git" / "MERGE_HEAD").exists()
        local = head(deployed)
        git(deployed, "push", "-q", "origin", "HEAD:main")  # so that ff-only can move on
        git(self.repos.pusher, "pull", "-q", "origin", "main")
        sha = self.repos.commit("post.rst", "after the merge\n")

        status, body = await self.deliver_push(sha, before=local)
        assert status == 200, body
        assert_consistent(deployed, sha)
        assert (deployed / "app.py").read_text() == "print('main')\n"
        output = await self.repair_output(body["run"])
        assert output == "aborted a merge left in progress", output
        await self.next_push_deploys()


class RebaseLeftInProgressTest(FaultTestCase):
    settings: ClassVar[dict[str, Any]] = {"pull_strategy": "rebase"}

    @gen_test(timeout=30)
    async def test_rebase_left_in_progress_is_aborted(self) -> None:
        """A rebase stopped half-way (HEAD detached, .git/rebase-merge): aborted, then the
        deploy rebases the local commit onto the push (200), the repair recorded."""
        deployed = self.repos.deployed
        (deployed / "local.txt").write_text("server commit\n")
        git(deployed, "add", "local.txt")
        git(deployed, "commit", "-q", "-m", "server commit")
        git(self.repos.pusher, "pull", "-q", "origin", "main")
        first = self.repos.commit("post.rst", "upstream\n")
        git(deployed, "fetch", "-q", "origin")
        stop = subprocess.run(["git", "rebase", "-i", "origin/main"], cwd=deployed,
                              capture_output=True, text=True,
                              env={**os.environ, "GIT_SEQUENCE_EDITOR": "sed -i '1i break'"})
        assert stop.returncode == 0, stop.stderr
        assert (deployed / ".git" / "rebase-merge").is_dir()
        sha = self.repos.commit("post.rst", "upstream again\n")

        status, body = await self.deliver_push(sha, before=first)
        assert status == 200, body
        assert git(deployed, "symbolic-ref", "--short", "HEAD") == "main"
        assert git(deployed, "rev-parse", "HEAD^") == sha
        assert git(deployed, "log", "-1", "--format=%s") == "server commit"
        assert_consistent(deployed, head(deployed))
        output = await self.repair_output(body["run"])
        assert output == "aborted a rebase left in progress", output


# -- submodules appear and disappear ------------------------------------------------------


class SubmoduleChangeTest(FaultTestCase):
    """Upstream adds a second submodule, or removes the existing one."""

    @gen_test(timeout=30)
    async def test_submodule_added_upstream_is_checked_out(self) -> None:
        """A new submodule (a new remote repository): 200, checked out at its commit."""
        themes = self.tmp / "themes.git"
        git(self.tmp, "init", "-q", "--bare", "-b", "main", str(themes))
        seed = self.tmp / "seed-themes"
        git(self.tmp, "clone", "-q", themes.as_uri(), str(seed))
        (seed / "theme.css").write_text("body { color: black }\n")
        git(seed, "add", ".")
        git(seed, "commit", "-q", "-m", "theme")
        git(seed, "push", "-q", "origin", "HEAD:main")
        git(self.repos.pusher, "submodule", "add", "-q", "-b", "main", themes.as_uri(), "themes")
        git(self.repos.pusher, "commit", "-q", "-m", "add themes")
        git(self.repos.pusher, "push", "-q", "origin", "HEAD:main")
        sha = head(self.repos.pusher)

        status, body = await self.deliver_push(sha)
        assert status == 200, body
        deployed = self.repos.deployed
        assert (deployed / "themes" / "theme.css").read_text() == "body { color: black }\n"
        assert head(deployed / "themes") == head(seed)
        assert_consistent(deployed, sha)
        await self.next_push_deploys()

    @gen_test(timeout=30)
    async def test_submodule_removed_upstream(self) -> None:
        """posts removed upstream: 200; git leaves the old work tree as an untracked
        posts/ (and .git/modules/posts), no tracked change, and later pushes deploy."""
        git(self.repos.pusher, "rm", "-q", "posts")
        git(self.repos.pusher, "commit", "-q", "-m", "drop posts")
        git(self.repos.pusher, "push", "-q", "origin", "HEAD:main")
        sha = head(self.repos.pusher)

        status, body = await self.deliver_push(sha)
        assert status == 200, body
        deployed = self.repos.deployed
        assert git(deployed, "ls-files", "posts") == ""
        assert porcelain(deployed, "--untracked-files=no") == ""
        # What git leaves behind: the submodule's files, untracked, and its git dir.
        assert (deployed / "posts" / "index.rst").read_text() == "Hello\n=====\n"
        assert (deployed / ".git" / "modules" / "posts").is_dir()
        assert_consistent(deployed, sha, status="?? posts/")
        await self.next_push_deploys(status="?? posts/")


# -- force-pushes under merge and rebase ----------------------------------------------------


class ForcePushCases:
    """origin's main rewritten: the deployed commit dropped, another one in its place."""

    repos: Repos

    async def deploy_then_force_push(self: Any, name: str) -> tuple[str, str]:
        """Deploy a commit of post.rst, then replace it upstream by one of ``name``."""
        dropped = self.repos.commit("post.rst", "dropped upstream\n")
        assert (await self.deliver_push(dropped))[0] == 200
        pusher = self.repos.pusher
        git(pusher, "reset", "-q", "--hard", "HEAD~1")
        (pusher / name).write_text("rewritten\n")
        git(pusher, "add", name)
        git(pusher, "commit", "-q", "-m", "rewritten history")
        git(pusher, "push", "-q", "-f", "origin", "HEAD:main")
        return dropped, head(pusher)


class MergeForcePushTest(ForcePushCases, FaultTestCase):
    """Under merge a force-push is merged like any diverged history."""

    settings: ClassVar[dict[str, Any]] = {"pull_strategy": "merge"}

    @gen_test(timeout=30)
    async def test_force_push_is_merged_and_dropped_commit_stays(self) -> None:
        """200; HEAD is a merge of the dropped commit and the pushed one, so the commit
        removed upstream is still deployed (documented: use reset for force-pushes)."""
        deployed = self.repos.deployed
        dropped, sha = await self.deploy_then_force_push("other.rst")
        status, body = await self.deliver_push(sha, before=dropped)
        assert status == 200, body
        merge = head(deployed)
        assert body["head"] == merge and body["result"] == "deployed"
        assert git(deployed, "rev-parse", "HEAD^1", "HEAD^2").split() == [dropped, sha]
        assert (deployed / "post.rst").read_text() == "dropped upstream\n"
        assert (deployed / "other.rst").read_text() == "rewritten\n"
        assert_consistent(deployed, merge)
        await self.next_push_deploys(merged=True)

    @gen_test(timeout=30)
    async def test_conflicting_force_push_fails_until_reset_by_hand(self) -> None:
        """The rewrite conflicts with the dropped commit: 500, the merge aborted, HEAD
        stays; every later push fails the same way until the checkout is reset by hand."""
        deployed = self.repos.deployed
        dropped, sha = await self.deploy_then_force_push("post.rst")
        status, body = await self.deliver_push(sha, before=dropped)
        assert status == 500, body
        assert body["reason"].startswith("merge failed:"), body["reason"]
        assert "CONFLICT" in body["reason"] and "post.rst" in body["reason"], body["reason"]
        assert_consistent(deployed, dropped)

        later = self.repos.commit("later.rst", "later\n")
        status, body = await self.deliver_push(later, before=dropped)
        assert status == 500 and "CONFLICT" in body["reason"], body
        assert_consistent(deployed, dropped)

        git(deployed, "reset", "-q", "--hard", "origin/main")  # the operator's fix
        await self.next_push_deploys()


class RebaseForcePushTest(ForcePushCases, FaultTestCase):
    """Under rebase a force-push should move to the new history, keeping local commits."""

    settings: ClassVar[dict[str, Any]] = {"pull_strategy": "rebase"}

    # A plain `git rebase <tracking>` would take the commit the force-push removed
    # upstream for a local commit and replay it on the new history; deployhook runs
    # `git rebase --fork-point <tracking>`, and the tracking ref's reflog shows that
    # commit came from upstream, so only real local commits are replayed.
    @gen_test(timeout=30)
    async def test_force_push_drops_the_removed_commit(self) -> None:
        """200 and HEAD exactly the pushed SHA: the commit removed upstream is gone."""
        deployed = self.repos.deployed
        dropped, sha = await self.deploy_then_force_push("other.rst")
        status, body = await self.deliver_push(sha, before=dropped)
        assert status == 200, body
        check(head(deployed) == sha, "HEAD is the dropped commit replayed onto the push")
        assert_consistent(deployed, sha)
        assert not (deployed / "post.rst").exists()

    # Without --fork-point the replayed commit would conflict with the rewrite: 500
    # "rebase failed ... could not apply" on this and every later push.
    @gen_test(timeout=30)
    async def test_conflicting_force_push_deploys(self) -> None:
        """The rewrite changes the dropped commit's file: still 200 at the pushed SHA."""
        deployed = self.repos.deployed
        dropped, sha = await self.deploy_then_force_push("post.rst")
        status, body = await self.deliver_push(sha, before=dropped)
        if status == 500:
            assert body["reason"].startswith("rebase failed:"), body["reason"]
            assert "could not apply" in body["reason"], body["reason"]
            assert_consistent(deployed, dropped)  # aborted cleanly, at least
        check(status == 200, "500: the dropped commit was replayed and conflicted")
        assert head(deployed) == sha
        assert_consistent(deployed, sha)

    @gen_test(timeout=30)
    async def test_force_push_keeps_real_local_commits(self) -> None:
        """A commit made on the server after the deploy is replayed on the new history."""
        deployed = self.repos.deployed
        dropped, sha = await self.deploy_then_force_push("other.rst")
        (deployed / "local.txt").write_text("server commit\n")
        git(deployed, "add", "local.txt")
        git(deployed, "commit", "-q", "-m", "server commit")
        status, body = await self.deliver_push(sha, before=dropped)
        assert status == 200, body
        assert git(deployed, "merge-base", "--is-ancestor", sha, "HEAD") == ""
        assert git(deployed, "log", "-1", "--format=%s") == "server commit"
        assert (deployed / "local.txt").read_text() == "server commit\n"
        assert_consistent(deployed, head(deployed))


# -- a full disk --------------------------------------------------------------------------


class DiskFullTest(FaultTestCase):
    """The checkout lives on a small tmpfs that a push fills up."""

    BIG = 3 * 1024 * 1024

    def get_app(self) -> Any:
        self.addCleanup(shutil.rmtree, self.tmp, ignore_errors=True)  # after the unmount
        self.disk = self.tmp / "disk"
        self.disk.mkdir()
        mount = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=12m", "tmpfs",
                                str(self.disk)], capture_output=True, text=True)
        if mount.returncode != 0:
            require_tool(False, f"cannot mount a tmpfs here ({mount.stderr.strip()}); "
                         "the disk-full cases need root and mount permission")
        self.addCleanup(self._unmount)
        self.checkout = self.disk / "deployed"
        git(self.tmp, "clone", "-q", "--recurse-submodules", self.repos.origin.as_uri(),
            str(self.checkout))
        return super().get_app()

    def _unmount(self) -> None:
        """Runs after tearDown has closed the hook (its git processes are gone)."""
        if subprocess.run(["umount", str(self.disk)], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", str(self.disk)], check=True)

    def make_config(self, **overrides: Any) -> Config:
        return super().make_config(repo_path=str(self.checkout), **overrides)

    def fill(self, leave: int) -> Path:
        """Fill the tmpfs until ``leave`` bytes are free; return the filler file."""
        filler = self.disk / "filler"
        free = shutil.disk_usage(self.disk).free
        with filler.open("wb") as f:
            f.write(b"\0" * max(0, free - leave))
        return filler

    def push_big(self) -> str:
        """Push small changes and a large incompressible file in one commit."""
        files: dict[str, bytes | str] = {f"a{i}.txt": f"small {i}\n" for i in range(3)}
        files["app.py"] = "print('v2')\n"
        files["z-big.bin"] = os.urandom(self.BIG)
        return commit_files(self.repos, files, "big")

    def assert_serving_old(self, old: str) -> None:
        """The checkout is at ``old`` with its files as they were, nothing left behind."""
        assert_consistent(self.checkout, old)
        assert (self.checkout / "app.py").read_text() == "print('blog')\n"
        assert not list(self.checkout.glob("a*.txt")) and not (self.checkout / "z-big.bin").exists()

    @gen_test(timeout=60)
    async def test_disk_full_during_fetch(self) -> None:
        """No room for the objects: 500 "No space left on device", old commit still
        served, no lock; with space again the next push deploys."""
        old = head(self.checkout)
        sha = self.push_big()
        filler = self.fill(leave=1024 * 1024)
        status, body = await self.deliver_push(sha, before=old)
        assert status == 500, body
        assert body["reason"].startswith("fetch failed:"), body["reason"]
        assert "No space left on device" in body["reason"], body["reason"]
        assert body["head"] == old
        self.assert_serving_old(old)

        filler.unlink()
        sha2 = await self.next_push_deploys(repo=self.checkout)
        assert (self.checkout / "z-big.bin").stat().st_size == self.BIG
        assert head(self.checkout) == sha2

    # When the objects fit but the work tree does not, `git merge --ff-only` fails
    # ("error: unable to write file z-big.bin") after writing part of the new files
    # (app.py new, a*.txt created) and leaves no index.lock for repair to notice.
    # After the failed update deployhook puts every path it may have written that had
    # no local change back to HEAD's version (deleting new ones), partial files too.
    @gen_test(timeout=60)
    async def test_disk_full_during_checkout(self) -> None:
        """Room for the objects but not the files: 500 naming the file, the old commit
        still served as it was, and with space again the next push deploys."""
        old = head(self.checkout)
        sha = self.push_big()
        filler = self.fill(leave=self.BIG + 512 * 1024)
        status, body = await self.deliver_push(sha, before=old)
        assert status == 500, body
        assert body["reason"].startswith("merge failed:"), body["reason"]
        assert "unable to write file z-big.bin" in body["reason"], body["reason"]
        assert body["head"] == old and head(self.checkout) == old
        check(porcelain(self.checkout) == "",
            "the failed checkout left new files written over the old commit")
        self.assert_serving_old(old)

        filler.unlink()
        await self.next_push_deploys(repo=self.checkout)


# -- the daemon is killed ------------------------------------------------------------------


def start_group_daemon(repos: Repos, secret_file: Path, port: int) -> Daemon:
    """A ready daemon in its own session, so that its whole process group can be killed."""
    daemon = start_daemon(repos, secret_file, port, new_session=True)
    daemon.wait_ready()
    return daemon


def deliver_in_background(daemon: Daemon, sha: str, before: str) -> threading.Thread:
    """POST a push from a thread; the answer is lost with the daemon, so it is ignored."""
    body, headers = signed(push_payload(sha, before=before), delivery=str(uuid.uuid4()))

    def send() -> None:
        try:
            http("POST", daemon.url + "/github", body, headers, timeout=60)
        except OSError:
            pass

    thread = threading.Thread(target=send, daemon=True)
    thread.start()
    return thread


def wait_for(condition: Callable[[], bool], timeout: float, what: str,
             log: Callable[[], str] | None = None) -> None:
    """Poll ``condition`` every 5 ms; fail saying ``what`` (and the log) after ``timeout``."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"{what} within {timeout} s\n{log() if log else ''}"
        time.sleep(0.005)


def running(db: Path) -> bool:
    """Whether the record's newest run is still running."""
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as record:
        row = record.execute("SELECT outcome FROM runs ORDER BY id DESC LIMIT 1").fetchone()
    return row is not None and row[0] == "running"


def recovered_runs(daemon: Daemon, sha: str, repo: Path) -> list[dict[str, Any]]:
    """Wait until the restarted daemon has deployed ``sha`` unasked; return its runs."""
    wait_for(lambda: head(repo) == sha, 30, "recovery did not deploy", daemon.log)

    def finished() -> bool:
        status, body = http("GET", daemon.url + "/deployments?per_page=10")
        return status == 200 and body["runs"][0]["outcome"] != "running"

    wait_for(finished, 10, "the recovery run did not finish", daemon.log)
    return http("GET", daemon.url + "/deployments?per_page=10")[1]["runs"]


def test_killed_group_mid_fetch_is_recovered(repos: Repos, secret_file: Path) -> None:
    """SIGKILL to the daemon and its git during a fetch: at the next start the run is
    marked interrupted and the push deployed with no new delivery."""
    port = free_port()
    daemon = start_group_daemon(repos, secret_file, port)
    try:
        old = head(repos.deployed)
        sha = repos.commit("post.rst", "lost in a crash\n")
        repos.slow(30)
        sender = deliver_in_background(daemon, sha, old)
        wait_for(lambda: repos.fetches() > 0, 10, "no fetch started", daemon.log)
        wait_for(lambda: running(repos.root / "deployhook.sqlite3"), 10,
                 "the run not recorded", daemon.log)
        daemon.kill_group()
        sender.join(10)
    finally:
        daemon.stop()
    assert head(repos.deployed) == old
    repos.slow(0)

    daemon = start_group_daemon(repos, secret_file, port)
    try:
        runs = recovered_runs(daemon, sha, repos.deployed)
        assert [(r["id"], r["trigger"], r["outcome"]) for r in runs] == [
            (2, "recovery", "ok"), (1, "webhook", "interrupted")], runs
        assert_consistent(repos.deployed, sha)
    finally:
        daemon.stop()


def test_killed_group_mid_merge_is_recovered(repos: Repos, secret_file: Path) -> None:
    """SIGKILL to the daemon and its git while the fast-forward writes files (index.lock
    held, some new files written): at the next start the lock is removed, the written
    files put back, and the push deployed with no new delivery."""
    deployed = repos.deployed
    # A slow disk: a smudge filter makes git take 0.1 s per file it checks out.
    git(deployed, "config", "filter.slow.smudge", "sleep 0.1; cat")
    (deployed / ".git" / "info" / "attributes").write_text("*.txt filter=slow\n")
    names = [f"f{i:02}.txt" for i in range(20)]
    port = free_port()
    daemon = start_group_daemon(repos, secret_file, port)
    try:
        old = head(deployed)
        sha = commit_files(repos, {name: f"file {name}\n" for name in names}, "many files")
        sender = deliver_in_background(daemon, sha, old)
        lock = deployed / ".git" / "index.lock"
        wait_for(lambda: lock.exists() and (deployed / names[3]).exists(), 20,
                 "the fast-forward never got under way", daemon.log)
        daemon.kill_group()
        sender.join(10)
    finally:
        daemon.stop()
    written = [name for name in names if (deployed / name).exists()]
    print(f"\n[killed mid-merge] {len(written)} of {len(names)} files written")
    assert lock.exists() and 4 <= len(written) < len(names)
    assert head(deployed) == old

    daemon = start_group_daemon(repos, secret_file, port)
    try:
        runs = recovered_runs(daemon, sha, deployed)
        assert [(r["id"], r["trigger"], r["outcome"]) for r in runs] == [
            (2, "recovery", "ok"), (1, "webhook", "interrupted")], runs
        assert_consistent(deployed, sha)
        assert all((deployed / name).read_text() == f"file {name}\n" for name in names)
        steps = http("GET", daemon.url + "/deployments/2")[1]["steps"]
        repair = [s["output"] for s in steps if s["name"] == "repair"]
        assert len(repair) == 1, steps
        assert "removed stale lock files left by a crashed git: .git/index.lock" in repair[0]
        assert "put back files a cut-short update had written: " in repair[0]
        assert all(name in repair[0] for name in written), repair[0]
    finally:
        daemon.stop()
