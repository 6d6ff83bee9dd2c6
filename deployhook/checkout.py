"""Blocking git work on one checkout: clone, fetch, update, submodules, post_deploy.

Everything here blocks and must run in the git worker's executor, never on
the IOLoop.  A failed update leaves the checkout as it was: a merge or rebase
is aborted, and a failed submodule update moves HEAD back.  Local changes are
only ever discarded by the ``reset`` strategy.
"""

from __future__ import annotations

import fcntl
import logging
import os
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import git
from git.refs.symbolic import SymbolicReference

from . import postdeploy
from .delivery import Push
from .errors import SecretMissing
from .repair import only, paths_of, repair, undo_partial_update
from .secret import SecretSource
from .settings import Config
from .steps import Step, redact, summary, tail

log = logging.getLogger("deployhook.checkout")
_GITHUB_URL = re.compile(
    r"^(?:https?://(?:[^@/]+@)?github\.com/|(?:ssh://)?git@github\.com[:/])"
    r"(?P<name>[\w.-]+/[\w.-]+?)(?:\.git)?/?$"
)
FORBIDDEN_PROTOCOLS = ("protocol.ext.allow", "protocol.fd.allow")  # set to "never"


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

    @property
    def moved(self) -> bool:
        return self.ok and self.head_before != self.head_after


def git_environment(timeout: float) -> dict[str, str]:
    """Environment for every git command: git never prompts or hangs on a dead peer, and
    never uses the ``ext::`` or ``fd::`` transports whatever the user's git config says
    (``GIT_CONFIG_*`` is configuration given on the command line: it beats every config
    file and git passes it on to the commands it runs for submodules).  Settings already
    given that way in ``$GIT_CONFIG_COUNT`` are kept."""
    ssh = os.environ.get("GIT_SSH_COMMAND") or (
        f"ssh -o BatchMode=yes -o ConnectTimeout={max(1, int(timeout))}"
    )
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
    for key in FORBIDDEN_PROTOCOLS:
        env[f"GIT_CONFIG_KEY_{index}"] = key
        env[f"GIT_CONFIG_VALUE_{index}"] = "never"
        index += 1
    env["GIT_CONFIG_COUNT"] = str(index)
    allowed = os.environ.get("GIT_ALLOW_PROTOCOL")  # it would beat the config above
    if allowed is not None:
        env["GIT_ALLOW_PROTOCOL"] = ":".join(
            name for name in allowed.split(":") if name not in ("ext", "fd"))
    return env


def github_repository(url: str | None) -> str | None:
    """``owner/name`` for a GitHub clone URL (https, ssh or scp form), else None."""
    match = _GITHUB_URL.match(url or "")
    return match.group("name") if match else None


class Checkout:
    """One deployed checkout.  Not thread-safe: the git worker runs one deploy at a time."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.path = config.repo_path
        self._env = git_environment(config.git_timeout)
        self._repo: git.Repo | None = None
        self.progress = False  # True: network steps show git's progress on our stderr

    # -- facts ------------------------------------------------------------
    def exists(self) -> bool:
        return (Path(self.path) / ".git").exists()

    @property
    def repo(self) -> git.Repo:
        if self._repo is None:
            self._repo = git.Repo(self.path)
            self._repo.git.update_environment(**self._env)
        return self._repo

    def close(self) -> None:
        if self._repo is not None:
            self._repo.close()
            self._repo = None

    def current_branch(self) -> str | None:
        """The checked-out branch, or None when HEAD is detached (read from .git, no git
        process)."""
        head = self.repo.head
        return None if head.is_detached else head.reference.name

    def remote_url(self) -> str | None:
        status, out, _ = self._git("remote", "get-url", self.config.remote)
        return out.strip() if status == 0 else None

    def head(self) -> str | None:
        """HEAD's commit SHA, or None before the first commit."""
        return self.ref("HEAD")

    def ref(self, name: str) -> str | None:
        """The SHA ``name`` (a full ref or HEAD) points to, read from .git; None if unset."""
        try:
            return SymbolicReference.dereference_recursive(self.repo, name)
        except ValueError:
            return None

    def ls_remote(self, *args: str) -> tuple[int, str, str]:
        """``git ls-remote ARGS`` within the network timeout, from the checkout (or its
        parent folder before the first clone): (exit status, stdout, stderr)."""
        cwd = None if self.exists() else str(Path(self.path).parent)
        return self._git("ls-remote", *args, network=True, cwd=cwd)

    def probe_remote(self, remote: str, branch: str | None) -> tuple[int, str]:
        """Whether ``remote`` answers and has ``branch``: (exit status, stderr); 2 = no
        such branch."""
        refs = [f"refs/heads/{branch}"] if branch else []
        status, _, err = self.ls_remote("--exit-code", remote, *refs)
        return status, err

    def contains(self, sha: str, head: str | None = None) -> bool:
        """True when commit ``sha`` is HEAD (``head`` if given) or one of its ancestors."""
        if sha == (head or self.head()):
            return True
        return self._git("merge-base", "--is-ancestor", sha, "HEAD")[0] == 0

    # -- the deploy ------------------------------------------------------------
    def deploy(self, branch: str, pushes: Iterable[Push]) -> RunResult:
        """Bring the checkout to the tip of ``remote/branch`` and run post_deploy.

        Skips the fetch when every push's ``after`` is already in HEAD (with no
        pushes, it always fetches).  Holds ``.git/deployhook.lock`` (flock), so a
        ``deployhook deploy`` and the daemon never update the checkout at once.
        Never raises for git failures: they come back as ``RunResult(ok=False)``.
        """
        pushes = list(pushes)
        start = time.monotonic()
        if not self.exists():
            result = self._deploy(branch, pushes)
        else:
            with open(Path(self.path) / ".git" / "deployhook.lock", "a") as lock:
                fcntl.flock(lock, fcntl.LOCK_EX)
                result = self._deploy(branch, pushes)
        result.duration = time.monotonic() - start
        return result

    def _deploy(self, branch: str, pushes: list[Push]) -> RunResult:
        steps: list[Step] = []
        before = None
        afters = {p.after for p in pushes}
        try:
            cloned = not self.exists()
            if cloned:
                self._clone(branch, steps)
            self._repair(branch, steps)
            before = None if cloned else self.head()
            self._check_branch(branch)
            if not afters or not all(self.contains(sha, before) for sha in afters):
                self._update(branch, before, steps)
            after = self.head()
            if after != before and self.config.post_deploy:
                self._post_deploy(pushes, before, after, steps)
            result = RunResult(True, before, after, branch, steps=steps)
        except DeployFailed as exc:
            result = RunResult(False, before, self.head() if self.exists() else None, branch,
                               reason=exc.reason, steps=steps)
        head = self.head() if self.exists() else None
        result.contains = {sha: head is not None and self.contains(sha, head)
                           for sha in afters}
        return result

    def _repair(self, branch: str, steps: list[Step]) -> None:
        """Clear what a crashed git left (see repair.py); fail if git still holds a lock."""
        tip = self.ref(f"refs/remotes/{self.config.remote}/{branch}")
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
        parent = Path(self.path).parent
        parent.mkdir(parents=True, exist_ok=True)
        tmp = tempfile.mkdtemp(prefix=".deployhook-clone-", dir=parent)
        args = ["clone", "--origin", self.config.remote, "--branch", branch]
        if self.config.submodules:
            args.append("--recurse-submodules")
        try:
            self._step("clone", steps, *args, "--", url, tmp, network=True, cwd=str(parent))
            os.rename(tmp, self.path)  # atomic: never a half clone at repo_path
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        self.close()

    def _update(self, branch: str, before: str | None, steps: list[Step]) -> None:
        remote = self.config.remote
        tracking = f"refs/remotes/{remote}/{branch}"
        self._step("fetch", steps, "fetch", "--no-tags", "--recurse-submodules=no", remote,
                   f"+refs/heads/{branch}:{tracking}", network=True)
        changes: dict[str, str] = {}
        if self.head() != self.ref(tracking):
            changes = self._changes(tracking)
            self._refuse_untracked_in_the_way(changes, steps)
            clean = set(changes) - self._dirty(changes)
            try:
                self._move_to(tracking, steps)
            except DeployFailed:  # a full disk can stop git half-way through the work tree
                undo_partial_update(Path(self.path), self._git, tracking, clean)
                raise
        if self.config.submodules and (Path(self.path) / ".gitmodules").exists():
            try:
                if before is None or ".gitmodules" in changes:  # URLs may have changed
                    self._step("submodule sync", steps, "submodule", "sync", "--recursive")
                self._step("submodule update", steps, "submodule", "update", "--init",
                           "--recursive", network=True)
            except DeployFailed as exc:
                self._restore(before, steps)
                raise DeployFailed(exc.reason + f"; checkout restored to {before}", steps) from exc

    def _move_to(self, tracking: str, steps: list[Step]) -> None:
        """Update HEAD and the work tree to ``tracking`` per ``pull_strategy``."""
        strategy = self.config.pull_strategy
        if strategy == "ff-only":
            self._step("merge", steps, "merge", "--ff-only", tracking)
        elif strategy == "merge":
            self._guarded("merge", steps, ("merge", "--no-edit", tracking), ("merge", "--abort"))
        elif strategy == "rebase":  # --fork-point: commits a force-push removed are not replayed
            self._guarded("rebase", steps, ("rebase", "--fork-point", tracking),
                          ("rebase", "--abort"))
        else:
            self._step("reset", steps, "reset", "--hard", tracking)

    def _changes(self, tracking: str) -> dict[str, str]:
        """path -> git's status letter (A, M, D, ...) from HEAD to ``tracking``."""
        fields = self._git("diff", "--name-status", "-z", "--no-renames", "HEAD",
                           tracking)[1].split("\0")
        return {path: status for status, path in zip(fields[::2], fields[1::2], strict=False)
                if path}

    def _dirty(self, paths: Iterable[str]) -> set[str]:
        """Those of ``paths`` with local changes (against HEAD)."""
        paths = list(paths)
        return set(paths_of(self._git, "diff", "--name-only", "-z", "HEAD", *only(paths)))

    def _refuse_untracked_in_the_way(self, changes: dict[str, str], steps: list[Step]) -> None:
        """Fail, naming them, when untracked or ignored files sit where the update adds
        files (git would overwrite ignored ones, and ``reset --hard`` untracked ones)."""
        in_the_way = sorted(path for path, status in changes.items()
                            if status == "A" and os.path.lexists(Path(self.path, path)))
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
            self._git(*abort)
            raise

    def _restore(self, before: str | None, steps: list[Step]) -> None:
        """Move HEAD back to ``before`` after a failed submodule update."""
        if before is None:
            return
        mode = "--hard" if self.config.pull_strategy == "reset" else "--keep"
        try:
            self._step("restore", steps, "reset", mode, before)
            self._step("restore submodules", steps, "submodule", "update", "--init",
                       "--recursive", "--no-fetch")
        except DeployFailed:
            pass  # reported in steps; the deploy is already failing

    def _post_deploy(self, pushes: list[Push], before: str | None, after: str | None,
                     steps: list[Step]) -> None:
        last = pushes[-1] if pushes else None
        env = {
            "DEPLOYHOOK_REPO_PATH": self.path,
            "DEPLOYHOOK_BRANCH": self.current_branch() or "",
            "DEPLOYHOOK_HEAD_BEFORE": before or "",
            "DEPLOYHOOK_HEAD_AFTER": after or "",
            "DEPLOYHOOK_REF": last.ref if last else "",
            "DEPLOYHOOK_BEFORE": last.before if last else "",
            "DEPLOYHOOK_AFTER": last.after if last else "",
            "DEPLOYHOOK_PUSHER": last.pusher if last else "",
            "DEPLOYHOOK_REPOSITORY": last.repository if last else "",
            "DEPLOYHOOK_DELIVERY": ",".join(p.delivery_id for p in pushes),
        }
        assert self.config.post_deploy is not None
        step = postdeploy.run(self.config.post_deploy, self.path, env,
                              self.config.post_deploy_timeout, hidden=self._secrets())
        steps.append(step)
        if not step.ok:
            raise DeployFailed(
                f"updated to {after} but {summary(step)} (exit status {step.status})", steps)

    def _secrets(self) -> list[str]:
        """The webhook secret, to mask in post_deploy's output (none when unreadable)."""
        try:
            return [SecretSource(self.config.secret_file, self.config.secret).get()
                    .decode("utf-8", "replace")]
        except SecretMissing:
            return []

    # -- running git ---------------------------------------------------------------
    def _step(self, name: str, steps: list[Step], *args: str, network: bool = False,
              identity: bool = False, cwd: str | None = None) -> Step:
        """Run one git command as a recorded step; raise DeployFailed if it fails."""
        start = time.monotonic()
        status, out, err = self._git(*args, network=network, identity=identity, cwd=cwd)
        elapsed = time.monotonic() - start
        if network and status != 0 and elapsed >= self.config.git_timeout:
            err += f"\nfatal: timed out after {self.config.git_timeout:g}s"
        step = Step(name, redact("git " + " ".join(args)), status, elapsed,
                    tail(redact((out + "\n" + err).strip())))
        steps.append(step)
        if status != 0:
            raise DeployFailed(summary(step), steps)
        return step

    def _git(self, *args: str, network: bool = False, identity: bool = False,
             cwd: str | None = None) -> tuple[int, str, str]:
        """Run git and return (status, stdout, stderr); never raises for exit status."""
        env = dict(self._env)
        if identity:
            env.update(self._identity())
        if network and self.progress:
            return self._git_with_progress(args, env, cwd)
        runner = git.Git(cwd) if cwd else self.repo.git
        status, out, err = runner.execute(
            ["git", *args], with_extended_output=True, with_exceptions=False,
            kill_after_timeout=self.config.git_timeout if network else None,
            env=env, stdout_as_string=True,
        )
        return status if isinstance(status, int) else 1, str(out), str(err)

    def _git_with_progress(self, args: tuple[str, ...], env: dict[str, str],
                           cwd: str | None) -> tuple[int, str, str]:
        """Run a network command with ``--progress`` and its stderr on our terminal."""
        split = 2 if args[0] == "submodule" else 1
        command = ["git", *args[:split], "--progress", *args[split:]]
        try:
            proc = subprocess.run(command, cwd=cwd or self.path, env={**os.environ, **env},
                                  stdout=subprocess.PIPE, text=True,
                                  timeout=self.config.git_timeout)
        except subprocess.TimeoutExpired:
            return 124, "", "(progress was shown on the terminal)"
        return proc.returncode, proc.stdout, "(progress was shown on the terminal)"

    def _identity(self) -> dict[str, str]:
        """A committer identity for merge and rebase when the checkout has none."""
        if self._git("config", "user.email")[0] == 0:
            return {}
        return {"GIT_AUTHOR_NAME": "deployhook", "GIT_AUTHOR_EMAIL": "deployhook@localhost",
                "GIT_COMMITTER_NAME": "deployhook", "GIT_COMMITTER_EMAIL": "deployhook@localhost"}
