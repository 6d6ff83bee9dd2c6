"""HEAD, refs and the branch read from ``.git`` files agree with git itself, in every
layout a checkout can have: loose and packed refs, a detached HEAD, an unborn branch,
a branch name with slashes, a linked worktree and a submodule (``.git`` files)."""

from __future__ import annotations

from pathlib import Path

from deployhook.git.checkout import Checkout
from deployhook.git.headref import current_branch, read_head, read_ref
from deployhook.settings import Config
from tests.helpers import Repos, git


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
    checkout = Checkout(Config(repo_path=str(deployed)))
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
