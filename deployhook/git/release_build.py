"""Building a release's repositories (``deploy_mode = "releases"``, see
:mod:`deployhook.git.releases`) from the object store, without a clone or a fetch.

Each repository of a release (the superproject, and each submodule the store has
checked out, recursively) is a git dir written from the empty repository ``git init``
made once (``releases_path/.skeleton-<object format>/.git``, read into memory once per
process and read again when it changes), with the store's (or the store's submodule's)
objects as its alternate, as ``clone --shared`` does, and its tags; then one ``git
checkout``.  The superproject's checkout runs in a thread of its own while the
submodules the store has checked out are checked out beside it (two processes at once),
each in a folder under the release's ``.git`` that is moved into the empty folder the
superproject's checkout leaves for it, once that shows it is a submodule of the
deployed commit.  The configs (origin, ``submodule.<name>.url``, ``core.worktree``) are
written by GitPython's config writer the first time, then as the same bytes.

The git dirs of the next release are made after the answer (:func:`prepare`:
``releases_path/.spare-<object format>``), so that a release renames them into place and
creates almost no file or folder before its checkouts: on a busy disk each costs
milliseconds.  What may have changed since (the alternates, the tags, the submodules the
store has) is checked and written again when it differs.

Everything here blocks: run it in the git executor or the CLI's main thread.
"""

from __future__ import annotations

import configparser
import io
import os
import shutil
import stat
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import TypeVar

import git

from deployhook.git import refs
from deployhook.git.checkout import Checkout, DeployFailed
from deployhook.git.shared_paths import symlink_in
from deployhook.git.steps import Step, tail

SKELETON = ".skeleton"  # + "-<object format>": the empty repository a release copies
SPARE = ".spare"  # + "-<object format>": the git dirs of the next release, made beforehand
STAGED = "deployhook-staged-"  # + <n>, in a release's .git: a submodule checked out beside
Setting = tuple[str, str, str]  # (section, option, value) of a git config
_KEPT = 64  # configs (and .gitmodules) kept in memory, each whole
_configs: dict[tuple[bytes, tuple[Setting, ...]], bytes] = {}
_SMALL = 64 * 1024  # a .gitmodules kept parsed is at most this big
_named: dict[bytes, tuple[str, ...]] = {}  # a .gitmodules' bytes -> the paths it names
_skeletons: dict[Path, tuple[tuple[int, int, int, int], _Skeleton]] = {}
T = TypeVar("T")


@dataclass(frozen=True)
class _Skeleton:
    """The git dir of an empty repository, read once: its folders (parents first) and
    its files, the config apart."""

    folders: tuple[str, ...]
    files: tuple[tuple[str, bytes], ...]
    config: bytes


class _Source:
    """A repository a release is made from (the store or one of its submodules), with
    its own config read once (GitPython's reader: no process)."""

    def __init__(self, repo: git.Repo) -> None:
        self.repo = repo
        self.settings = repo.config_reader("repository")

    def value(self, section: str, option: str) -> str | None:
        """One value of the repository's own config, or None."""
        try:
            value = self.settings.get_value(section, option, None)
        except (OSError, configparser.Error, ValueError):
            return None
        return None if value is None else str(value)


@dataclass
class _Module:
    """A submodule the store has checked out: its path (in the repository above), its
    name (its git dir under ``modules/``), its commit, the store's repository of it."""

    path: str
    name: str
    head: str
    source: _Source


@dataclass
class _Staged:
    """A submodule checked out beside the superproject's checkout: its work tree waits
    in ``tree`` (under the release's ``.git``) for the superproject's empty folder;
    ``failure`` is why its checkout failed, raised only if the release has it."""

    module: _Module
    git_dir: Path
    tree: Path
    failure: DeployFailed | None


def build(store: Checkout, base: Path, path: Path, sha: str, submodules: bool,
          steps: list[Step]) -> None:
    """Make the release of ``sha`` at ``path`` (``base`` is ``releases_path``) from the
    store: a repository of its own borrowing the store's objects, its ``origin`` the
    store's remote URL (relative submodule URLs resolve as in the store), with (when
    ``submodules``) the submodules the store has checked out, each at the commit the
    store's is at (what an in-place deploy serves), configured as ``git submodule``
    leaves them.  The spare git dirs (:func:`prepare`) are used when there are some.
    Steps: "release init" (the first time), "release checkout", each "submodule
    checkout", then "release submodules" (their paths and commits) when the commit has
    a ``.gitmodules``.

    Raises:
        DeployFailed: a git command failed (its step says why), or a git dir cannot be
            made.
    """
    source = _Source(store.repo)
    form = _format(source)
    skeleton = _skeleton(store, base, form, steps)
    git_dir = path / ".git"
    spare = _take_spare(base / f"{SPARE}-{form}", path)
    _repository(skeleton, source, git_dir, "release", steps)
    start, made, shown, done = time.monotonic(), [], [], None
    modules: list[_Module] = []

    def stage() -> dict[str, _Staged]:
        modules.extend(_checked_out(source))
        return {m.path: _stage(store, skeleton, m, path, i, made) for i, m in enumerate(modules)}

    try:
        staged: dict[str, _Staged] = {}
        if submodules and (Path(source.repo.working_tree_dir or "") / ".gitmodules").exists():
            staged = _beside(store, path, sha, steps, stage)
        else:
            _checkout(store, path, sha, "release", steps)
        settings = _remote(source.value(f'remote "{store.config.remote}"', "url"))
        if submodules and (path / ".gitmodules").exists():
            settings += _submodules(store, skeleton, source, path, git_dir, made, shown, "",
                                    staged)
            done = Step("release submodules", "from the store's submodules (alternates)", 0,
                        time.monotonic() - start, tail("\n".join(shown)))
        else:
            _discard(staged.values())
    except DeployFailed as exc:
        raise DeployFailed(exc.reason, steps) from exc
    finally:
        steps += made  # the failed step last: DeployFailed's reason is its summary
        for module in modules:
            module.source.repo.close()
    if done is not None:
        steps.append(done)
    _tidy(git_dir, spare)
    _configure(git_dir, skeleton.config, settings)


def prepare(store: Checkout, base: Path) -> None:
    """Make the git dirs of the store's next release beforehand (after the answer):
    ``base/.spare-<object format>``, a release folder holding only its ``.git`` (as
    :func:`build` writes it) with one git dir and staging folder per submodule the store
    has checked out.  Made in ``.spare-<format>.new``, renamed when whole; nothing is
    done when a spare is there.  Call it under the releases lock.

    Raises:
        DeployFailed: ``git init`` failed, or a git dir cannot be written.
        OSError: a folder cannot be made or renamed.
    """
    source = _Source(store.repo)
    form = _format(source)
    spare = base / f"{SPARE}-{form}"
    if (spare / ".git" / "HEAD").is_file():
        return
    skeleton, steps = _skeleton(store, base, form, []), []
    building = spare.with_name(spare.name + ".new")
    shutil.rmtree(building, ignore_errors=True)
    shutil.rmtree(spare, ignore_errors=True)  # one cut short
    os.mkdir(building)
    _repository(skeleton, source, building / ".git", "spare", steps)
    modules = _checked_out(source)
    try:
        for index, module in enumerate(modules):
            _staging(skeleton, module, building, index, steps)
    finally:
        for module in modules:
            module.source.repo.close()
    os.rename(building, spare)


def _take_spare(spare: Path, path: Path) -> set[str] | None:
    """Move the spare git dirs (:func:`prepare`) to ``path``, the release folder: the
    names of the submodule git dirs it holds (under ``.git/modules``), or None when
    there is no spare (or it cannot be moved: the release is made without it)."""
    try:
        os.rename(spare, path)
    except OSError:
        return None
    modules, names = path / ".git" / "modules", set()
    for top, folders, files in os.walk(modules):
        if "HEAD" in files:
            names.add(os.path.relpath(top, modules))
            folders.clear()
    return names


def _tidy(git_dir: Path, spare: set[str] | None) -> None:
    """Remove from the finished release's ``git_dir`` what the spare made that it did
    not use: staging folders, git dirs of submodules it does not have (never checked
    out: no index).  Only read when there is nothing to remove."""
    if spare is None:
        return
    with os.scandir(git_dir) as entries:
        left = [entry.path for entry in entries if entry.name.startswith(STAGED)]
    for folder in left:
        shutil.rmtree(folder, ignore_errors=True)
    for name in spare:
        if not (git_dir / "modules" / name / "index").exists():
            shutil.rmtree(git_dir / "modules" / name, ignore_errors=True)


def _beside(store: Checkout, path: Path, sha: str, steps: list[Step],
            work: Callable[[], T]) -> T:
    """Run ``work`` while the superproject's ``git checkout`` of ``sha`` runs in a thread
    of its own (step "release checkout", added to ``steps`` once both are done); what
    ``work`` returned.

    Raises:
        DeployFailed: the checkout failed.  What ``work`` raised (after the checkout).
    """
    own: list[Step] = []
    failed: list[BaseException] = []

    def checkout() -> None:
        try:
            _checkout(store, path, sha, "release", own)
        except BaseException as exc:  # raised in the caller's thread
            failed.append(exc)

    thread = threading.Thread(target=checkout, name="release checkout", daemon=True)
    thread.start()
    try:
        done = work()
    finally:
        thread.join()
        steps += own
    if failed:
        if isinstance(failed[0], DeployFailed):
            raise DeployFailed(failed[0].reason, steps)
        raise failed[0]
    return done


def _checkout(store: Checkout, work_tree: Path, sha: str, name: str, steps: list[Step],
              env: dict[str, str] | None = None) -> None:
    """``git checkout`` of ``sha`` (detached, no reflog: HEAD never moves there) in
    ``work_tree`` (step ``<name> checkout``).

    Raises:
        DeployFailed: it failed (its step says why).
    """
    store._step(f"{name} checkout", steps, "-c", "advice.detachedHead=false",
                "-c", "core.logAllRefUpdates=false", "checkout", "--quiet", "--detach",
                sha, "--", cwd=str(work_tree), env=env)


def _staging(skeleton: _Skeleton, module: _Module, release: Path, index: int,
             steps: list[Step]) -> tuple[Path, Path]:
    """The git dir of ``module`` in ``release`` (``.git/modules/<name>``) and the folder
    its work tree is checked out in beside the superproject's
    (``.git/deployhook-staged-<index>``, with the ``.git`` file it will have in place),
    made or brought up to date: (git dir, folder).

    Raises:
        DeployFailed: they cannot be made.
    """
    own, tree = release / ".git" / "modules" / module.name, release / ".git" / f"{STAGED}{index}"
    _repository(skeleton, module.source, own, "submodule", steps)
    try:
        tree.mkdir(exist_ok=True)
        _put(tree / ".git", _gitfile(own, release / module.path))
    except OSError as exc:
        raise DeployFailed(f"submodule {module.path}: cannot make {tree}: {exc}",
                           steps) from exc
    return own, tree


def _stage(store: Checkout, skeleton: _Skeleton, module: _Module, release: Path,
           index: int, steps: list[Step]) -> _Staged:
    """Check out ``module`` beside the superproject's checkout (:func:`_staging`) until
    :func:`_submodules` moves it into place.  A failed checkout is kept in the result,
    not raised (the release may not have the submodule).

    Raises:
        DeployFailed: its git dir cannot be made.
    """
    own, tree = _staging(skeleton, module, release, index, steps)
    try:
        _checkout(store, tree, module.head, "submodule", steps,
                  {"GIT_DIR": str(own), "GIT_WORK_TREE": str(tree)})
    except DeployFailed as exc:
        return _Staged(module, own, tree, exc)
    return _Staged(module, own, tree, None)


def _discard(staged: Iterable[_Staged]) -> None:
    """Remove what was staged for submodules the release does not have."""
    for left in staged:
        shutil.rmtree(left.tree, ignore_errors=True)
        shutil.rmtree(left.git_dir, ignore_errors=True)


def _submodules(store: Checkout, skeleton: _Skeleton, source: _Source, release: Path,
                git_dir: Path, steps: list[Step], shown: list[str], prefix: str = "",
                staged: dict[str, _Staged] | None = None) -> list[Setting]:
    """Give the release repository at ``release`` (its git dir ``git_dir``) the
    submodules that ``source`` (the store, or a submodule of it) has checked out,
    recursively: each a repository of its own under ``git_dir/modules/<name>``, at the
    commit the store's is at, configured as ``git submodule`` leaves it.  A submodule
    the store has not checked out (an inactive one, say) stays an empty folder, as in
    the store.  ``staged``: those already checked out beside (:func:`_stage`), moved
    into place here; the ones the release does not have are removed.  Each one made is
    added to ``shown`` ("<path> at <commit>", the path from the top).

    Returns the settings that initialise them in ``release`` (``submodule.<name>.url``).

    Raises:
        DeployFailed: a git command failed (its step says why).
    """
    settings: list[Setting] = []
    staged = dict(staged or {})
    try:
        for path in _gitlinks(release):
            ready = staged.pop(path, None)
            module = ready.module if ready else _module_at(source, path)
            if module is None:
                continue
            try:
                work_tree = release / path
                if ready:
                    own = _place(ready, work_tree, steps)
                else:
                    own = git_dir / "modules" / module.name
                    _repository(skeleton, module.source, own, "submodule", steps)
                    _link(own, work_tree, steps)
                    _checkout(store, work_tree, module.head, "submodule", steps)
                shown.append(f"{prefix}{path} at {module.head}")
                origin = module.source.value('remote "origin"', "url")
                mine = [("core", "worktree", os.path.relpath(work_tree, own)), *_remote(origin)]
                if (work_tree / ".gitmodules").exists():
                    mine += _submodules(store, skeleton, module.source, work_tree, own, steps,
                                        shown, f"{prefix}{path}/")
                _configure(own, skeleton.config, mine)
            finally:
                if not ready:
                    module.source.repo.close()
            url = source.value(f'submodule "{module.name}"', "url") or origin
            if url:  # initialised (a URL makes it active), as ``git submodule init`` does
                settings.append((f'submodule "{module.name}"', "url", url))
    finally:
        _discard(staged.values())
    return settings


def _place(staged: _Staged, work_tree: Path, steps: list[Step]) -> Path:
    """Move a staged submodule's work tree (its ``.git`` file in it) into the empty
    folder ``work_tree``; its git dir.

    Raises:
        DeployFailed: its checkout had failed, or the move failed.
    """
    if staged.failure is not None:
        raise DeployFailed(staged.failure.reason, steps)
    try:
        os.rmdir(work_tree)
        os.rename(staged.tree, work_tree)
    except OSError as exc:
        raise DeployFailed(f"submodule {work_tree}: cannot move it into place: {exc}",
                           steps) from exc
    return staged.git_dir


def _checked_out(source: _Source) -> list[_Module]:
    """The submodules ``source`` (the store) has checked out at its top level: those its
    ``.gitmodules`` names (:func:`_declared`) with a git dir and a HEAD there (their Repo
    open: close them)."""
    top = Path(source.repo.working_tree_dir or "")
    found = [_module_at(source, path) for path in _declared(top)]
    return [module for module in found if module is not None]


def _module_at(source: _Source, path: str) -> _Module | None:
    """The submodule of ``source`` checked out at ``path``, its Repo open (close it), or
    None (not checked out: no git dir, or no HEAD)."""
    here = Path(source.repo.working_tree_dir or "", path)
    if not (here / ".git").exists():
        return None
    repo = refs.open_repo(str(here))
    if repo is None:
        return None
    head = refs.read_ref(repo, "HEAD")
    if head is None:
        repo.close()
        return None
    return _Module(path, _module_name(source.repo, repo, path), head, _Source(repo))


def _declared(work_tree: Path) -> list[str]:
    """The submodule paths ``work_tree/.gitmodules`` names (:func:`_paths_in`), as
    "a/b"; a path with "..", absolute, or with a symlink or file on the way is none
    (``.gitmodules`` is pushed content)."""
    try:
        data = (work_tree / ".gitmodules").read_bytes()
    except OSError:
        return []
    paths = _named.get(data)
    if paths is None:
        paths = _paths_in(data)
        if len(data) <= _SMALL:  # the store's and each release's: parsed once
            if len(_named) >= _KEPT:
                _named.clear()
            _named[data] = paths
    found = []
    for path in paths:
        parts = PurePosixPath(path).parts
        if parts and parts[0] != "/" and ".." not in parts \
                and not symlink_in(work_tree, parts, ""):
            found.append("/".join(parts))
    return found


def _paths_in(data: bytes) -> tuple[str, ...]:
    """The ``path`` values of a ``.gitmodules`` holding ``data`` (GitPython's config
    parser: no process); none when it cannot be parsed."""
    try:
        modules = git.GitConfigParser(_Named(data), read_only=True, merge_includes=False)
        return tuple(str(modules.get_value(section, "path")) for section in modules.sections()
                     if modules.has_option(section, "path"))
    except (configparser.Error, ValueError):
        return ()


class _Named(io.BytesIO):
    """Bytes GitPython's config parser reads as the file ``.gitmodules``."""

    name = ".gitmodules"


def _gitlinks(work_tree: Path) -> list[str]:
    """The paths of the submodules in the fresh checkout ``work_tree``: those its
    ``.gitmodules`` names (:func:`_declared`) that are an empty folder there, as checking
    out a commit leaves a submodule (git makes no folder for anything else)."""
    found = []
    for path in _declared(work_tree):
        folder = work_tree / path
        try:
            if stat.S_ISDIR(os.lstat(folder).st_mode) and not any(os.scandir(folder)):
                found.append(path)
        except OSError:
            continue
    return found


def _module_name(source: git.Repo, sub: git.Repo, path: str) -> str:
    """The submodule's name, as the store's git dir for it says (``.git/modules/<name>``;
    git checked it), else its path."""
    name = os.path.relpath(sub.git_dir, os.path.join(source.git_dir, "modules"))
    return path if ".." in PurePosixPath(name).parts else name


def _remote(url: str | None) -> list[Setting]:
    """The settings of an ``origin`` at ``url`` (as ``git clone`` writes them)."""
    if not url:
        return []
    return [('remote "origin"', "url", url),
            ('remote "origin"', "fetch", "+refs/heads/*:refs/remotes/origin/*")]


def _format(source: _Source) -> str:
    """The object format of ``source`` (sha1 unless its config says otherwise)."""
    return source.value("extensions", "objectformat") or "sha1"


def _repository(skeleton: _Skeleton, source: _Source, git_dir: Path, name: str,
                steps: list[Step]) -> None:
    """Make ``git_dir`` a git dir borrowing the objects of ``source``
    (``objects/info/alternates``, as ``clone --shared`` writes it) and holding its tags
    (``packed-refs``: ``git describe`` answers as there): written from the empty
    repository ``skeleton``, or, when the spare made it already, each of those two files
    written again where it differs.

    Raises:
        DeployFailed: it cannot be written (the reason names ``name`` and the folder).
    """
    alternates = (os.path.join(source.repo.common_dir, "objects") + "\n").encode()
    tags = _tags(source.repo)
    try:
        if (git_dir / "HEAD").is_file():
            _put(git_dir / "objects" / "info" / "alternates", alternates)
            if tags:
                _put(git_dir / "packed-refs", tags)
            else:
                (git_dir / "packed-refs").unlink(missing_ok=True)
            return
        os.makedirs(git_dir)
        for folder in skeleton.folders:
            os.mkdir(git_dir / folder)
        for file, data in (*skeleton.files, ("config", skeleton.config),
                           ("objects/info/alternates", alternates),
                           *([("packed-refs", tags)] if tags else [])):
            (git_dir / file).write_bytes(data)
    except OSError as exc:
        raise DeployFailed(f"{name} {git_dir}: cannot make its git dir: {exc}",
                           steps) from exc


def _gitfile(git_dir: Path, work_tree: Path) -> bytes:
    """The ``.git`` file of ``work_tree`` linking it to ``git_dir`` by a relative path,
    as git links a submodule."""
    return f"gitdir: {os.path.relpath(git_dir, work_tree)}\n".encode()


def _link(git_dir: Path, work_tree: Path, steps: list[Step]) -> None:
    """Write ``work_tree/.git`` (:func:`_gitfile`).

    Raises:
        DeployFailed: it cannot be written.
    """
    try:
        _put(work_tree / ".git", _gitfile(git_dir, work_tree))
    except OSError as exc:
        raise DeployFailed(f"submodule {work_tree}: cannot link its git dir: {exc}",
                           steps) from exc


def _put(path: Path, data: bytes) -> None:
    """Make ``path`` hold ``data``, writing it only when it holds something else (a read
    is cheaper than a write).

    Raises:
        OSError: it cannot be written.
    """
    try:
        if path.read_bytes() == data:
            return
    except FileNotFoundError:
        pass
    path.write_bytes(data)


def _skeleton(store: Checkout, base: Path, form: str, steps: list[Step]) -> _Skeleton:
    """The git dir of an empty repository in the object format ``form``, which
    :func:`_repository` writes for each repository of a release (git's own files:
    writing them takes a millisecond where ``git init`` takes a process):
    ``base/.skeleton-<format>/.git``, made by ``git init`` (step "release init") the
    first time, in a folder of its own renamed into place, without the empty folders git
    makes again when it needs them (each folder costs a block); read again whenever its
    ``HEAD`` or ``config`` changes.

    Raises:
        DeployFailed: ``git init`` failed, or its output cannot be read.
    """
    made = base / f"{SKELETON}-{form}"
    git_dir = made / ".git"
    if not (git_dir / "HEAD").is_file():
        building = made.with_name(made.name + ".new")
        shutil.rmtree(building, ignore_errors=True)
        store._step("release init", steps, "init", "--quiet",
                    "--template=",  # no sample hooks: a release costs its files
                    *([f"--object-format={form}"] if form != "sha1" else []),
                    "--", str(building), cwd=str(building.parent))
        for optional in ("objects/pack", "refs/heads", "refs/tags"):  # made when due
            (building / ".git" / optional).rmdir()
        shutil.rmtree(made, ignore_errors=True)
        os.rename(building, made)
    try:
        head, config = os.stat(git_dir / "HEAD"), os.stat(git_dir / "config")
        key = (head.st_ino, head.st_mtime_ns, config.st_ino, config.st_mtime_ns)
        kept = _skeletons.get(git_dir)
        if kept is not None and kept[0] == key:
            return kept[1]
        skeleton = _read_skeleton(git_dir)
    except OSError as exc:
        raise DeployFailed(f"cannot read the empty repository {git_dir}: {exc}",
                           steps) from exc
    _skeletons[git_dir] = (key, skeleton)
    return skeleton


def _read_skeleton(git_dir: Path) -> _Skeleton:
    """The folders and files of ``git_dir``.

    Raises:
        OSError: it cannot be read.
    """
    folders, files = [], []
    for top, names, leaves in os.walk(git_dir, onerror=_raise):
        names.sort()
        here = Path(top).relative_to(git_dir)
        folders += [str(here / name) for name in names]
        files += [(str(here / leaf), (Path(top) / leaf).read_bytes()) for leaf in sorted(leaves)]
    config = dict(files).pop("config", b"")
    return _Skeleton(tuple(folders), tuple(f for f in files if f[0] != "config"), config)


def _raise(exc: OSError) -> None:
    raise exc


def _tags(source: git.Repo) -> bytes:
    """The tags of ``source`` (loose and packed, read by GitPython: no process) as the
    lines of a ``packed-refs``; the objects they name are borrowed with the rest."""
    lines = []
    for tag in git.TagReference.iter_items(source):
        sha = refs.read_ref(source, tag.path)
        if sha is not None:
            lines.append(f"{sha} {tag.path}\n")
    return "".join(lines).encode()


def _configure(git_dir: Path, base: bytes, settings: list[Setting]) -> None:
    """Set ``settings`` in ``git_dir/config`` (the skeleton's ``base``): with GitPython's
    config writer, the file written once (a writer on a path rewrites it for each value)
    under git's ``config.lock``, the first time in this process for these settings; then
    the bytes it wrote.

    Raises:
        OSError: the file cannot be written.
    """
    path = git_dir / "config"
    if not settings:
        _put(path, base)
        return
    key = (base, tuple(settings))
    done = _configs.get(key)
    if done is not None:
        _put(path, done)
        return
    _put(path, base)
    with open(path, "r+b") as file, git.GitConfigParser(
            file, read_only=False, merge_includes=False) as config:
        for section, option, value in settings:
            config.set_value(section, option, value)
    if len(_configs) >= _KEPT:
        _configs.clear()
    _configs[key] = path.read_bytes()
