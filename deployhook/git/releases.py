"""Atomic releases (``deploy_mode = "releases"``): build each deploy in its own folder,
then switch the ``current`` symlink to it in one rename.

Layout under ``releases_path``::

    current -> releases/20261201T031500.123456Z-7-1a2b3c4d5e6f  (the live release)
    releases/<UTC time>-<sequence>-<short sha>/   one repository per deployed commit
    releases/<name>.partial                       while <name> is being built
    .pruned/<name>                                a pruned release, deleted after the answer
    .spare-sha1/.git                              the next release's git dirs, made after
                                                  the answer
    .skeleton-sha1/.git                           an empty repository, written for each
    shared/<path>                                 what ``shared_paths`` link to
    .deployhook.lock                              flock held by a deploy or rollback

``repo_path`` is only the object store that is fetched into (the ordinary update of
:class:`~deployhook.git.checkout.Checkout`, without post_deploy).  A release is a
repository of its own at the deployed commit that borrows the store's objects, with the
submodules the store has checked out made the same way
(:mod:`deployhook.git.release_build`), the ``shared_paths`` links
(:mod:`deployhook.git.shared_paths`), then post_deploy run inside it.  Only then is
``current`` switched (a new symlink renamed over the old one), then ``activate`` runs
and ``health_url`` must answer 2xx; either failing switches ``current`` back.  A crash
at any point leaves ``current`` on a complete release: ``<name>.partial`` is written
before the release and removed once it is complete; a release with it is removed by
:func:`clean_partial` (each deploy, and each start of the daemon).

Everything here blocks: run it in the git executor or the CLI's main thread.
"""

from __future__ import annotations

import fcntl
import logging
import os
import re
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path

from deployhook.forges.delivery import Push
from deployhook.git import postdeploy
from deployhook.git.checkout import Checkout, DeployFailed, RunResult, resolve_target
from deployhook.git.steps import Step, summary, tail
from deployhook.redact import redact
from deployhook.settings import TargetConfig

log = logging.getLogger("deployhook.releases")
CURRENT = "current"
RELEASES = "releases"
PARTIAL = ".partial"  # suffix of the marker file next to a release being built
PRUNED = ".pruned"  # where pruned releases wait for deletion (after the answer)
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
    with _unless_held(config) as free:
        if not free:
            return []
        removed = _remove_partial(path)
        for link in root(config).glob(f".{CURRENT}.*.tmp"):  # a switch cut short
            link.unlink(missing_ok=True)
        empty_pruned(config)  # what a run stopped before its answer left
    return removed


@contextmanager
def _unless_held(config: TargetConfig) -> Iterator[bool]:
    """Hold the releases lock when nobody does (no wait); yields whether it is held."""
    with open(_ensure(root(config)) / LOCK, "a") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        yield True


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
        finally:  # the next release's git dirs: after the answer, as git maintenance
            checkout.leftovers.append(lambda: _prepare_next(config))
        return _result(store, True, before, updated.branch, pushes, steps)
    finally:
        store.close()


def _prepare_next(config: TargetConfig) -> None:
    """After the answer: make the git dirs of the next release beforehand
    (:func:`deployhook.git.release_build.prepare`), under the releases lock; nothing
    while a deploy or a rollback holds it (the next release makes its own)."""
    from deployhook.git import release_build

    with _unless_held(config) as free:
        if not free:
            return
        store = Checkout(replace(config, post_deploy=None))
        try:
            release_build.prepare(store, root(config))
        except (DeployFailed, OSError) as exc:
            log.warning("%s: the next release's git dirs were not made beforehand: %s",
                        root(config), getattr(exc, "reason", exc))
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
    import shutil  # releases mode only: an in-place daemon never imports these

    from deployhook.git import release_build, shared_paths

    config = checkout.config
    folder = root(config) / RELEASES
    previous = live_name(config)
    name = _new_name(folder, sha)
    path = folder / name
    marker = folder / (name + PARTIAL)
    marker.write_text(f"{sha}\n")
    try:
        release_build.build(store, root(config), path, sha, config.submodules, steps)
        shared_paths.link(root(config), config.shared_paths, path, steps)
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
