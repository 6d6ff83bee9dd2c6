"""Blocking git work on one checkout: clone, fetch, update, submodules, post_deploy.

Everything here blocks and must run in the git worker's executor, never on
the IOLoop.  A failed update leaves the checkout as it was: a merge or rebase
is aborted, and whenever HEAD moved before a step failed (git can exit non-zero
after moving it, a hook can time out, a submodule update can fail), HEAD and the
work tree are put back with ``git reset --keep``.  Local changes are only ever
discarded by the ``reset`` strategy.  Every git command (hooks included) is
killed with all its descendants after ``git_timeout``; the wait for the
checkout's lock is bounded by ``lock_timeout``.

The git work goes through GitPython: a ``git.Repo`` per run (closed when the run
ends), its remote's URL and its refs and HEAD read from the files (no process), and
every git command started by its command layer (``Git.execute``).  Nothing reads
objects through GitPython: its ``git cat-file`` processes would outlive the run.

A run that may move HEAD first writes ``.git/deployhook-unfinished``; only a run
that ends with everything done (post_deploy included) removes it.  While it is
there, HEAD is not "deployed": the next run fetches and runs post_deploy again
even when HEAD already contains the pushed commits.

In tags mode (``tags`` set) a run deploys one tag: only that tag is fetched and its
commit checked out as a detached HEAD, with the same guards.  With ``ssh_key`` every
git command offers ssh that key only (``GIT_SSH_COMMAND``, see ``ssh.py``).
"""

from __future__ import annotations

import configparser
import fcntl
import fnmatch
import logging
import os
import re
import selectors
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, NamedTuple, TextIO

import git

from deployhook.errors import ConfigError, SecretMissing
from deployhook.forges.delivery import Push
from deployhook.forges.events import TAG_PREFIX
from deployhook.git import postdeploy, refs
from deployhook.git.objects import surely_absent
from deployhook.git.repair import (
    NO_HOOKS,
    git_dirs,
    only,
    paths_of,
    repair,
    undo_partial_update,
)
from deployhook.git.ssh import ssh_command
from deployhook.git.steps import Step, summary, tail
from deployhook.git.submodules import update_command
from deployhook.redact import redact
from deployhook.secret import SecretSource
from deployhook.settings import TargetConfig

log = logging.getLogger("deployhook.checkout")
GITLINK = "160000"  # the mode of a submodule's entry in a tree
UNFINISHED = "deployhook-unfinished"  # in .git: the last run that moved HEAD did not finish
LOCK = "deployhook.lock"  # in .git: flock held for the whole run
_GITHUB_URL = re.compile(
    r"^(?:https?://(?:[^@/]+@)?github\.com/|(?:ssh://)?git@github\.com[:/])"
    r"(?P<name>[\w.-]+/[\w.-]+?)(?:\.git)?/?$"
)
FORBIDDEN_PROTOCOLS = ("protocol.ext.allow", "protocol.fd.allow")  # set to "never"
# A deploy's git commands leave ``git maintenance run --auto`` (which fetch and merge
# would run before returning) to :meth:`Checkout.housekeep`, after the answer.
NO_AUTO_MAINTENANCE = (("maintenance.auto", "false"),)
LEFTOVER_WAIT = 5.0  # seconds to read what a killed git wrote before its pipes are dropped


class Change(NamedTuple):
    """What an update changes at one path: git's status letter, and whether a
    submodule's commit (a gitlink) is on either side."""

    status: str
    gitlink: bool


class RemoteError(Exception):
    """The remote cannot say what it would deploy (:meth:`Checkout.remote_tip`)."""


@dataclass(frozen=True)
class Tip:
    """What a remote would deploy: ``ref`` (``refs/heads/B`` or ``refs/tags/T``) names
    ``sha`` (for an annotated tag, the tag object), which is or points to ``commit``."""

    ref: str
    sha: str
    commit: str


def newest_tag(listing: str, pattern: str) -> Tip | None:
    """The first tag matching ``pattern`` (shell-style) in ``git ls-remote --tags
    --sort=-v:refname`` output (git's version sort, newest first: the tag a tags-mode
    deploy picks), with the commit of an annotated tag from its ``^{}`` line; None."""
    objects: dict[str, str] = {}
    names: list[str] = []
    for line in listing.splitlines():
        sha, _, ref = line.partition("\t")
        if ref.startswith(TAG_PREFIX):
            if ref not in objects and not ref.endswith("^{}"):
                names.append(ref)
            objects[ref] = sha
    for ref in names:
        if fnmatch.fnmatchcase(ref.removeprefix(TAG_PREFIX), pattern):
            return Tip(ref, objects[ref], objects.get(ref + "^{}", objects[ref]))
    return None


def _branch_tip(listing: str, branch: str | None, source: str) -> Tip:
    """The tip of ``branch`` (None: of the ``HEAD`` symref's branch) in ``git
    ls-remote`` output.

    Raises:
        RemoteError: the listing has no such branch.
    """
    ref = f"refs/heads/{branch}" if branch else None
    shas: dict[str, str] = {}
    for line in listing.splitlines():
        left, _, name = line.partition("\t")
        if left.startswith("ref: ") and name == "HEAD":
            ref = left.removeprefix("ref: ")
        else:
            shas[name] = left
    sha = shas.get(ref or "") or (shas.get("HEAD") if ref and not branch else None)
    if ref is None or not sha:
        what = f"branch {branch}" if branch else "default branch"
        raise RemoteError(f"{source} has no {what}")
    return Tip(ref, sha, sha)


class DeployFailed(Exception):
    """A step failed; ``reason`` is safe to show, ``steps`` is what ran."""

    def __init__(self, reason: str, steps: list[Step]) -> None:
        super().__init__(reason)
        self.reason = reason
        self.steps = steps


@dataclass
class RunResult:
    """What one deploy run did.  ``contains`` maps each asked-for SHA to "in HEAD"."""

    ok: bool
    head_before: str | None
    head_after: str | None
    branch: str = ""
    reason: str = ""
    steps: list[Step] = field(default_factory=list)
    contains: dict[str, bool] = field(default_factory=dict)
    duration: float = 0.0
    run_id: int | None = None
    resumed: bool = False  # finished (post_deploy included) what an earlier run left undone

    @property
    def moved(self) -> bool:
        return self.ok and self.head_before != self.head_after

    @property
    def deployed(self) -> bool:
        """True when this run deployed something: moved HEAD, or finished the deploy of
        HEAD that an earlier run left unfinished (its post_deploy failed or it died)."""
        return self.moved or (self.ok and self.resumed)


def git_environment(timeout: float, ssh_key: str | None = None,
                    config: tuple[tuple[str, str], ...] = ()) -> dict[str, str]:
    """Environment for every git command: git never prompts or hangs on a dead peer, and
    never uses the ``ext::`` or ``fd::`` transports whatever the user's git config says
    (``GIT_CONFIG_*`` is configuration given on the command line: it beats every config
    file and git passes it on to the commands it runs for submodules).  Settings already
    given that way in ``$GIT_CONFIG_COUNT`` are kept.  With ``ssh_key``, ssh offers only
    that key (see :func:`deployhook.git.ssh.ssh_command`; an operator's own
    ``$GIT_SSH_COMMAND`` is kept, with the key added to it).  ``config``: more (key,
    value) settings given the same way."""
    ssh = ssh_command(timeout, ssh_key, os.environ.get("GIT_SSH_COMMAND"))
    env = {
        "GIT_TERMINAL_PROMPT": "0",
        "GIT_ASKPASS": "",
        "SSH_ASKPASS": "",
        "GCM_INTERACTIVE": "never",
        "GIT_SSH_COMMAND": ssh,
        "GIT_HTTP_LOW_SPEED_LIMIT": "1000",
        "GIT_HTTP_LOW_SPEED_TIME": str(max(1, int(timeout))),
    }
    count = os.environ.get("GIT_CONFIG_COUNT", "0")
    index = int(count) if count.isdigit() else 0
    for key, value in [(key, "never") for key in FORBIDDEN_PROTOCOLS] + list(config):
        env[f"GIT_CONFIG_KEY_{index}"] = key
        env[f"GIT_CONFIG_VALUE_{index}"] = value
        index += 1
    env["GIT_CONFIG_COUNT"] = str(index)
    allowed = os.environ.get("GIT_ALLOW_PROTOCOL")  # it would beat the config above
    if allowed is not None:
        env["GIT_ALLOW_PROTOCOL"] = ":".join(
            name for name in allowed.split(":") if name not in ("ext", "fd"))
    return env


def run_bounded(command: list[str], cwd: str, env: dict[str, str], timeout: float
                ) -> tuple[int, str, str]:
    """Run a program that is not git (``deployhook check``'s ssh probes) under the same
    bound as git: see :func:`wait_bounded`.  ``env`` is its whole environment.

    Raises:
        OSError: it cannot be started.
    """
    proc = subprocess.Popen(command, cwd=cwd, env=env, stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    return wait_bounded(proc, timeout)


def run_git(runner: git.Git, args: Sequence[str], env: dict[str, str], timeout: float,
            relay: BinaryIO | None = None) -> tuple[int, str, str]:
    """Run ``git ARGS`` through GitPython's command layer (``Git.execute`` with
    ``as_process=True``): in ``runner``'s working directory, with ``env`` over ours and
    git's messages in English (``LC_ALL=C``, set by GitPython: they are parsed and shown
    as reasons), stdin from /dev/null; then :func:`wait_bounded` for at most ``timeout``.

    Raises:
        git.GitCommandNotFound: git cannot be started.
    """
    handle = runner.execute(["git", *args], as_process=True, env=env)
    return wait_bounded(handle.proc, timeout, relay)


def wait_bounded(proc: subprocess.Popen[bytes], timeout: float,
                 relay: BinaryIO | None = None) -> tuple[int, str, str]:
    """Collect ``proc``'s output and exit status; kill it with all its descendants (a
    hook git runs, an ssh it started) once ``timeout`` seconds have passed, or when we
    are interrupted.  It stays in our process group, so whoever kills our group (Ctrl-C,
    a supervisor) kills it too.  GitPython's own ``kill_after_timeout`` is not used: it
    kills the tree without stopping it first, and then waits without bound on pipes that
    a process which left git's tree (a daemon a hook started) still holds.

    Returns (exit status, stdout, stderr) with one trailing newline removed; 124 and
    "fatal: timed out after Ns" on a timeout.  With ``relay`` (git's progress for a
    terminal), stderr is also copied there as it comes and is returned as a note.
    """
    deadline = time.monotonic() + timeout
    out, err = bytearray(), bytearray()
    status: int | None = None
    try:
        if _read(proc, deadline, out, err, relay):
            status = proc.wait(max(0.0, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
        pass
    except BaseException:  # KeyboardInterrupt in ``deployhook deploy``: take git down too
        kill_tree(proc.pid)
        _close(proc)
        proc.wait()
        raise
    if status is None:
        kill_tree(proc.pid)
        _read(proc, time.monotonic() + LEFTOVER_WAIT, out, err, relay)  # what it wrote
        _close(proc)
        proc.wait()
        status = 124
        err += b"\n" if err and not err.endswith(b"\n") else b""
        err += f"fatal: timed out after {timeout:g}s".encode()
    _close(proc)
    text = _text(err)
    if relay is not None:
        text = "(progress was shown on the terminal)" + (
            text[text.find("\nfatal"):] if status == 124 else "")
    return status, _chomp(_text(out)), _chomp(text)


def _read(proc: subprocess.Popen[bytes], deadline: float, out: bytearray, err: bytearray,
          relay: BinaryIO | None) -> bool:
    """Read ``proc``'s stdout into ``out`` and stderr into ``err`` (and ``relay``) until
    both pipes are at their end (True; each is closed then) or ``deadline`` (False)."""
    sinks = {proc.stdout: out, proc.stderr: err}
    with selectors.DefaultSelector() as selector:
        for pipe in sinks:
            if pipe is not None and not pipe.closed:
                selector.register(pipe, selectors.EVENT_READ)
        while selector.get_map():
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            for key, _ in selector.select(left):
                chunk = os.read(key.fd, 65536)
                if not chunk:
                    selector.unregister(key.fileobj)
                    key.fileobj.close()  # type: ignore[union-attr]
                    continue
                sinks[key.fileobj].extend(chunk)  # type: ignore[index]
                if relay is not None and key.fileobj is proc.stderr:
                    relay.write(chunk)
                    relay.flush()
    return True


def _close(proc: subprocess.Popen[bytes]) -> None:
    """Close ``proc``'s pipes (those a process that escaped the kill may still hold)."""
    for pipe in (proc.stdout, proc.stderr):
        if pipe is not None:
            pipe.close()


def kill_tree(pid: int) -> None:
    """SIGKILL ``pid`` and every process descended from it.  All of them are stopped
    first (until no new one appears), so none can fork or be re-parented meanwhile."""
    stopped: set[int] = set()
    tree = {pid}
    while tree - stopped:
        for member in tree - stopped:
            _signal(member, signal.SIGSTOP)
            stopped.add(member)
        tree = {pid} | _descendants(pid)
    for member in stopped:
        _signal(member, signal.SIGKILL)


def _descendants(pid: int) -> set[int]:
    """The processes descended from ``pid`` (from /proc)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    found: set[int] = set()
    todo = [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def _signal(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


def _text(data: bytes | bytearray | None) -> str:
    return bytes(data or b"").decode("utf-8", "replace")


def _chomp(text: str) -> str:
    return text[:-1] if text.endswith("\n") else text


def github_repository(url: str | None) -> str | None:
    """``owner/name`` for a GitHub clone URL (https, ssh or scp form), else None."""
    match = _GITHUB_URL.match(url or "")
    return match.group("name") if match else None


class Checkout:
    """One deployed checkout.  Not thread-safe: the git worker runs one deploy at a time."""

    def __init__(self, config: TargetConfig) -> None:
        self.config = config
        self.path = config.repo_path
        self._env = git_environment(config.git_timeout, config.ssh_key, NO_AUTO_MAINTENANCE)
        self._repo: git.Repo | None = None
        self.maintenance_due = False  # a run fetched: :meth:`housekeep` has work to do
        self.progress = False  # True: network steps show git's progress on our stderr
        # Called (step name, its output so far) while pre_deploy or post_deploy runs.
        self.live: Callable[[str, str], None] | None = None
        # Releases mode in a fleet: called with the built release's commit before
        # ``current`` is switched; blocks until the fleet says switch (returns "") or
        # returns why not (see git/releases.py).
        self.switch_gate: Callable[[str], str] | None = None
        # Work a run left for after its answer (releases mode: deleting the releases it
        # pruned); :meth:`housekeep` does it.
        self.leftovers: list[Callable[[], None]] = []

    # -- facts ------------------------------------------------------------
    def exists(self) -> bool:
        return (Path(self.path) / ".git").exists()

    @property
    def repo(self) -> git.Repo:
        """GitPython's Repo of the checkout, opened on first use (no process started);
        :meth:`deploy` closes it when the run ends, :meth:`close` too.  Its git commands
        get the checkout's environment (:func:`git_environment`).

        Raises:
            git.exc.InvalidGitRepositoryError, git.exc.NoSuchPathError: no checkout.
        """
        if self._repo is None:
            self._repo = git.Repo(self.path)
            self._repo.git.update_environment(**self._env)
        return self._repo

    def close(self) -> None:
        """Let go of the Repo: GitPython's persistent processes (``cat-file``, which
        the deploy path never starts) are ended and its caches cleared."""
        if self._repo is not None:
            self._repo.close()
            self._repo = None

    def current_branch(self) -> str | None:
        """The checked-out branch, or None when HEAD is detached or there is no checkout
        (GitPython's HEAD, read from .git: no git process)."""
        return refs.current_branch(self.repo) if self.exists() else None

    def remote_url(self) -> str | None:
        """The URL of the configured remote (GitPython's Remote, read from the git config:
        no git process), or None when it has none."""
        try:
            return self.repo.remote(self.config.remote).url if self.exists() else None
        except (ValueError, configparser.Error, OSError):
            return None

    def head(self) -> str | None:
        """HEAD's commit SHA, or None before the first commit."""
        return self.ref("HEAD")

    def ref(self, name: str) -> str | None:
        """The SHA ``name`` (a full ref or HEAD) points to (GitPython's reference layer,
        read from .git: no git process); None if unset or there is no checkout."""
        return refs.read_ref(self.repo, name) if self.exists() else None

    def ls_remote(self, *args: str) -> tuple[int, str, str]:
        """``git ls-remote ARGS`` within the network timeout, from the checkout (or its
        parent folder before the first clone; ``/`` while that does not exist either):
        (exit status, stdout, stderr).  Thread-safe: it uses no shared Repo, so the
        poller may call it while a deploy runs."""
        parent = Path(self.path).parent
        cwd = self.path if self.exists() else str(parent) if parent.is_dir() else "/"
        return self._git("ls-remote", *args, network=True, cwd=cwd)

    def remote_tip(self, branch: str | None) -> Tip:
        """What this target would deploy now, by one :meth:`ls_remote` of the remote
        (``repo_url`` before the first clone): the tip of ``branch`` (None: the remote's
        default branch), or in tags mode the newest tag matching ``config.tags`` by the
        rule a deploy uses (:func:`newest_tag`).  Thread-safe, as :meth:`ls_remote`.

        Raises:
            RemoteError: the remote cannot be listed (its redacted reason), or has no
                such branch or matching tag.
        """
        if self.exists():
            source = self.config.remote
        elif self.config.repo_url:
            source = self.config.repo_url
        else:
            raise RemoteError(f"{self.path} is not a git checkout and repo_url is not set")
        tagged = self.config.tags is not None
        if tagged:
            args: tuple[str, ...] = ("--tags", "--sort=-v:refname", source)
        elif branch:
            args = (source, f"refs/heads/{branch}")
        else:
            args = ("--symref", source, "HEAD")
        status, out, err = self.ls_remote(*args)
        if status != 0:
            raise RemoteError(tail(redact(err.strip())) or f"git ls-remote exited {status}")
        if tagged:
            pattern = self.config.tags or "*"
            found = newest_tag(out, pattern)
            if found is None:
                raise RemoteError(f"{redact(source)} has no tag matching {pattern!r}")
            return found
        return _branch_tip(out, branch, redact(source))

    def probe_remote(self, remote: str, branch: str | None) -> tuple[int, str]:
        """Whether ``remote`` answers and has ``branch``: (exit status, stderr); 2 = no
        such branch."""
        refs = [f"refs/heads/{branch}"] if branch else []
        status, _, err = self.ls_remote("--exit-code", remote, *refs)
        return status, err

    def contains(self, sha: str, head: str | None = None) -> bool:
        """True when commit ``sha`` is HEAD (``head`` if given) or one of its ancestors.
        Thread-safe when ``head`` is given (no shared Repo): the poller asks it."""
        if sha == (head or self.head()):
            return True
        if surely_absent(Path(self.path) / ".git", sha):  # not fetched yet: no git process
            return False
        return self._git("merge-base", "--is-ancestor", sha, "HEAD", cwd=self.path)[0] == 0

    # -- the deploy ------------------------------------------------------------
    def deploy(self, branch: str, pushes: Iterable[Push]) -> RunResult:
        """Bring the checkout to the tip of ``remote/branch`` and run post_deploy.

        Skips the fetch when every push's ``after`` is already in HEAD and the run
        that brought HEAD there finished (with no pushes, it always fetches).

        In tags mode (``config.tags`` set), ``branch`` is the full ref
        ``refs/tags/<tag>`` of the newest push to deploy; anything else (``""``)
        deploys the newest tag on the remote matching ``config.tags`` (git's version
        sort).  Only that tag is fetched, and its commit is checked out detached, with
        every guard of a branch update; the result's ``branch`` is that tag's ref.  Holds
        ``.git/deployhook.lock`` (flock), so a ``deployhook deploy`` and the daemon
        never update the checkout at once; waits for it at most ``lock_timeout``.
        Never raises for git failures: they come back as ``RunResult(ok=False)``.
        """
        pushes = list(pushes)
        start = time.monotonic()
        try:
            if not self.exists():
                result = self._deploy(branch, pushes)
            else:
                with open(Path(self.path) / ".git" / LOCK, "a") as lock:
                    if self._wait_for(lock):
                        result = self._deploy(branch, pushes)
                    else:
                        head = self.head()
                        result = RunResult(False, head, head, branch, reason=(
                            f"another deploy holds the checkout's lock ({lock.name}) for "
                            f"more than {self.config.lock_timeout:g}s"))
                        result.contains = {p.after: self.contains(p.after, head)
                                           for p in pushes}
        finally:
            self.close()  # a Repo per run: nothing of GitPython's outlives it
        result.duration = time.monotonic() - start
        return result

    def housekeep(self) -> None:
        """Do the work the last run left in :attr:`leftovers`, then run the ``git
        maintenance run --auto`` that its fetch and merge left for later (see
        ``NO_AUTO_MAINTENANCE``) in the checkout's git dir and its submodules', unless
        ``maintenance.auto`` is false there; only after a run that fetched, and only
        while nobody holds the checkout's lock (else it stays due).  Each command is
        bounded by ``git_timeout``.  Never raises."""
        while self.leftovers:
            try:
                self.leftovers.pop(0)()
            except Exception:
                log.exception("%s: the work a run left for later failed", self.path)
        if not self.maintenance_due or not self.exists():
            return
        env = git_environment(self.config.git_timeout, self.config.ssh_key)
        try:
            with open(Path(self.path) / ".git" / LOCK, "a") as lock:
                try:
                    fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    return  # a deploy runs: it fetches and leaves maintenance due again
                self.maintenance_due = False
                for git_dir in git_dirs(Path(self.path) / ".git"):
                    self._maintain(git_dir, env)
        except OSError as exc:
            log.warning("%s: git maintenance not run: %s", self.path, exc)

    def _maintain(self, git_dir: Path, env: dict[str, str]) -> None:
        """``git maintenance run --auto`` in ``git_dir`` as git would run it itself."""
        timeout, runner = self.config.git_timeout, git.Git(self.path)
        base = [f"--git-dir={git_dir}"]
        status, out, _ = run_git(runner, [*base, "config", "--type=bool", "maintenance.auto"],
                                 env, timeout)
        if status == 0 and out.strip() == "false":
            return
        status, _, err = run_git(runner, [*base, "maintenance", "run", "--auto", "--quiet"],
                                 env, timeout)
        if status != 0:
            log.warning("%s: git maintenance failed in %s: %s", self.path, git_dir,
                        redact(err.strip())[-400:])

    def _wait_for(self, lock: TextIO) -> bool:
        """Take the flock on ``lock`` within ``lock_timeout``; False when it stays held."""
        deadline = time.monotonic() + self.config.lock_timeout
        while True:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return True
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    return False
                time.sleep(0.05)

    def unfinished(self) -> bool:
        """True when a run moved (or began to move) HEAD and did not finish."""
        return (Path(self.path) / ".git" / UNFINISHED).exists()

    def _mark_unfinished(self, git_dir: Path, head: str | None) -> None:
        """Write ``git_dir/deployhook-unfinished`` atomically (it names the HEAD it
        was written at, for a person reading it).

        Raises:
            DeployFailed: it cannot be written (a full disk): HEAD must not move then.
        """
        tmp = git_dir / (UNFINISHED + ".tmp")
        try:
            tmp.write_text(f"{head or 'none'}\n")
            os.replace(tmp, git_dir / UNFINISHED)
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            raise DeployFailed(f"cannot write {git_dir / UNFINISHED}: {exc.strerror}", []) \
                from exc

    def _mark_finished(self) -> None:
        (Path(self.path) / ".git" / UNFINISHED).unlink(missing_ok=True)

    def _deploy(self, branch: str, pushes: list[Push]) -> RunResult:
        steps: list[Step] = []
        before = None
        afters = {p.after for p in pushes}
        unfinished = False
        tagged = self.config.tags is not None
        try:
            if tagged:
                branch = self._tag_to_deploy(branch, steps)
            cloned = not self.exists()
            if cloned:
                self._clone(branch, steps)
            self._repair(self._tracking(branch), steps)
            before = None if cloned else self.head()
            unfinished = self.unfinished()
            if not tagged:
                self._check_branch(branch)
            if unfinished or not self._deployed(branch, pushes, before):
                if not unfinished:
                    self._mark_unfinished(Path(self.path) / ".git", before)
                self._pre_deploy(branch, pushes, before, steps)
                self._update(branch, before, steps)
            after = self.head()
            if (after != before or unfinished) and self.config.post_deploy:
                self._post_deploy(branch, pushes, before, after, steps)
            self._mark_finished()
            result = RunResult(True, before, after, branch, steps=steps,
                               resumed=unfinished and before is not None)
        except DeployFailed as exc:
            now = self._settle(before, unfinished)
            result = RunResult(False, before, now, branch, reason=exc.reason, steps=steps)
        except BaseException:  # Ctrl-C in ``deployhook deploy``
            self._settle(before, unfinished)
            raise
        head = self.head() if self.exists() else None
        result.contains = {sha: head is not None and self.contains(sha, head)
                           for sha in afters}
        return result

    def _settle(self, before: str | None, unfinished: bool) -> str | None:
        """After a failed run: HEAD now.  When it is back where it was and the run
        began finished, the checkout is finished again (nothing was left undone)."""
        now = self.head() if self.exists() else None
        if now is not None and now == before and not unfinished:
            self._mark_finished()
        return now

    def _tracking(self, branch: str) -> str:
        """The local ref a fetch of ``branch`` updates: ``refs/remotes/REMOTE/BRANCH``,
        or in tags mode the tag's own ref (``branch`` is ``refs/tags/<tag>`` then)."""
        if self.config.tags is not None:
            return branch
        return f"refs/remotes/{self.config.remote}/{branch}"

    def _deployed(self, branch: str, pushes: list[Push], before: str | None) -> bool:
        """True when the pushes are already deployed, so no fetch is needed: each
        push's ``after`` is in HEAD; in tags mode, HEAD is detached at the commit of
        the tag, whose local ref is what the newest push of it says."""
        if not pushes or before is None:
            return False
        if self.config.tags is None:
            return all(self.contains(p.after, before) for p in pushes)
        mine = [p for p in pushes if p.ref == branch]
        return (bool(mine) and self.current_branch() is None
                and self.ref(branch) == mine[-1].after and self._commit_of(branch) == before)

    def _commit_of(self, ref: str) -> str | None:
        """The commit ``ref`` names (an annotated tag peeled), or None."""
        status, out, _ = self._git("rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}")
        return out.strip() if status == 0 else None

    def _tag_to_deploy(self, branch: str, steps: list[Step]) -> str:
        """The ref ``refs/tags/<tag>`` a tags-mode run deploys: ``branch`` when it is
        one, else the newest tag on the remote matching ``config.tags`` (git's version
        sort of the names, ``-v:refname``).

        Raises:
            DeployFailed: the remote cannot be listed, or has no matching tag.
        """
        if branch.startswith(TAG_PREFIX):
            return branch
        if self.exists():
            source, cwd = self.config.remote, None
        elif self.config.repo_url:
            source, cwd = self.config.repo_url, str(Path(self.path).parent)
        else:
            raise DeployFailed(f"{self.path} is not a git checkout and repo_url is not set",
                               steps)
        if cwd is not None:
            Path(cwd).mkdir(parents=True, exist_ok=True)
        pattern = self.config.tags or "*"
        args = ("ls-remote", "--tags", "--refs", "--sort=-v:refname", source)
        start = time.monotonic()
        status, out, err = self._git(*args, cwd=cwd)
        found = newest_tag(out, pattern)
        newest = found.ref.removeprefix(TAG_PREFIX) if found else None
        note = err if status else f"newest tag matching {pattern!r}: {newest or 'none'}"
        step = Step("list tags", redact("git " + " ".join(args)), status,
                    time.monotonic() - start, tail(redact(note.strip())))
        steps.append(step)
        if status != 0:
            raise DeployFailed(summary(step), steps)
        if newest is None:
            raise DeployFailed(f"{redact(source)} has no tag matching {pattern!r}", steps)
        return TAG_PREFIX + newest

    def _repair(self, tracking: str, steps: list[Step]) -> None:
        """Clear what a crashed git left (see repair.py); fail if git still holds a lock."""
        tip = self.ref(tracking)
        fixed = repair(Path(self.path), self._git, tip)
        if fixed.held:
            lock, pid = fixed.held[0]
            raise DeployFailed(f"{lock} is held by a running git process (pid {pid}); "
                               "the next push deploys once it has finished", steps)
        report = fixed.report()
        if report:
            log.warning("%s: %s", self.path, report)
            steps.append(Step("repair", "deployhook repair", 0, 0.0, report))

    def _check_branch(self, branch: str) -> None:
        current = self.current_branch()
        if current != branch:
            raise DeployFailed(
                f"checkout {self.path} is on {current or 'a detached HEAD'}, not {branch}; "
                f"run 'git checkout {branch}' there", [])

    def _clone(self, branch: str, steps: list[Step]) -> None:
        url = self.config.repo_url
        if not url:
            raise DeployFailed(f"{self.path} is not a git checkout and repo_url is not set", steps)
        import shutil  # the first clone only
        import tempfile

        parent = Path(self.path).parent
        parent.mkdir(parents=True, exist_ok=True)
        tmp = tempfile.mkdtemp(prefix=".deployhook-clone-", dir=parent)
        args = ["clone", "--origin", self.config.remote, "--branch",
                branch.removeprefix(TAG_PREFIX)]
        if self.config.tags is not None:  # that tag only, checked out detached
            args += ["--single-branch", "--no-tags"]
        if self.config.submodules:
            args.append("--recurse-submodules")
        try:
            self._step("clone", steps, *args, "--", url, tmp, network=True, cwd=str(parent))
            self._mark_unfinished(Path(tmp) / ".git", None)  # until post_deploy has run
            if self.config.tags is not None:  # --single-branch left a fetch of that tag
                self._git("config", f"remote.{self.config.remote}.fetch",
                          f"+refs/heads/*:refs/remotes/{self.config.remote}/*", cwd=tmp)
            os.rename(tmp, self.path)  # atomic: never a half clone at repo_path
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        self.close()

    def _update(self, branch: str, before: str | None, steps: list[Step]) -> None:
        """Fetch, move HEAD to the remote branch (in tags mode: detach it at the tag's
        commit), update the submodules.  When a step after the fetch fails, the
        checkout is put back as it was (see ``_put_back``)."""
        tracking = self._tracking(branch)
        source = branch if self.config.tags is not None else f"refs/heads/{branch}"
        self.maintenance_due = True
        self._step("fetch", steps, "fetch", "--no-tags", "--recurse-submodules=no",
                   self.config.remote, f"+{source}:{tracking}", network=True)
        if self.config.tags is not None:
            tip = self._commit_of(tracking)
            if tip is None:
                raise DeployFailed(f"tag {branch.removeprefix(TAG_PREFIX)} does not point "
                                   "to a commit", steps)
            moving = self.head() != tip or self.current_branch() is not None
        else:
            tip = tracking
            moving = self.head() != self.ref(tracking)
        changes: dict[str, Change] = {}
        clean: set[str] = set()
        if moving:
            changes = self._changes(tip)
            self._refuse_untracked_in_the_way(changes, steps)
            files = [path for path, change in changes.items() if not change.gitlink]
            clean = set(files) - self._dirty(files)  # a submodule's own state is no file
        try:
            if moving:
                self._move_to(tip, steps)
            if self.config.submodules and (Path(self.path) / ".gitmodules").exists():
                if before is None or ".gitmodules" in changes:  # URLs may have changed
                    self._step("submodule sync", steps, "submodule", "sync", "--recursive")
                command, env = update_command(self._git)
                self._step("submodule update", steps, *command, "--init", "--recursive",
                           network=True, env=env)
        except DeployFailed as exc:
            if before is None:
                raise
            moved = self.head() != before
            self._put_back(before, tip, clean if moving else None, steps)
            if not moved and moving:
                raise
            where = ("checkout restored to " + before if self.head() == before
                     else f"could not put HEAD back to {before} (see the restore step)")
            raise DeployFailed(f"{exc.reason}; {where}", steps) from exc

    def _put_back(self, before: str, tracking: str, clean: set[str] | None,
                  steps: list[Step]) -> None:
        """Undo a failed update: clear what a killed git left (stale locks, a merge or
        rebase in progress), then move HEAD, the work tree and the submodules back to
        ``before``; when HEAD never moved, put back the files a cut-short update wrote
        (``clean``: see ``undo_partial_update``; None when no update was tried)."""
        fixed = repair(Path(self.path), self._git, None)
        if fixed.report():
            steps.append(Step("repair", "deployhook repair", 0, 0.0, fixed.report()))
        if self.head() != before or clean is None:
            self._restore(before, steps)
        else:  # a full disk can stop git half-way through the work tree
            undo_partial_update(Path(self.path), self._git, tracking, clean)

    def _move_to(self, tracking: str, steps: list[Step]) -> None:
        """Update HEAD and the work tree to ``tracking`` per ``pull_strategy``; in tags
        mode detach HEAD at that commit (``--force`` only under ``reset``: otherwise
        local changes are carried over, or the checkout refuses to overwrite them)."""
        strategy = self.config.pull_strategy
        if self.config.tags is not None:
            force = ("--force",) if strategy == "reset" else ()
            self._step("checkout", steps, "checkout", "--detach", *force, tracking, "--")
        elif strategy == "ff-only":
            self._step("merge", steps, "merge", "--ff-only", tracking)
        elif strategy == "merge":
            self._guarded("merge", steps, ("merge", "--no-edit", tracking), ("merge", "--abort"))
        elif strategy == "rebase":  # --fork-point: commits a force-push removed are not replayed
            self._guarded("rebase", steps, ("rebase", "--fork-point", tracking),
                          ("rebase", "--abort"))
        else:
            self._step("reset", steps, "reset", "--hard", tracking)

    def _changes(self, tracking: str) -> dict[str, Change]:
        """path -> what changes there from HEAD to ``tracking`` (git's status letter: A,
        M, D, T; whether a submodule's commit is involved)."""
        fields = self._git("diff", "--raw", "-z", "--no-renames", "HEAD",
                           tracking)[1].split("\0")
        changes = {}
        for meta, path in zip(fields[::2], fields[1::2], strict=False):
            words = meta.split()
            if path and len(words) == 5:  # :old-mode new-mode old-id new-id status
                changes[path] = Change(words[4], GITLINK in (words[0][1:], words[1]))
        return changes

    def _dirty(self, paths: list[str]) -> set[str]:
        """Those of ``paths`` with local changes (against HEAD); no git process for none."""
        if not paths:
            return set()
        return set(paths_of(self._git, "diff", "--name-only", "-z", "HEAD", *only(paths)))

    def _refuse_untracked_in_the_way(self, changes: dict[str, Change],
                                     steps: list[Step]) -> None:
        """Fail, naming them, when untracked or ignored files sit where the update adds
        files (git would overwrite ignored ones, and ``reset --hard`` untracked ones)."""
        in_the_way = sorted(path for path, change in changes.items()
                            if change.status == "A" and os.path.lexists(Path(self.path, path)))
        if in_the_way:
            raise DeployFailed("update refused: these untracked working tree files would be "
                               f"overwritten: {', '.join(in_the_way[:20])}; move them away",
                               steps)

    def _guarded(self, name: str, steps: list[Step], args: tuple[str, ...],
                 abort: tuple[str, ...]) -> None:
        """Run a merge or rebase; on failure abort it so no half-done state remains."""
        try:
            self._step(name, steps, *args, identity=True)
        except DeployFailed:
            self._git(*NO_HOOKS, *abort)
            raise

    def _restore(self, before: str, steps: list[Step]) -> None:
        """Move HEAD and the work tree back to ``before``, keeping local changes
        (``reset --keep``; ``--hard`` under the reset strategy).  Hooks are off: the
        hook that made the update fail must not stop its undo."""
        mode = "--hard" if self.config.pull_strategy == "reset" else "--keep"
        try:
            self._step("restore", steps, *NO_HOOKS, "reset", "-q", mode, before)
            self._step("restore submodules", steps, *NO_HOOKS, "submodule", "update",
                       "--init", "--recursive", "--no-fetch")
        except DeployFailed:
            pass  # reported in steps; the deploy is already failing

    def _post_deploy(self, branch: str, pushes: list[Push], before: str | None,
                     after: str | None, steps: list[Step]) -> None:
        tag = branch.removeprefix(TAG_PREFIX) if self.config.tags else ""
        env = postdeploy.push_env(self.path, self.current_branch() or "", pushes, before,
                                  after, tag)
        assert self.config.post_deploy is not None
        step = postdeploy.run(self.config.post_deploy, self.path, env,
                              self.config.post_deploy_timeout, hidden=self._secrets(),
                              on_output=self._live("post_deploy"))
        steps.append(step)
        if not step.ok:
            raise DeployFailed(
                f"updated to {after} but {summary(step)} (exit status {step.status})", steps)

    def _live_tree(self) -> str:
        """Where the site is served from: the checkout, or in releases mode the release
        ``current`` points to (the checkout itself before the first release)."""
        config = self.config
        if config.deploy_mode == "releases" and config.releases_path:
            current = Path(config.releases_path) / "current"
            if current.is_dir():
                return os.path.realpath(current)
        return self.path

    def _pre_deploy(self, branch: str, pushes: list[Push], before: str | None,
                    steps: list[Step]) -> None:
        """Run ``pre_deploy`` (when set) in the live tree (:meth:`_live_tree`) before HEAD
        moves; not before a first clone (there was nothing to protect).

        Raises:
            DeployFailed: it failed; its reason says so and that nothing was changed.
        """
        if self.config.pre_deploy is None or before is None:
            return
        tag = branch.removeprefix(TAG_PREFIX) if self.config.tags else ""
        env = postdeploy.push_env(self.path, self.current_branch() or "", pushes, before, None,
                                  tag)
        step = postdeploy.run(self.config.pre_deploy, self._live_tree(), env,
                              self.config.pre_deploy_timeout, hidden=self._secrets(),
                              name="pre_deploy", on_output=self._live("pre_deploy"))
        steps.append(step)
        if not step.ok:
            raise DeployFailed(f"{summary(step)} (exit status {step.status}); not updated, "
                               f"HEAD stays at {before}", steps)

    def _live(self, name: str) -> Callable[[str], None] | None:
        """What passes step ``name``'s output to :attr:`live` as it arrives (None: unwatched)."""
        live = self.live
        return None if live is None else (lambda text: live(name, text))

    def _secrets(self) -> list[str]:
        """The webhook secrets, to mask in post_deploy's output (none when unreadable)."""
        try:
            return [value.decode("utf-8", "replace") for value in
                    SecretSource(self.config.secret_file, self.config.secret).all()]
        except SecretMissing:
            return []

    # -- running git ---------------------------------------------------------------
    def _step(self, name: str, steps: list[Step], *args: str, network: bool = False,
              identity: bool = False, cwd: str | None = None,
              env: dict[str, str] | None = None) -> Step:
        """Run one git command as a recorded step; raise DeployFailed if it fails (a
        command killed after ``git_timeout`` fails with "timed out after Ns")."""
        start = time.monotonic()
        status, out, err = self._git(*args, network=network, identity=identity, cwd=cwd,
                                     env=env)
        elapsed = time.monotonic() - start
        step = Step(name, redact("git " + " ".join(args)), status, elapsed,
                    tail(redact((out + "\n" + err).strip())))
        steps.append(step)
        if status != 0:
            raise DeployFailed(summary(step), steps)
        return step

    def _git(self, *args: str, network: bool = False, identity: bool = False,
             cwd: str | None = None, env: dict[str, str] | None = None
             ) -> tuple[int, str, str]:
        """Run git and return (status, stdout, stderr); never raises for exit status.

        Runs through GitPython's command layer (:func:`run_git`): the checkout's Repo
        (``self.repo.git``), or a ``git.Git`` in ``cwd`` when given.  Every command, local
        ones and the hooks git runs included, is bounded by ``git_timeout``: then it is
        killed with all its descendants and the status is 124 with "fatal: timed out after
        Ns" in stderr.  ``network``: show git's progress on our stderr when
        ``self.progress`` is set.  ``env``: more environment.
        """
        env = {**self._env, **(env or {})}
        if identity:
            env.update(self._identity())
        progress = network and self.progress
        if progress:
            split = 2 if args[0] in ("submodule", "submodule--helper") else 1
            args = (*args[:split], "--progress", *args[split:])
        runner = self.repo.git if cwd is None else git.Git(cwd)
        return run_git(runner, args, env, self.config.git_timeout,
                       sys.stderr.buffer if progress else None)

    def _identity(self) -> dict[str, str]:
        """A committer identity for merge and rebase when the checkout has none."""
        if self._git("config", "user.email")[0] == 0:
            return {}
        return {"GIT_AUTHOR_NAME": "deployhook", "GIT_AUTHOR_EMAIL": "deployhook@localhost",
                "GIT_COMMITTER_NAME": "deployhook", "GIT_COMMITTER_EMAIL": "deployhook@localhost"}


def commit_subject(path: str, sha: str) -> str | None:
    """The subject (first line of the message) of commit ``sha`` (40 hex digits; a tag
    is peeled to its commit) in the repository at ``path``, or None when there is no
    repository there or no such commit in it (a push that was never fetched).

    Opens a Repo of its own (GitPython's object layer: one ``git cat-file`` process,
    ended before returning), so it may run beside a deploy of the same checkout; it
    blocks: call it off the IOLoop."""
    if not re.fullmatch(r"[0-9a-f]{40}", sha):
        return None
    repo = refs.open_repo(path)
    if repo is None:
        return None
    try:
        repo.git.update_environment(**git_environment(60.0))
        subject = repo.commit(sha).summary
    except (ValueError, OSError, git.exc.GitError):
        return None
    finally:
        repo.close()
    return subject.decode("utf-8", "replace") if isinstance(subject, bytes) else subject


def resolve_target(checkout: Checkout, config: TargetConfig
                   ) -> tuple[str | None, str | None, str | None]:
    """(branch, repository, HEAD) for ``config``; blocking, run it in the executor.

    In tags mode (``config.tags`` set) the branch is None: any HEAD, a detached one
    included, is accepted.

    Raises:
        ConfigError: no checkout and no ``repo_url``, or a detached HEAD and no ``branch``
            (and no ``tags``).
    """
    tagged = config.tags is not None  # HEAD is detached at a tag: no branch is deployed
    repository, branch = config.repository, None if tagged else config.branch
    if not checkout.exists():
        if not config.repo_url:
            raise ConfigError(f"repo_path {config.repo_path} is not a git checkout; "
                              "clone it there or set repo_url")
        return branch, repository or github_repository(config.repo_url), None
    if not tagged:
        branch = branch or checkout.current_branch()
    if branch is None and not tagged:
        raise ConfigError(f"{config.repo_path} has a detached HEAD; set branch in the config")
    return branch, repository or github_repository(checkout.remote_url()), checkout.head()
