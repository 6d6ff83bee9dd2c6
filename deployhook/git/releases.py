"""Atomic releases (``deploy_mode = "releases"``): build each deploy in its own folder,
then switch the ``current`` symlink to it in one rename.

Layout under ``releases_path``::

    current -> releases/20261201T031500.123456Z-7-1a2b3c4d5e6f  (the live release)
    releases/<UTC time>-<sequence>-<short sha>/   one repository per deployed commit
    releases/<name>.partial                       while <name> is being built
    .pruned/<name>                                a pruned release, deleted after the answer
    .skeleton-sha1/.git                           an empty repository, copied for each
    shared/<path>                                 what ``shared_paths`` link to
    .deployhook.lock                              flock held by a deploy or rollback

``repo_path`` is only the object store that is fetched into (the ordinary update of
:class:`~deployhook.git.checkout.Checkout`, without post_deploy).  A release is a
repository of its own at the deployed commit that borrows the store's objects (a
copy of an empty repository ``git init`` made once, the store as its alternate, one
``git checkout``: nothing copied but its files), with the submodules the store has
checked out made the same way, the ``shared_paths`` links, then post_deploy run
inside it.  Only then is ``current``
switched (a new symlink renamed over the old one), then ``activate`` runs and
``health_url`` must answer 2xx; either failing switches ``current`` back.  A crash
at any point leaves ``current`` on a complete release: ``<name>.partial`` is written
before the clone and removed once the release is complete; a release with it is
removed by :func:`clean_partial` (each deploy, and each start of the daemon).

Everything here blocks: run it in the git executor or the CLI's main thread.
"""

from __future__ import annotations

import configparser
import fcntl
import logging
import os
import re
import stat
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath

import git

from deployhook.forges.delivery import Push
from deployhook.git import postdeploy, refs
from deployhook.git.checkout import Checkout, DeployFailed, RunResult, resolve_target
from deployhook.git.steps import Step, summary, tail
from deployhook.redact import redact
from deployhook.settings import TargetConfig

log = logging.getLogger("deployhook.releases")
CURRENT = "current"
RELEASES = "releases"
SHARED = "shared"
PARTIAL = ".partial"  # suffix of the marker file next to a release being built
PRUNED = ".pruned"  # where pruned releases wait for deletion (after the answer)
SKELETON = ".skeleton"  # + "-<object format>": the empty repository a release copies
LOCK = ".deployhook.lock"
ROLLED_BACK = "rolled back: "


@dataclass(frozen=True)
class Release:
    """One release folder: its name, the commit it holds, whether ``current`` is it."""

    name: str
    sha: str
    path: Path
    live: bool = False


def root(config: TargetConfig) -> Path:
    """``releases_path`` (the mode requires it)."""
    assert config.releases_path is not None
    return Path(config.releases_path)


def enabled(config: TargetConfig) -> bool:
    return config.deploy_mode == "releases"


def head_path(config: TargetConfig) -> str:
    """Where the deployed HEAD is read from: ``releases_path/current`` in releases mode,
    else ``repo_path``."""
    return str(root(config) / CURRENT) if enabled(config) else config.repo_path


def live_name(config: TargetConfig) -> str | None:
    """The name of the release ``current`` points to, or None (no switch yet)."""
    try:
        return Path(os.readlink(root(config) / CURRENT)).name
    except OSError:
        return None


def live_sha(config: TargetConfig) -> str | None:
    """The commit of the live release (read from its .git, no git process), or None."""
    name = live_name(config)
    if name is None:
        return None
    return _head_of(root(config) / RELEASES / name)


def releases(config: TargetConfig) -> list[Release]:
    """The complete releases, oldest first (in the order they were made: see
    :func:`made_order`)."""
    folder = root(config) / RELEASES
    try:
        names = sorted((entry.name for entry in folder.iterdir() if entry.is_dir()
                        and not (folder / (entry.name + PARTIAL)).exists()), key=made_order)
    except FileNotFoundError:
        return []
    live = live_name(config)
    return [Release(name, _head_of(folder / name) or "", folder / name, name == live)
            for name in names]


def find(config: TargetConfig, which: str | None) -> Release:
    """The release ``which`` names (a release name, or a commit SHA or its prefix: the
    newest release of it); None: the release before the live one.

    Raises:
        LookupError: no such release (the message says why).
    """
    found = releases(config)
    if which is None:
        live = next((i for i, r in enumerate(found) if r.live), None)
        if live is None:
            raise LookupError("no release is live")
        if live == 0:
            raise LookupError("there is no release before the live one")
        return found[live - 1]
    for release in reversed(found):
        if release.name == which or (len(which) >= 4 and release.sha.startswith(which.lower())):
            return release
    raise LookupError(f"no release named {which!r} or of a commit starting so")


@contextmanager
def locked(config: TargetConfig) -> Iterator[bool]:
    """Hold ``releases_path/.deployhook.lock`` (flock) for a deploy or a rollback; yields
    False when another one held it for more than ``lock_timeout``."""
    path = root(config)
    path.mkdir(parents=True, exist_ok=True)
    with open(path / LOCK, "a") as lock:
        deadline = time.monotonic() + config.lock_timeout
        while True:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    yield False
                    return
                time.sleep(0.05)
        yield True


def resolve(checkout: Checkout, config: TargetConfig
            ) -> tuple[str | None, str | None, str | None]:
    """:func:`~deployhook.git.checkout.resolve_target`, and in releases mode: the
    half-built releases removed (:func:`clean_partial`) and HEAD the live release's
    commit (None before the first switch).  Blocking.

    Raises:
        ConfigError: as ``resolve_target``.
    """
    branch, repository, head = resolve_target(checkout, config)
    if enabled(config):
        clean_partial(config)
        head = live_sha(config)
    return branch, repository, head


def clean_partial(config: TargetConfig) -> list[str]:
    """Remove every half-built release (one with its ``.partial`` marker); the names
    removed.  Skipped (nothing removed) while a deploy holds the lock."""
    path = root(config) / RELEASES
    if not path.is_dir():
        return []
    removed = []
    with open(_ensure(root(config)) / LOCK, "a") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return []
        removed = _remove_partial(path)
        for link in root(config).glob(f".{CURRENT}.*.tmp"):  # a switch cut short
            link.unlink(missing_ok=True)
        empty_pruned(config)  # what a run stopped before its answer left
    return removed


def _remove_partial(folder: Path) -> list[str]:
    import shutil  # releases mode only: an in-place daemon never imports it

    removed = []
    for marker in sorted(folder.glob("*" + PARTIAL)):
        name = marker.name.removesuffix(PARTIAL)
        shutil.rmtree(folder / name, ignore_errors=True)
        marker.unlink(missing_ok=True)
        removed.append(name)
        log.warning("%s: removed the half-built release %s", folder, name)
    return removed


def _ensure(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


def deploy(checkout: Checkout, branch: str, pushes: Iterable[Push]) -> RunResult:
    """Update the object store (``repo_path``, no post_deploy), then, unless the live
    release already holds its HEAD, build a release of it and switch ``current``.

    The result's heads are the live release's commit before and after; a failed build,
    activate or health check leaves the previous release live (``reason`` starts with
    "rolled back: " when ``current`` had been switched).  Never raises for git or
    command failures.
    """
    config = checkout.config
    pushes = list(pushes)
    start = time.monotonic()
    with locked(config) as ok:
        before = live_sha(config)
        if not ok:
            result = RunResult(False, before, before, branch, reason=(
                f"another deploy holds {root(config) / LOCK} for more than "
                f"{config.lock_timeout:g}s"))
        else:
            result = _deploy(checkout, branch, pushes, before)
    result.duration = time.monotonic() - start
    return result


def _deploy(checkout: Checkout, branch: str, pushes: list[Push],
            before: str | None) -> RunResult:
    config = checkout.config
    steps: list[Step] = []
    for name in _remove_partial(_ensure(root(config) / RELEASES)):
        steps.append(Step("clean", "remove half-built release", 0, 0.0, name))
    store = Checkout(replace(config, post_deploy=None))
    store.progress = checkout.progress
    try:
        try:
            updated = store.deploy(branch, pushes)
        finally:  # the git maintenance its fetch left for later: after the answer
            checkout.maintenance_due = checkout.maintenance_due or store.maintenance_due
        steps += updated.steps
        if not updated.ok:
            return _result(store, False, before, updated.branch, pushes, steps, updated.reason)
        sha = store.head()
        if sha is None or sha == before:
            return _result(store, True, before, updated.branch, pushes, steps)
        try:
            _release(checkout, store, updated.branch, pushes, before, sha, steps)
        except DeployFailed as exc:
            return _result(store, False, before, updated.branch, pushes, steps, exc.reason)
        return _result(store, True, before, updated.branch, pushes, steps)
    finally:
        store.close()


def _result(store: Checkout, ok: bool, before: str | None, branch: str, pushes: list[Push],
            steps: list[Step], reason: str = "") -> RunResult:
    """A RunResult whose heads are the live release's commits."""
    after = live_sha(store.config)
    result = RunResult(ok, before, after, branch, reason=reason, steps=steps)
    result.contains = {p.after: after is not None and _is_ancestor(store, p.after, after)
                       for p in pushes}
    return result


def _is_ancestor(store: Checkout, sha: str, head: str) -> bool:
    return sha == head or store._git("merge-base", "--is-ancestor", sha, head)[0] == 0


def _release(checkout: Checkout, store: Checkout, branch: str, pushes: list[Push],
             before: str | None, sha: str, steps: list[Step]) -> None:
    """Build the release of ``sha``, switch ``current`` to it, activate and check it;
    on a failure after the switch, switch back.  A failed release is removed.

    Raises:
        DeployFailed: a step failed (after a switch back, the reason starts with
            "rolled back: ").
    """
    import shutil  # releases mode only: an in-place daemon never imports it

    config = checkout.config
    folder = root(config) / RELEASES
    previous = live_name(config)
    name = _new_name(folder, sha)
    path = folder / name
    marker = folder / (name + PARTIAL)
    marker.write_text(f"{sha}\n")
    try:
        _build(checkout, store, path, sha, steps)
        _post_deploy(checkout, path, branch, pushes, before, sha, steps)
        marker.unlink()
    except BaseException:
        shutil.rmtree(path, ignore_errors=True)
        marker.unlink(missing_ok=True)
        raise
    _wait_for_the_fleet(checkout, path, sha, steps)
    switch(config, name)
    steps.append(Step("switch", f"current -> {RELEASES}/{name}", 0, 0.0,
                      f"at {time.time():.6f}"))
    failure = activate(config, path, steps) or _health(config, steps)
    if failure:
        _switch_back(config, previous)
        shutil.rmtree(path, ignore_errors=True)
        back = f"{RELEASES}/{previous}" if previous else "no release"
        steps.append(Step("rollback", f"current -> {back}", 0, 0.0, ""))
        raise DeployFailed(f"{ROLLED_BACK}{failure}; {back} is live", steps)
    pruned = prune(config)
    for old in pruned:
        steps.append(Step("prune", "remove old release", 0, 0.0, old))
    if pruned:  # their files go after the answer, as git maintenance does
        checkout.leftovers.append(lambda: empty_pruned(config))


def _wait_for_the_fleet(checkout: Checkout, path: Path, sha: str, steps: list[Step]) -> None:
    """In a fleet that switches together (``checkout.switch_gate``): report the release
    of ``sha`` built and wait until every live node has built it.

    Raises:
        DeployFailed: the fleet does not switch to it (a node failed, a newer commit is
            wanted): the reason says why; the release is removed.
    """
    if checkout.switch_gate is None:
        return
    import shutil  # releases mode only: an in-place daemon never imports it

    start = time.monotonic()
    why = checkout.switch_gate(sha)
    steps.append(Step("fleet", "wait until every node has built the release",
                      1 if why else 0, time.monotonic() - start, why or "every node ready"))
    if why:
        shutil.rmtree(path, ignore_errors=True)
        raise DeployFailed(why, steps)
# <UTC time, to the second or (since the sequence) the microsecond>Z-[<sequence>-]<sha[:12]>
# [-<n>: a name made twice in one second before the sequence]
_NAME = re.compile(r"(?P<time>\d{8}T\d{6})(?:\.(?P<micro>\d{6}))?Z-(?:(?P<seq>\d{1,9})-)?"
                   r"[0-9a-f]{12}(?:-(?P<n>\d+))?")


def made_order(name: str) -> tuple[int, str, int, str]:
    """The sort key of release ``name``: its sequence number (0 for a name made before
    releases had one), then the UTC time in it, then the retry counter, then the name.

    So releases sort in the order they were made, even several in one second or after
    the clock was set back; an old name (second precision, no sequence) sorts by its
    time, before every newer one; a folder named otherwise sorts first, by name.
    """
    match = _NAME.fullmatch(name)
    if match is None:
        return 0, "", 0, name
    stamp = f"{match['time']}.{match['micro'] or '000000'}"
    return int(match["seq"] or 0), stamp, int(match["n"] or 0), name


def _new_name(folder: Path, sha: str) -> str:
    """``<UTC time to the microsecond>Z-<sequence>-<sha[:12]>``: the sequence is one more
    than any in ``folder`` (complete or half-built), so the new release sorts last
    (:func:`made_order`); unique in ``folder``.  Call it under the releases lock."""
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S.%fZ")
    try:
        names = [entry.name.removesuffix(PARTIAL) for entry in folder.iterdir()]
    except FileNotFoundError:
        names = []
    sequence = max((made_order(name)[0] for name in names), default=0) + 1
    return f"{stamp}-{sequence}-{sha[:12]}"


Setting = tuple[str, str, str]  # (section, option, value) of a git config


def _build(checkout: Checkout, store: Checkout, path: Path, sha: str,
           steps: list[Step]) -> None:
    """Make the release of ``sha`` at ``path`` from the store: a repository of its own
    borrowing the store's objects (:func:`_repository`), whose ``origin`` is the store's
    remote URL (relative submodule URLs resolve as in the store), with the submodules
    the store has checked out (:func:`_submodules`) and the ``shared_paths`` links.

    Raises:
        DeployFailed: a git command failed, or a shared path cannot be linked.
    """
    config = checkout.config
    source = _Source(store.repo)
    _repository(store, source, path, None, sha, "release", steps)
    settings = _remote(store.remote_url())
    if config.submodules and (path / ".gitmodules").exists():
        start, made, shown = time.monotonic(), [], []
        try:
            settings += _submodules(store, source, path, path / ".git", made, shown)
        except DeployFailed as exc:
            steps += made
            raise DeployFailed(exc.reason, steps) from exc
        steps.append(Step("release submodules", "from the store's submodules (alternates)",
                          0, time.monotonic() - start, tail("\n".join(shown))))
    _configure(path / ".git", settings)
    _link_shared(config, path, steps)


def _repository(store: Checkout, source: _Source, work_tree: Path, git_dir: Path | None,
                sha: str, name: str, steps: list[Step]) -> None:
    """Make a repository at ``work_tree`` with ``sha`` checked out (detached HEAD): its
    git dir a copy of the empty one ``git init`` made once (:func:`_skeleton`), then one
    ``git checkout`` (step ``<name> checkout``).  It borrows the objects of ``source``
    (the store or one of its submodules; alternates, as ``clone --shared``: nothing is
    copied) and gets its tags (so ``git describe`` answers as there).  ``git_dir``: a
    submodule's, under the superproject's ``.git/modules``, linked from
    ``work_tree/.git`` by a relative path as git links it; None: ``work_tree/.git``.

    Raises:
        DeployFailed: a git command failed (its step says why), or the git dir cannot be
            made.
    """
    import shutil  # releases mode only: an in-place daemon never imports it

    skeleton = _skeleton(store, source.value("extensions", "objectformat") or "sha1", steps)
    own = git_dir or work_tree / ".git"
    try:
        shutil.copytree(skeleton, own)
        if git_dir is not None:
            (work_tree / ".git").write_text(f"gitdir: {os.path.relpath(git_dir, work_tree)}\n")
        # what ``git clone --shared`` writes (GitPython's ``Repo.alternates`` too, without
        # opening a Repo for it)
        (own / "objects" / "info" / "alternates").write_text(
            os.path.join(source.repo.common_dir, "objects") + "\n")
        _copy_tags(source.repo, own)
    except OSError as exc:
        raise DeployFailed(f"{name} {work_tree}: cannot make its git dir: {exc}",
                           steps) from exc
    store._step(f"{name} checkout", steps, "-c", "advice.detachedHead=false",
                "-c", "core.logAllRefUpdates=false",  # HEAD never moves here: no reflog
                "checkout", "--quiet", "--detach", sha, "--", cwd=str(work_tree))


def _skeleton(store: Checkout, form: str, steps: list[Step]) -> Path:
    """The git dir of an empty repository in the object format ``form``, which
    :func:`_repository` copies for each repository of a release (git's own files: a
    copy takes a millisecond where ``git init`` takes a process):
    ``releases_path/.skeleton-<format>/.git``, made by ``git init`` (step "release
    init") the first time, in a folder of its own renamed into place, without the
    empty folders git makes again when it needs them (each folder costs a block).

    Raises:
        DeployFailed: ``git init`` failed.
    """
    import shutil  # releases mode only: an in-place daemon never imports it

    made = root(store.config) / f"{SKELETON}-{form}"
    if (made / ".git" / "HEAD").is_file():
        return made / ".git"
    building = made.with_name(made.name + ".new")
    shutil.rmtree(building, ignore_errors=True)
    store._step("release init", steps, "init", "--quiet",
                "--template=",  # no sample hooks: a release costs its files
                *([f"--object-format={form}"] if form != "sha1" else []),
                "--", str(building), cwd=str(building.parent))
    for optional in ("objects/pack", "refs/heads", "refs/tags"):  # git makes them when due
        (building / ".git" / optional).rmdir()
    shutil.rmtree(made, ignore_errors=True)
    os.rename(building, made)
    return made / ".git"


def _copy_tags(source: git.Repo, git_dir: Path) -> None:
    """Write the tags of ``source`` (loose and packed, read by GitPython: no process)
    into ``git_dir/packed-refs``; the objects they name are borrowed with the rest."""
    lines = []
    for tag in git.TagReference.iter_items(source):
        sha = refs.read_ref(source, tag.path)
        if sha is not None:
            lines.append(f"{sha} {tag.path}\n")
    if lines:
        (git_dir / "packed-refs").write_text("".join(lines))


def _submodules(store: Checkout, source: _Source, release: Path, git_dir: Path,
                steps: list[Step], shown: list[str], prefix: str = "") -> list[Setting]:
    """Give the release repository at ``release`` (its git dir ``git_dir``) the
    submodules that ``source`` (the store, or a submodule of it) has checked out,
    recursively: each a repository of its own under ``git_dir/modules/<name>``
    (:func:`_repository`), borrowing the objects of the store's, at the commit the
    store's is at (what an in-place deploy serves), configured as ``git submodule``
    leaves it.  A submodule the store has not checked out (an inactive one, say) stays
    an empty folder, as in the store.  Each one made is added to ``shown``
    ("<path> at <commit>", the path from the top).

    Returns the settings that initialise them in ``release`` (``submodule.<name>.url``).

    Raises:
        DeployFailed: a git command failed (its step says why).
    """
    settings: list[Setting] = []
    for path in _gitlinks(release):
        here = Path(source.repo.working_tree_dir or "", path)
        if not (here / ".git").exists():
            continue
        with git.Repo(here) as repo:
            head = refs.read_ref(repo, "HEAD")
            if head is None:
                continue
            sub = _Source(repo)
            name = _module_name(source.repo, repo, path)
            module, work_tree = git_dir / "modules" / name, release / path
            _repository(store, sub, work_tree, module, head, "submodule", steps)
            shown.append(f"{prefix}{path} at {head}")
            origin = sub.value('remote "origin"', "url")
            own = [("core", "worktree", os.path.relpath(work_tree, module)), *_remote(origin)]
            if (work_tree / ".gitmodules").exists():
                own += _submodules(store, sub, work_tree, module, steps, shown,
                                   f"{prefix}{path}/")
            _configure(module, own)
            url = source.value(f'submodule "{name}"', "url") or origin
        if url:  # initialised (a URL makes it active), as ``git submodule init`` does
            settings.append((f'submodule "{name}"', "url", url))
    return settings


def _gitlinks(work_tree: Path) -> list[str]:
    """The paths of the submodules in the fresh checkout ``work_tree``: those its
    ``.gitmodules`` names (GitPython's config parser: no process) that are an empty
    folder there, as checking out a commit leaves a submodule (git makes no folder for
    anything else); a path with "..", or with a symlink or file on the way, is none."""
    try:
        modules = git.GitConfigParser(str(work_tree / ".gitmodules"), read_only=True,
                                      merge_includes=False)  # pushed: no file beside it
        paths = [str(modules.get_value(section, "path")) for section in modules.sections()
                 if modules.has_option(section, "path")]
    except (OSError, configparser.Error, ValueError):
        return []
    found = []
    for path in paths:
        parts = PurePosixPath(path).parts
        if not parts or parts[0] == "/" or ".." in parts or _symlink_in(work_tree, parts, ""):
            continue
        try:
            if stat.S_ISDIR(os.lstat(work_tree.joinpath(*parts)).st_mode) and not any(
                    os.scandir(work_tree.joinpath(*parts))):
                found.append("/".join(parts))
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


def _configure(git_dir: Path, settings: list[Setting]) -> None:
    """Set ``settings`` in ``git_dir/config`` with GitPython's config writer, the file
    written once (a writer on a path rewrites it for each value) under git's
    ``config.lock``."""
    if not settings:
        return
    with open(git_dir / "config", "r+b") as file, git.GitConfigParser(
            file, read_only=False, merge_includes=False) as config:
        for section, option, value in settings:
            config.set_value(section, option, value)


def _link_shared(config: TargetConfig, path: Path, steps: list[Step]) -> None:
    """Link each of ``shared_paths`` in the release to ``shared/<path>``.  A shared path
    that does not exist yet is seeded from the release's copy (moved there), or made an
    empty folder.

    Nothing is followed out of the release or ``shared/``: every shared path is checked
    first (:func:`_symlink_in`), then changed through folders opened without following
    a symlink (:func:`_open_folder`).

    Raises:
        DeployFailed: a component of a shared path, in the release (the pushed tree) or
            under ``shared/``, is a symlink or not a folder where the path goes on (the
            reason names it; nothing was deleted or moved), or a link failed.
    """
    base = root(config)
    for item in config.shared_paths:
        parts = PurePosixPath(item).parts
        problem = (_symlink_in(path, parts, "in the pushed tree")
                   or _symlink_in(base, (SHARED, *parts), f"in {base}"))
        if problem:
            raise DeployFailed(f"shared path {item}: {problem}; shared_paths must be real "
                               "folders or files", steps)
    for item in config.shared_paths:
        try:
            _link_one(base, path, PurePosixPath(item).parts)
        except OSError as exc:
            raise DeployFailed(f"shared path {item}: cannot link it: {exc}", steps) from exc
    if config.shared_paths:
        steps.append(Step("shared", "link shared_paths", 0, 0.0,
                          ", ".join(config.shared_paths)))


def _symlink_in(base: Path, parts: tuple[str, ...], where: str) -> str:
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
    import shutil  # releases mode only: an in-place daemon never imports it

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
    import errno
    import shutil

    try:
        os.rename(name, name, src_dir_fd=source, dst_dir_fd=target)
    except OSError as exc:
        if exc.errno != errno.EXDEV:
            raise
        shutil.move(source_path, target_path)


def _post_deploy(checkout: Checkout, path: Path, branch: str, pushes: list[Push],
                 before: str | None, sha: str, steps: list[Step]) -> None:
    """Run post_deploy inside the new release (the build)."""
    config = checkout.config
    if not config.post_deploy:
        return
    tag = branch.removeprefix("refs/tags/") if config.tags else ""
    env = {**postdeploy.push_env(str(path), "" if config.tags else branch, pushes, before,
                                 sha, tag),
           "DEPLOYHOOK_RELEASE": str(path), "DEPLOYHOOK_RELEASES_PATH": str(root(config))}
    step = postdeploy.run(config.post_deploy, str(path), env, config.post_deploy_timeout,
                          hidden=checkout._secrets())
    steps.append(step)
    if not step.ok:
        raise DeployFailed(f"release of {sha[:12]} not switched to: {summary(step)} "
                           f"(exit status {step.status})", steps)


def switch(config: TargetConfig, name: str) -> None:
    """Point ``current`` at ``releases/<name>`` atomically: a new relative symlink renamed
    over the old one, then the folder synced.

    Raises:
        OSError: the link cannot be made.
    """
    base = root(config)
    tmp = base / f".{CURRENT}.{os.getpid()}.tmp"
    tmp.unlink(missing_ok=True)
    os.symlink(f"{RELEASES}/{name}", tmp)
    os.replace(tmp, base / CURRENT)
    _sync(base)


def _switch_back(config: TargetConfig, previous: str | None) -> None:
    if previous is not None:
        switch(config, previous)
    else:
        (root(config) / CURRENT).unlink(missing_ok=True)
        _sync(root(config))


def _sync(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def activate(config: TargetConfig, path: Path, steps: list[Step]) -> str:
    """Run ``activate`` in the new release; "" when it worked (or is unset), else why."""
    if not config.activate:
        return ""
    step = postdeploy.run(config.activate, str(path), {"DEPLOYHOOK_RELEASE": str(path)},
                          config.post_deploy_timeout)
    step = Step("activate", step.command, step.status, step.duration, step.output)
    steps.append(step)
    return "" if step.ok else f"{summary(step)} (exit status {step.status})"


def _health(config: TargetConfig, steps: list[Step]) -> str:
    """Fetch ``health_url``; "" when it answered 2xx within ``health_timeout`` (or is
    unset), else why not (credentials in the URL never shown)."""
    url = config.health_url
    if not url:
        return ""
    import urllib.error  # only where health_url is set: the daemon imports no HTTP client
    import urllib.request

    start = time.monotonic()
    shown = redact(url)
    try:
        with urllib.request.urlopen(url, timeout=config.health_timeout) as response:
            status, why = response.status, ""
            response.read(1024)
    except urllib.error.HTTPError as exc:
        status, why = exc.code, f"health_url {shown} answered {exc.code}"
    except (OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        status, why = 1, f"health_url {shown} did not answer: {redact(str(reason))}"
    if not why and not 200 <= status < 300:
        why = f"health_url {shown} answered {status}"
    steps.append(Step("health", f"GET {shown}", 0 if not why else status,
                      time.monotonic() - start, tail(why)))
    return why


def prune(config: TargetConfig) -> list[str]:
    """Remove the releases beyond the newest ``keep_releases``; never the live one or the
    one before it.  The names removed.  Each is moved out of ``releases/`` at once (a
    rename into ``.pruned/``, so it is no release any more); :func:`empty_pruned`
    deletes its files (after the answer)."""
    import shutil  # releases mode only: an in-place daemon never imports it

    found = releases(config)
    keep = {r.name for r in found[-config.keep_releases:]}
    live = next((i for i, r in enumerate(found) if r.live), None)
    if live is not None:
        keep |= {r.name for r in found[max(0, live - 1):live + 1]}
    removed = [r.name for r in found if r.name not in keep]
    for name in removed:
        try:
            os.rename(root(config) / RELEASES / name, _ensure(root(config) / PRUNED) / name)
        except OSError:  # another file system, or a name left there: delete it now
            shutil.rmtree(root(config) / RELEASES / name, ignore_errors=True)
    return removed


def empty_pruned(config: TargetConfig) -> None:
    """Delete the files of the releases :func:`prune` moved out (``.pruned/``)."""
    import shutil  # releases mode only: an in-place daemon never imports it

    try:
        entries = list((root(config) / PRUNED).iterdir())
    except FileNotFoundError:
        return
    for entry in entries:
        shutil.rmtree(entry, ignore_errors=True)


def _head_of(path: Path) -> str | None:
    """The detached HEAD's SHA of a release, read from its .git (no git process)."""
    try:
        head = (path / ".git" / "HEAD").read_text().strip()
    except OSError:
        return None
    return head if len(head) == 40 and not head.startswith("ref:") else None


def roll_back(target: TargetConfig, which: str | None
              ) -> tuple[bool, str, list[Step]]:
    """Under the releases lock, switch ``current`` to release ``which`` (its name or a
    commit SHA prefix; None: the one before the live one) and run ``activate``:
    (ok, reason, steps).  Blocking; ``deployhook rollback`` and a fleet's rollback."""
    steps: list[Step] = []
    with locked(target) as held:
        if not held:
            return False, (f"another deploy holds {root(target) / LOCK} "
                           f"for more than {target.lock_timeout:g}s"), steps
        try:
            release = find(target, which)
        except LookupError as exc:
            return False, str(exc), steps
        if release.live:
            return True, f"release {release.name} is already live", steps
        switch(target, release.name)
        steps.append(Step("switch", f"current -> {RELEASES}/{release.name}", 0,
                          0.0, ""))
        failure = activate(target, release.path, steps)
        if failure:
            return False, f"switched to {release.name} but {failure}", steps
        return True, f"rolled back to {release.name}", steps
