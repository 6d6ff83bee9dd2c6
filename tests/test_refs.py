"""HEAD, refs and the branch read by GitPython's reference layer (``deployhook.git.refs``)
agree with git itself, in every layout a checkout can have: loose and packed refs, a
detached HEAD, an unborn branch, a branch name with slashes, a linked worktree and a
submodule (``.git`` files); and polling them starts no process and keeps no file."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from deployhook.git import refs
from deployhook.git.checkout import Checkout
from deployhook.git.refs import read_head
from deployhook.settings import Config
from tests.helpers import Repos, git


def read_ref(path: str, name: str) -> str | None:
    repo = refs.open_repo(path)
    return None if repo is None else refs.read_ref(repo, name)


def current_branch(path: str) -> str | None:
    repo = refs.open_repo(path)
    return None if repo is None else refs.current_branch(repo)


def _git_ref(repo: Path, name: str) -> str | None:
    out = git(repo, "rev-parse", "--verify", "--quiet", name, check=False).strip()
    return out or None


def _git_branch(repo: Path) -> str | None:
    out = git(repo, "symbolic-ref", "--quiet", "--short", "HEAD", check=False).strip()
    return out or None


def _agrees(repo: Path, *refs: str) -> None:
    assert read_head(str(repo)) == _git_ref(repo, "HEAD")
    assert current_branch(str(repo)) == _git_branch(repo)
    for ref in refs:
        assert read_ref(str(repo), ref) == _git_ref(repo, ref), ref


def test_loose_then_packed_refs(repos: Repos) -> None:
    deployed = repos.deployed
    _agrees(deployed, "refs/heads/main", "refs/remotes/origin/main")
    git(deployed, "pack-refs", "--all", "--prune")
    assert not (deployed / ".git" / "refs" / "heads" / "main").exists()
    _agrees(deployed, "refs/heads/main", "refs/remotes/origin/main")
    checkout = Checkout(Config(repo_path=str(deployed)).targets[0])
    assert checkout.current_branch() == "main"
    assert checkout.ref("refs/heads/main") == checkout.head() == _git_ref(deployed, "HEAD")


def test_detached_head_and_a_branch_with_slashes(repos: Repos) -> None:
    deployed = repos.deployed
    git(deployed, "checkout", "-q", "--detach")
    _agrees(deployed)
    assert current_branch(str(deployed)) is None
    git(deployed, "checkout", "-q", "-b", "feature/x/y")
    _agrees(deployed, "refs/heads/feature/x/y")
    assert current_branch(str(deployed)) == "feature/x/y"


def test_unborn_branch_missing_ref_and_no_checkout(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    git(tmp_path, "init", "-q", "-b", "main", str(empty))
    assert read_head(str(empty)) is None
    assert current_branch(str(empty)) == "main"
    assert read_ref(str(empty), "refs/heads/nothing") is None
    assert read_head(str(tmp_path / "absent")) is None
    assert current_branch(str(tmp_path / "absent")) is None


def test_linked_worktree_and_submodule(repos: Repos, tmp_path: Path) -> None:
    worktree = tmp_path / "linked"
    git(repos.deployed, "worktree", "add", "-q", "-b", "linked", str(worktree))
    assert (worktree / ".git").is_file()
    _agrees(worktree, "refs/heads/linked", "refs/heads/main", "refs/remotes/origin/main")
    submodule = repos.deployed / "posts"
    assert (submodule / ".git").is_file()
    _agrees(submodule)


def _children() -> list[str]:
    """The PIDs of this process's children (all threads')."""
    tasks = f"/proc/{os.getpid()}/task"
    return sorted(pid for task in os.listdir(tasks)
                  for pid in open(f"{tasks}/{task}/children").read().split())


def test_polling_heads_starts_no_process_and_keeps_no_file(repos: Repos) -> None:
    """What the hub does four times a second: many reads, no git process, no open file,
    the moves of HEAD seen as they happen."""
    path = str(repos.deployed)
    fds, children = sorted(os.listdir("/proc/self/fd")), _children()
    first = read_head(path)
    for _ in range(300):
        assert read_head(path) == first
    git(repos.deployed, "commit", "-q", "--allow-empty", "-m", "moved under the daemon")
    assert read_head(path) == Repos.head(repos.deployed) != first
    assert sorted(os.listdir("/proc/self/fd")) == fds and _children() == children


def test_a_checkout_removed_and_cloned_again_is_read_afresh(repos: Repos) -> None:
    path = str(repos.deployed)
    assert read_head(path) == Repos.head(repos.deployed)
    shutil.rmtree(repos.deployed)
    assert read_head(path) is None
    git(repos.origin.parent, "clone", "-q", str(repos.origin), path)
    assert read_head(path) == Repos.head(repos.deployed)
