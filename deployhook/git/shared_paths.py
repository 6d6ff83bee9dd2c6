"""``shared_paths`` in releases mode (see :mod:`deployhook.git.releases`): each a symlink
in the release to ``releases_path/shared/<path>``, made without following a symlink out
of the release or ``shared/`` (a release's tree is pushed content).

Blocking: run it in the git executor or the CLI's main thread.
"""

from __future__ import annotations

import errno
import os
import shutil
import stat
from collections.abc import Sequence
from pathlib import Path, PurePosixPath

from deployhook.git.checkout import DeployFailed
from deployhook.git.steps import Step

SHARED = "shared"


def link(base: Path, shared_paths: Sequence[str], path: Path, steps: list[Step]) -> None:
    """Link each of ``shared_paths`` in the release at ``path`` to ``shared/<path>`` under
    ``base`` (``releases_path``); step "shared" when there are any.  A shared path
    that does not exist yet is seeded from the release's copy (moved there), or made an
    empty folder.

    Nothing is followed out of the release or ``shared/``: every shared path is checked
    first (:func:`symlink_in`), then changed through folders opened without following
    a symlink (:func:`_open_folder`).

    Raises:
        DeployFailed: a component of a shared path, in the release (the pushed tree) or
            under ``shared/``, is a symlink or not a folder where the path goes on (the
            reason names it; nothing was deleted or moved), or a link failed.
    """
    for item in shared_paths:
        parts = PurePosixPath(item).parts
        problem = (symlink_in(path, parts, "in the pushed tree")
                   or symlink_in(base, (SHARED, *parts), f"in {base}"))
        if problem:
            raise DeployFailed(f"shared path {item}: {problem}; shared_paths must be real "
                               "folders or files", steps)
    for item in shared_paths:
        try:
            _link_one(base, path, PurePosixPath(item).parts)
        except OSError as exc:
            raise DeployFailed(f"shared path {item}: cannot link it: {exc}", steps) from exc
    if shared_paths:
        steps.append(Step("shared", "link shared_paths", 0, 0.0,
                          ", ".join(shared_paths)))


def symlink_in(base: Path, parts: tuple[str, ...], where: str) -> str:
    """Why ``base/<parts>`` cannot be used without following a symlink: the first of its
    components (from the top) that is a symlink, or not a folder while the path goes
    on, as "public is a symlink {where}"; "" when none is (missing ones are made)."""
    for depth in range(1, len(parts) + 1):
        shown = "/".join(parts[:depth])
        try:
            mode = os.lstat(base.joinpath(*parts[:depth])).st_mode
        except FileNotFoundError:
            return ""
        if stat.S_ISLNK(mode):
            return f"{shown} is a symlink {where}"
        if depth < len(parts) and not stat.S_ISDIR(mode):
            return f"{shown} is not a folder {where}"
    return ""


def _link_one(base: Path, release: Path, parts: tuple[str, ...]) -> None:
    """Replace ``release/<parts>`` with a symlink to ``base/shared/<parts>``, seeding
    that from the release's copy (or an empty folder) when missing.  Every operation is
    relative to a folder opened without following a symlink.

    Raises:
        OSError: a component is a symlink or no folder (ELOOP, ENOTDIR), or the file
            system refused.
    """
    name = parts[-1]
    inside = _open_folder(release, parts[:-1])
    try:
        shared = _open_folder(base, (SHARED, *parts[:-1]))
        try:
            if not _entry(shared, name):
                if _entry(inside, name):
                    _move(inside, shared, name, release.joinpath(*parts),
                          base.joinpath(SHARED, *parts))
                else:
                    os.mkdir(name, dir_fd=shared)
            found = _entry(inside, name)
            if found and stat.S_ISDIR(found.st_mode):
                shutil.rmtree(name, dir_fd=inside)
            elif found:
                os.unlink(name, dir_fd=inside)
            os.symlink(os.path.realpath(base.joinpath(SHARED, *parts)), name, dir_fd=inside)
        finally:
            os.close(shared)
    finally:
        os.close(inside)


def _open_folder(base: Path, parts: tuple[str, ...]) -> int:
    """A file descriptor of the folder ``base/<parts>``, each of ``parts`` made when
    missing and opened without following a symlink (``base`` itself is trusted).

    Raises:
        OSError: ELOOP for a symlink, ENOTDIR for a file among ``parts``.
    """
    flags = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC
    fd = os.open(base, flags)
    try:
        for part in parts:
            try:
                os.mkdir(part, dir_fd=fd)
            except FileExistsError:
                pass
            child = os.open(part, flags | os.O_NOFOLLOW, dir_fd=fd)
            os.close(fd)
            fd = child
    except BaseException:
        os.close(fd)
        raise
    return fd


def _entry(folder: int, name: str) -> os.stat_result | None:
    """The lstat of ``name`` in ``folder`` (a descriptor), or None when missing."""
    try:
        return os.stat(name, dir_fd=folder, follow_symlinks=False)
    except FileNotFoundError:
        return None


def _move(source: int, target: int, name: str, source_path: Path, target_path: Path) -> None:
    """Move ``name`` from folder ``source`` to folder ``target`` (descriptors); across
    file systems by its (checked) paths, as :func:`shutil.move` copies it."""
    try:
        os.rename(name, name, src_dir_fd=source, dst_dir_fd=target)
    except OSError as exc:
        if exc.errno != errno.EXDEV:
            raise
        shutil.move(source_path, target_path)
