"""Repair what a crashed git (or a killed deploy) left behind in a checkout.

A git process killed mid-command leaves its ``*.lock`` files, and every later
git command then fails.  A lock is removed only when no process holds it open
(git keeps a lock file open while it works).  When a stale ``index.lock`` shows
that an update was cut short, the files it had already written (those equal to
the commit being deployed) are put back as they were, so the next update runs
cleanly; files that match neither side are local work and are left alone.  A
merge or rebase left in progress is aborted.
Blocking: call from the git worker's executor.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

Git = Callable[..., tuple[int, str, str]]
OWN_LOCK = "deployhook.lock"  # our flock file: always there, never stale


@dataclass
class Repair:
    """What :func:`repair` found and did."""

    removed: list[str] = field(default_factory=list)
    held: list[tuple[str, int]] = field(default_factory=list)
    restored: list[str] = field(default_factory=list)
    aborted: list[str] = field(default_factory=list)

    def report(self) -> str:
        parts = []
        if self.removed:
            parts.append("removed stale lock files left by a crashed git: "
                         + ", ".join(self.removed))
        if self.restored:
            parts.append("put back files a cut-short update had written: "
                         + ", ".join(self.restored))
        if self.aborted:
            parts.append("aborted a " + " and a ".join(self.aborted) + " left in progress")
        return "; ".join(parts)


def git_dirs(git_dir: Path) -> Iterator[Path]:
    """The checkout's git dir and its submodules' (``.git/modules/...``)."""
    yield git_dir
    modules = git_dir / "modules"
    if modules.is_dir():
        for head in modules.rglob("HEAD"):
            if head.parent.name != "logs" and (head.parent / "objects").is_dir():
                yield head.parent


def find_locks(git_dir: Path) -> list[Path]:
    """Git lock files in the git dir and its submodules' (top level and refs/)."""
    locks: list[Path] = []
    for directory in git_dirs(git_dir):
        locks += [p for p in directory.glob("*.lock") if p.name != OWN_LOCK]
        refs = directory / "refs"
        if refs.is_dir():
            locks += refs.rglob("*.lock")
    return sorted(locks)


def holders(path: Path) -> list[int]:
    """PIDs of processes that have ``path`` open (from /proc; those we may read)."""
    target = os.path.realpath(path)  # /proc shows resolved paths
    pids = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            fds = list((proc / "fd").iterdir())
        except OSError:
            continue
        for fd in fds:
            try:
                if os.readlink(fd) == target:
                    pids.append(int(proc.name))
                    break
            except OSError:
                continue
    return pids


def repair(work_tree: Path, git: Git, target: str | None) -> Repair:
    """Remove stale locks; after a cut-short update, put back what it wrote.

    ``target`` is the commit the cut-short update was moving to (the remote
    tracking ref), or None when unknown.  Held locks are reported, not touched.
    """
    result = Repair()
    cut_short = False
    for lock in find_locks(work_tree / ".git"):
        pids = holders(lock)
        if pids:
            result.held.append((str(lock.relative_to(work_tree)), pids[0]))
            continue
        lock.unlink(missing_ok=True)
        result.removed.append(str(lock.relative_to(work_tree)))
        cut_short = cut_short or lock.name == "index.lock"
    if result.held:
        return result
    if cut_short and target:
        result.restored = _undo_partial_update(git, target)
    git_dir = work_tree / ".git"
    if (git_dir / "MERGE_HEAD").exists():
        git("merge", "--abort")
        result.aborted.append("merge")
    if (git_dir / "rebase-merge").exists() or (git_dir / "rebase-apply").exists():
        git("rebase", "--abort")
        result.aborted.append("rebase")
    return result


def _undo_partial_update(git: Git, target: str) -> list[str]:
    """Restore tracked files equal to ``target``'s version; delete untracked ones that are."""
    restored = []
    _, changed, _ = git("diff", "--name-only", "-z", "HEAD")
    for path in filter(None, changed.split("\0")):
        if _same_as(git, target, path):
            git("checkout", "HEAD", "--", path)
            restored.append(path)
    _, untracked, _ = git("ls-files", "--others", "--exclude-standard", "-z")
    for path in filter(None, untracked.split("\0")):
        if _same_as(git, target, path):
            git("clean", "-f", "-q", "--", path)
            restored.append(path)
    return restored


def _same_as(git: Git, commit: str, path: str) -> bool:
    """True when the work tree's ``path`` is exactly ``commit``'s version, or both lack it."""
    in_commit, blob, _ = git("rev-parse", "--verify", "--quiet", f"{commit}:{path}")
    in_tree, worktree_blob, _ = git("hash-object", "--", path)
    if in_commit != 0:
        return in_tree != 0  # deleted by the update, and gone here too
    return in_tree == 0 and blob.strip() == worktree_blob.strip()
