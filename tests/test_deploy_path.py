"""The deploy path's shortcuts keep every guard: objects answered from the object
database, the submodule update's helper, the git maintenance left for after the answer.

Real git throughout; a ``git`` on PATH that logs each command (then runs the real one)
shows which commands a deploy runs.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from deployhook import Config
from deployhook.forges.delivery import Push
from deployhook.git import submodules
from deployhook.git.checkout import Checkout
from deployhook.git.objects import surely_absent
from deployhook.git.repair import git_dirs
from tests.helpers import Repos, git


def push(after: str, before: str = "0" * 40) -> Push:
    return Push(ref="refs/heads/main", before=before, after=after, deleted=False,
                repository="", default_branch="main", pusher="octocat")


@pytest.fixture
def logged_git(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A ``git`` first on PATH that appends its arguments to the returned log file."""
    real = shutil.which("git")
    assert real is not None
    folder, log = tmp_path / "bin", tmp_path / "git-commands.log"
    folder.mkdir()
    (folder / "git").write_text(f'#!/bin/sh\nprintf "%s\\n" "$*" >> "{log}"\nexec "{real}" "$@"\n')
    (folder / "git").chmod(0o755)
    monkeypatch.setenv("PATH", f"{folder}{os.pathsep}{os.environ['PATH']}")
    yield log


def commands(log: Path) -> list[str]:
    return log.read_text().splitlines() if log.exists() else []


def commit_graph(git_dir: Path) -> bool:
    """Whether git maintenance's commit-graph task has written one in ``git_dir``."""
    info = git_dir / "objects" / "info"
    return (info / "commit-graph").exists() or (info / "commit-graphs").is_dir()


def eager_maintenance(repo: Path) -> None:
    """Make ``git maintenance run --auto`` write a commit-graph whenever a commit is
    missing from it (the task's own threshold is 100)."""
    git(repo, "config", "maintenance.commit-graph.enabled", "true")
    git(repo, "config", "maintenance.commit-graph.auto", "1")


# -- the object database ---------------------------------------------------------------

def test_objects_loose_or_packed_are_present_and_others_surely_absent(repos: Repos) -> None:
    git_dir = repos.deployed / ".git"
    packed = Repos.head(repos.deployed)
    git(repos.deployed, "gc", "-q")
    assert not (git_dir / "objects" / packed[:2] / packed[2:]).exists()
    assert not surely_absent(git_dir, packed)
    loose = _write_blob(repos.deployed, "a loose blob\n")
    assert (git_dir / "objects" / loose[:2] / loose[2:]).exists()
    assert not surely_absent(git_dir, loose)
    upstream = repos.commit()  # pushed, not fetched
    assert surely_absent(git_dir, upstream)
    assert surely_absent(git_dir, "0" * 40) and surely_absent(git_dir, "f" * 40)


def test_objects_unsure_answers_maybe(repos: Repos, tmp_path: Path) -> None:
    """Alternates, a linked work tree's gitfile, a SHA that is not 40 hex digits and an
    unreadable pack index are never "surely absent"."""
    git_dir = repos.deployed / ".git"
    upstream = repos.commit()
    assert not surely_absent(git_dir, upstream.upper())
    assert not surely_absent(git_dir, upstream[:12])
    linked = tmp_path / "linked"
    git(repos.deployed, "worktree", "add", "-q", "--detach", str(linked))
    assert (linked / ".git").is_file()
    assert not surely_absent(linked / ".git", upstream)
    index = next((git_dir / "objects" / "pack").glob("*.idx"))
    saved = index.read_bytes()
    index.write_bytes(b"not an index")
    try:
        assert not surely_absent(git_dir, upstream)
    finally:
        index.write_bytes(saved)
    (git_dir / "objects" / "info" / "alternates").write_text(str(repos.origin / "objects"))
    assert not surely_absent(git_dir, upstream)


def _write_blob(repo: Path, text: str) -> str:
    return subprocess.run(["git", "hash-object", "-w", "--stdin"], cwd=repo, input=text,
                          capture_output=True, text=True, check=True).stdout.strip()


def test_a_new_push_is_deployed_without_merge_base(repos: Repos, logged_git: Path) -> None:
    """The pushed commit is not in the checkout before the fetch: no ``merge-base`` asks;
    a redelivery of a deployed push still skips the fetch."""
    before = Repos.head(repos.deployed)
    sha = repos.commit()
    co = Checkout(Config(repo_path=str(repos.deployed)))
    result = co.deploy("main", [push(sha, before)])
    assert result.ok and result.head_after == sha and result.contains == {sha: True}
    assert not [c for c in commands(logged_git) if c.startswith("merge-base")]
    fetches = repos.fetches()
    again = co.deploy("main", [push(sha, before), push(before)])
    assert again.ok and not again.moved and again.contains == {sha: True, before: True}
    assert repos.fetches() == fetches


# -- submodules ------------------------------------------------------------------------

def test_a_submodule_bump_checks_no_submodule_for_local_changes(repos: Repos,
                                                               logged_git: Path) -> None:
    """Only files are checked for local changes (a submodule's own state is not one): a
    bump alone runs no ``git diff --name-only`` and no ``git status`` in the submodule."""
    before = Repos.head(repos.deployed)
    sha = repos.commit_submodule("bumped\n")
    result = Checkout(Config(repo_path=str(repos.deployed))).deploy("main", [push(sha, before)])
    assert result.ok and result.head_after == sha
    assert (repos.deployed / "posts" / "index.rst").read_text() == "bumped\n"
    ran = commands(logged_git)
    assert not [c for c in ran if c.startswith(("diff --name-only", "status"))], ran


def test_a_file_with_local_changes_is_still_found(repos: Repos) -> None:
    """A push changing a file that has local changes: ff-only refuses, and the
    submodule bump in the same push is not half applied."""
    before = Repos.head(repos.deployed)
    (repos.deployed / "app.py").write_text("local work\n")
    repos.commit("app.py", "upstream\n", push=False)
    sha = repos.commit_submodule("bumped too\n")
    result = Checkout(Config(repo_path=str(repos.deployed))).deploy("main", [push(sha, before)])
    assert not result.ok and result.head_after == before
    assert (repos.deployed / "app.py").read_text() == "local work\n"
    assert git(repos.deployed / "posts", "rev-parse", "HEAD") == git(
        repos.deployed, "rev-parse", "HEAD:posts")


def test_the_helper_is_used_only_for_the_thin_wrapper(tmp_path: Path) -> None:
    wrapper = tmp_path / "git-submodule"
    wrapper.write_text('#!/bin/sh\nGIT_PROTOCOL_FROM_USER=0\nexport GIT_PROTOCOL_FROM_USER\n'
                       'cmd_update()\n{\n\tgit ${wt_prefix:+-C "$wt_prefix"} '
                       'submodule--helper update \\\n\t\t"$@"\n}\n')
    assert submodules.thin_wrapper(wrapper)
    for text in ("#!/bin/sh\ncmd_update()\n{\n\tgit submodule--helper update-clone\n}\n",
                 wrapper.read_text().replace("GIT_PROTOCOL_FROM_USER=0", "")):
        wrapper.write_text(text)
        assert not submodules.thin_wrapper(wrapper)
    assert not submodules.thin_wrapper(tmp_path / "no-such-script")
    (tmp_path / "binary").write_bytes(b"\x7fELF" + b"\0" * 64)
    assert not submodules.thin_wrapper(tmp_path / "binary")


def test_the_installed_submodule_update_command_works(repos: Repos) -> None:
    """Whichever command this git gets (the helper or ``git submodule update``), it
    updates a submodule with the environment it needs."""
    co = Checkout(Config(repo_path=str(repos.deployed)))
    command, env = submodules.update_command(co._git)
    assert command in (submodules.HELPER, submodules.PUBLIC)
    if command == submodules.HELPER:
        assert env == {"GIT_PROTOCOL_FROM_USER": "0"}
    sub = repos.pusher / "posts"
    git(sub, "pull", "-q", "origin", "main")
    (sub / "index.rst").write_text("direct\n")
    git(sub, "commit", "-q", "-am", "direct")
    git(sub, "push", "-q", "origin", "HEAD:main")
    git(repos.deployed / "posts", "fetch", "-q")
    git(repos.deployed / "posts", "checkout", "-q", "origin/main")
    git(repos.deployed / "posts", "checkout", "-q", "HEAD~1")
    status, _, err = co._git(*command, "--init", "--recursive", env=env)
    assert status == 0, err
    assert git(repos.deployed / "posts", "rev-parse", "HEAD") == git(
        repos.deployed, "rev-parse", "HEAD:posts")


# -- git maintenance after the answer --------------------------------------------------

def test_maintenance_runs_after_the_deploy_not_during_it(repos: Repos) -> None:
    """The deploy's fetch and merge run no maintenance; :meth:`housekeep` then runs it
    as they would have, in the checkout and in its submodule."""
    for repo in (repos.deployed, repos.deployed / "posts"):
        eager_maintenance(repo)
    before = Repos.head(repos.deployed)
    sha = repos.commit_submodule("maintained\n")
    co = Checkout(Config(repo_path=str(repos.deployed)))
    result = co.deploy("main", [push(sha, before)])
    assert result.ok and co.maintenance_due
    dirs = list(git_dirs(repos.deployed / ".git"))
    assert len(dirs) == 2
    assert not any(commit_graph(d) for d in dirs)
    co.housekeep()
    assert not co.maintenance_due
    assert all(commit_graph(d) for d in dirs)
    assert git(repos.deployed, "fsck", "--no-progress") == ""


def test_maintenance_respects_maintenance_auto_false(repos: Repos) -> None:
    eager_maintenance(repos.deployed)
    git(repos.deployed, "config", "maintenance.auto", "false")
    before = Repos.head(repos.deployed)
    sha = repos.commit()
    co = Checkout(Config(repo_path=str(repos.deployed)))
    assert co.deploy("main", [push(sha, before)]).ok
    co.housekeep()
    assert not co.maintenance_due and not commit_graph(repos.deployed / ".git")


def test_maintenance_waits_for_no_one(repos: Repos) -> None:
    """While another deploy holds the checkout's lock, maintenance stays due."""
    import fcntl

    before = Repos.head(repos.deployed)
    sha = repos.commit()
    co = Checkout(Config(repo_path=str(repos.deployed)))
    assert co.deploy("main", [push(sha, before)]).ok
    with open(repos.deployed / ".git" / "deployhook.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        co.housekeep()
        assert co.maintenance_due
    co.housekeep()
    assert not co.maintenance_due


def test_git_dirs_finds_nested_submodules_and_skips_objects(tmp_path: Path) -> None:
    git_dir = tmp_path / ".git"
    for folder in ("objects/pack", "modules/a/objects/12", "modules/a/modules/b/objects",
                   "modules/x/y/objects", "modules/a/logs/refs", "modules/a/worktrees/w"):
        (git_dir / folder).mkdir(parents=True)
    for head in ("modules/a/HEAD", "modules/a/modules/b/HEAD", "modules/x/y/HEAD",
                 "modules/a/logs/HEAD", "modules/a/worktrees/w/HEAD",
                 "modules/a/objects/12/HEAD"):
        (git_dir / head).write_text("ref: refs/heads/main\n")
    found = sorted(str(p.relative_to(git_dir)) for p in git_dirs(git_dir))
    assert found == [".", "modules/a", "modules/a/modules/b", "modules/x/y"]
