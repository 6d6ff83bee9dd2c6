"""Repair what a crashed git (or a killed deploy) left behind in a checkout.

A git process killed mid-command leaves its ``*.lock`` files, and every later
git command then fails.  A lock is removed only when no process holds it open
(git keeps a lock file open while it works).  When a stale ``index.lock`` shows
that an update was cut short, the files it had already written (those equal to
the commit being deployed) are put back as they were, so the next update runs
cleanly; files that match neither side are local work and are left alone.  A
merge or rebase left in progress is aborted.  None of this runs the checkout's
hooks.
Blocking: call from the git worker's executor.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

Git = Callable[..., tuple[int, str, str]]
OWN_LOCK = "deployhook.lock"  # our flock file: always there, never stale
# Undoing never runs the checkout's hooks: the hook that made an update fail (or hang)
# must not stop its undo.
NO_HOOKS = ("-c", "core.hooksPath=/dev/null")


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
    for root, folders, files in os.walk(git_dir / "modules"):
        if "HEAD" in files and "objects" in folders:  # a submodule's git dir
            yield Path(root)
            folders[:] = ["modules"] if "modules" in folders else []  # never its objects


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
        result.restored = undo_partial_update(work_tree, git, target)
    git_dir = work_tree / ".git"
    if (git_dir / "MERGE_HEAD").exists():
        git(*NO_HOOKS, "merge", "--abort")
        result.aborted.append("merge")
    if (git_dir / "rebase-merge").exists() or (git_dir / "rebase-apply").exists():
        git(*NO_HOOKS, "rebase", "--abort")
        result.aborted.append("rebase")
    return result


def undo_partial_update(work_tree: Path, git: Git, target: str,
                        clean: set[str] | None = None) -> list[str]:
    """Put back, as in HEAD, the paths a cut-short update to ``target`` wrote.

    With ``clean`` (the changed paths that had no local change before the update),
    every one of those that differs from HEAD now is put back, partly written files
    included.  Without it, only paths whose content is exactly ``target``'s; paths
    that match neither side are then taken for local work and left alone.
    Returns the paths put back.
    """
    changed = paths_of(git, "diff", "--name-only", "-z", "--no-renames", "HEAD", target)
    if not changed:
        return []
    wanted, in_head = _blobs(git, target, changed), _blobs(git, "HEAD", changed)
    written = []
    for path in changed:
        full = work_tree / path
        if full.is_dir() and not full.is_symlink():
            continue  # a submodule or folder: git's own business
        now = _blob_id(full, len(target))
        if now == wanted.get(path) or (clean is not None and path in clean
                                       and now != in_head.get(path)):
            written.append(path)
    if not written:
        return []
    back = [p for p in written if p in in_head]
    for start in range(0, len(back), 200):
        git(*NO_HOOKS, "checkout", "HEAD", "--",
            *[f":(literal){p}" for p in back[start:start + 200]])
    for path in written:
        if path not in in_head:
            (work_tree / path).unlink(missing_ok=True)
    return written


def paths_of(git: Git, *args: str) -> list[str]:
    """The NUL-separated paths a git command prints with ``-z``."""
    return [p for p in git(*args)[1].split("\0") if p]


def only(paths: list[str]) -> list[str]:
    """Pathspec arguments limiting a git command to exactly ``paths`` (none past 500
    paths, to stay far from the command-line limit: the caller then filters)."""
    return ["--", *[f":(literal){p}" for p in paths]] if len(paths) <= 500 else []


def _blobs(git: Git, commit: str, paths: list[str]) -> dict[str, str]:
    """path -> blob id in ``commit`` for those of ``paths`` it has."""
    blobs = {}
    for entry in paths_of(git, "ls-tree", "-r", "-z", "--full-tree", commit, *only(paths)):
        meta, _, path = entry.partition("\t")
        blobs[path] = meta.split()[2]
    return blobs


def _blob_id(path: Path, hex_length: int) -> str | None:
    """The git blob id of a work-tree file or symlink (as ``git hash-object`` without
    filters), or None when it does not exist."""
    try:
        data = os.readlink(path).encode() if path.is_symlink() else path.read_bytes()
    except OSError:
        return None
    digest = hashlib.sha256 if hex_length == 64 else hashlib.sha1
    return digest(b"blob %d\0" % len(data) + data).hexdigest()
