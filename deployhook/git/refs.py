"""HEAD, refs and the branch of a checkout, read with GitPython's reference layer.

GitPython reads loose refs and ``packed-refs`` from the ``.git`` files itself (a
submodule's or linked work tree's ``.git`` file and ``commondir`` included): no git
process, no lock.  Nothing here touches GitPython's object database, whose persistent
``git cat-file`` processes would outlive the read.  Cheap enough to poll, so the daemon
notices a checkout moved under it (by ``deployhook deploy``, a person, another tool);
still file I/O: call it off the IOLoop.
"""

from __future__ import annotations

import os
import re
import threading

import git
from git.refs.symbolic import SymbolicReference

KEPT = 1024  # Repo objects :func:`read_head` keeps (one per polled path)
# What GitPython raises for a missing, unreadable or malformed ref or checkout.
_UNREADABLE = (ValueError, TypeError, OSError, UnicodeDecodeError, git.exc.GitError)
_kept: dict[str, git.Repo] = {}
_PLAIN_REF = re.compile(r"HEAD|refs/[A-Za-z0-9._/-]+")
_HEX_SHA = re.compile(rb"[0-9a-f]{40}|[0-9a-f]{64}")
_lock = threading.Lock()


def open_repo(path: str) -> git.Repo | None:
    """GitPython's ``Repo`` of the checkout at ``path`` (no process started), or None
    when there is no checkout there.  Close it (``repo.close()``) when done."""
    try:
        return git.Repo(path)
    except _UNREADABLE:
        return None


def read_ref(repo: git.Repo, name: str) -> str | None:
    """The SHA ``name`` (``HEAD`` or a full ref such as ``refs/remotes/origin/main``)
    points to, following symbolic refs; None when there is no such ref (an unborn
    branch included) or its files cannot be read.

    The usual case (HEAD naming a branch whose loose ref file holds a SHA) is read
    straight from those files; anything else (a packed ref, a symbolic link, a name
    out of the ordinary) by GitPython's reference layer, which validates each path with
    ``realpath`` (a system call per path component: with a thousand checkouts polled
    that was most of the daemon's CPU while idle)."""
    sha = _loose_ref(repo, name)
    if sha is not None:
        return sha
    try:
        return SymbolicReference.dereference_recursive(repo, name)
    except _UNREADABLE:
        return None


def _loose_ref(repo: git.Repo, name: str) -> str | None:
    """``name`` followed through loose ref files (at most five, as git does) to a SHA;
    None whenever GitPython has to decide (a missing or packed ref, a symbolic link, a
    name other than ``HEAD`` or a plain ``refs/...`` one, anything unexpected)."""
    for _ in range(5):
        if not _PLAIN_REF.fullmatch(name) or ".." in name or "//" in name \
                or name.endswith((".lock", "/", ".")):
            return None
        base = repo.git_dir if name == "HEAD" else repo.common_dir  # as GitPython's
        try:
            fd = os.open(os.path.join(base, name), os.O_RDONLY | os.O_NOFOLLOW)
        except OSError:
            return None
        try:
            tokens = os.read(fd, 4096).split()
        except OSError:
            return None
        finally:
            os.close(fd)
        if len(tokens) >= 2 and tokens[0] == b"ref:":
            name = tokens[1].decode("ascii", "replace")
            continue
        if tokens and _HEX_SHA.fullmatch(tokens[0]):
            return tokens[0].decode("ascii")
        return None
    return None


def current_branch(repo: git.Repo) -> str | None:
    """The branch HEAD is on (``main`` for ``refs/heads/main``, an unborn one too), or
    None when HEAD is detached or its file cannot be read."""
    try:
        ref = repo.head.ref  # TypeError: HEAD is detached
    except _UNREADABLE:
        return None
    return ref.name


def read_head(path: str) -> str | None:
    """HEAD's commit SHA of the checkout at ``path``, or None when there is no checkout,
    HEAD names a branch without commits, or the files cannot be read.

    Keeps one ``Repo`` per path (it holds paths only: no file, no process), so polling
    many checkouts costs each a few file reads; a path that stops reading is opened
    afresh next time (the checkout was removed or cloned again meanwhile)."""
    with _lock:
        repo = _kept.get(path)
    if repo is None:
        repo = open_repo(path)
        if repo is None:
            return None
        with _lock:
            if len(_kept) >= KEPT:
                _kept.clear()
            _kept[path] = repo
    sha = read_ref(repo, "HEAD")
    if sha is None:
        with _lock:
            _kept.pop(path, None)
    return sha
