"""HEAD of a checkout read straight from its ``.git`` files: no git process, no lock.

Cheap enough to poll, so the daemon notices a checkout moved under it (by
``deployhook deploy``, a person, another tool).  Still file I/O: call it off the IOLoop.
"""

from __future__ import annotations

from pathlib import Path

MAX_DEPTH = 5  # symbolic refs pointing at symbolic refs


def read_head(repo_path: str) -> str | None:
    """The commit SHA HEAD names in the checkout at ``repo_path``, or None when there is
    no checkout, HEAD names a branch without commits, or the files cannot be read."""
    return read_ref(repo_path, "HEAD")


def read_ref(repo_path: str, name: str) -> str | None:
    """The SHA ``name`` (``HEAD`` or a full ref such as ``refs/remotes/origin/main``)
    points to in the checkout at ``repo_path``, following symbolic refs; None when there
    is no checkout, no such ref, or the files cannot be read."""
    try:
        gitdir = _gitdir(Path(repo_path))
        if gitdir is None:
            return None
        common = _common_dir(gitdir)
        value = f"ref: {name}"
        for _ in range(MAX_DEPTH + 1):
            if not value.startswith("ref:"):
                return value or None
            value = _resolve_ref(gitdir, common, value[4:].strip())
            if value is None:
                return None
    except (OSError, UnicodeDecodeError):
        return None
    return None


def current_branch(repo_path: str) -> str | None:
    """The branch HEAD is on (``main`` for ``refs/heads/main``), or None when HEAD is
    detached, there is no checkout, or its files cannot be read."""
    try:
        gitdir = _gitdir(Path(repo_path))
        value = (gitdir / "HEAD").read_text().strip() if gitdir is not None else ""
    except (OSError, UnicodeDecodeError):
        return None
    if not value.startswith("ref:"):
        return None
    ref = value[4:].strip()
    parts = ref.split("/")
    return "/".join(parts[2:]) if len(parts) > 2 else ref


def _gitdir(root: Path) -> Path | None:
    dotgit = root / ".git"
    if dotgit.is_dir():
        return dotgit
    if dotgit.is_file():  # "gitdir: <path>" (submodules, worktrees)
        text = dotgit.read_text().strip()
        if text.startswith("gitdir:"):
            path = Path(text[7:].strip())
            return path if path.is_absolute() else (root / path).resolve()
    return None


def _common_dir(gitdir: Path) -> Path:
    try:
        text = (gitdir / "commondir").read_text().strip()
    except FileNotFoundError:
        return gitdir
    path = Path(text)
    return path if path.is_absolute() else (gitdir / path).resolve()


def _resolve_ref(gitdir: Path, common: Path, ref: str) -> str | None:
    """The value of ``ref`` (loose file first, then packed-refs), or None."""
    for base in dict.fromkeys((gitdir, common)):
        try:
            return (base / ref).read_text().strip()
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            continue
    try:
        packed = (common / "packed-refs").read_text()
    except FileNotFoundError:
        return None
    for line in packed.splitlines():
        sha, _, name = line.partition(" ")
        if name == ref and not line.startswith(("#", "^")):
            return sha
    return None
