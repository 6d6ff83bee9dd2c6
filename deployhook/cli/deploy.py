"""``deployhook deploy``: one deploy of one target now, recorded like the daemon's.

The run is :func:`deployhook.service.runs.run_deploy` with trigger ``cli``, the
orchestration the daemon uses; the checkout's flock keeps it from ever overlapping
a deploy of the daemon.  With several targets, ``--target`` names the one to deploy.
"""

from __future__ import annotations

import argparse
import fcntl
import json
import os
import sqlite3
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from deployhook.cli import fleet
from deployhook.cli.common import (
    CommandFailed,
    add_command,
    base_url,
    choose_target,
    remote_heads,
    short,
    user,
)
from deployhook.errors import ConfigError
from deployhook.git.checkout import Checkout, RunResult, resolve_target
from deployhook.git.steps import Step
from deployhook.record.store import Store
from deployhook.redact import redact
from deployhook.service.reload import effective_mode
from deployhook.service.runs import INTERRUPTED, run_deploy, run_failed
from deployhook.settings import Config, TargetConfig
from deployhook.text import printable

T = TypeVar("T")


def add_parser(commands: Any) -> None:
    """Add ``deploy`` to the ``deployhook`` subparsers."""
    add_command(commands, "deploy", "deploy now (clone first when repo_path does not exist), "
                "recorded", deploy)


def deploy(config: Config, args: argparse.Namespace) -> int:
    """``deployhook deploy``: one deploy now (trigger ``cli``), recorded; 0 when it worked,
    1 when it failed, 2 for a missing or unknown ``--target``, 130 on Ctrl-C."""
    target = choose_target(config, args.target, required=True)
    assert target is not None  # required=True
    checkout = Checkout(target)
    try:
        branch, repository, head = resolve_target(checkout, target)
    except ConfigError as exc:
        print(f"deployhook: {exc}", file=sys.stderr)
        return 1
    store = _writable_record(config)
    try:
        announce = _Announcer(config, target, checkout, repository, head, store)
        if branch is None:  # not cloned yet and no branch configured: the remote's default
            branch, failure = _default_branch(target, checkout)
            if failure is not None:
                run_failed(announce, target=target.name, trigger="cli", head=head,
                           reason=failure.reason, pushers=[user()],
                           steps=[failure.step] if failure.step else [])
                print(printable(f"deploy FAILED: {failure.reason}"))
                return 1
        checkout.progress = sys.stderr.isatty()  # a first clone can take minutes
        _warn_if_not_owner(checkout)
        _say_if_waiting(checkout)
        announce.branch = branch
        try:
            result = run_deploy(checkout, announce, target=target.name, trigger="cli",
                                branch=branch, pushers=[user()])
            checkout.housekeep()  # the git maintenance the run left for later
        except KeyboardInterrupt:
            print(f"\ndeploy FAILED: {INTERRUPTED}")
            return 130
    finally:
        checkout.close()
        if store is not None:
            store.close()
    return _report(config, target, args, branch, head, result)


def _default_branch(target: TargetConfig, checkout: Checkout
                    ) -> tuple[str, CommandFailed | None]:
    """The remote's default branch, or ("", why not)."""
    try:
        branch = remote_heads(target, checkout).default_branch
    except CommandFailed as exc:
        return "", exc
    if branch is None:
        return "", CommandFailed("the remote names no default branch; set branch")
    return branch, None


class CliRecord:
    """The :class:`~deployhook.service.runs.RunLog` of a command run by hand, over the
    store it opened (None: not recorded): a failing record is a warning, never a failed
    deploy."""

    def __init__(self, store: Store | None) -> None:
        self.store = store

    def start_run(self, trigger: str, branch: str, head_before: str | None,
                  rows: list[int], pushers: list[str], target: str) -> int | None:
        return self._write(lambda s: s.start_run(trigger, branch, head_before, rows, pushers,
                                                 target))

    def live_output(self, run_id: int, step: str, output: str) -> None:
        self._write(lambda s: s.live_output(run_id, step, output))

    def finish_run(self, run_id: int, ok: bool, head_before: str | None,
                   head_after: str | None, reason: str, steps: list[Step]) -> None:
        self._write(lambda s: s.finish_run(run_id, ok, head_before, head_after, reason, steps))

    def _write(self, fn: Callable[[Store], T]) -> T | None:
        if self.store is None:
            return None
        try:
            return fn(self.store)
        except (sqlite3.Error, RuntimeError) as exc:
            print(f"deployhook: warning: cannot write the deployment record: {exc}",
                  file=sys.stderr)
            return None


class _Announcer(CliRecord):
    """The record :func:`run_deploy` writes through: the run starting is followed by the
    line saying what is deployed and the run's id."""

    def __init__(self, config: Config, target: TargetConfig, checkout: Checkout,
                 repository: str | None, head: str | None, store: Store | None) -> None:
        super().__init__(store)
        self.config, self.target, self.checkout = config, target, checkout
        self.repository, self.head = repository, head
        self.branch: str | None = None

    def start_run(self, trigger: str, branch: str, head_before: str | None,
                  rows: list[int], pushers: list[str], target: str) -> int | None:
        run_id = super().start_run(trigger, branch, head_before, rows, pushers, target)
        self._announce(run_id)
        return run_id

    def _announce(self, run_id: int | None) -> None:
        target = self.target
        source = self.repository or redact(
            (self.checkout.remote_url() if self.head else target.repo_url) or target.remote)
        which = f"target {target.name}: " if len(self.config.targets) > 1 else ""
        print(f"deployhook: {which}{'deploying' if self.checkout.exists() else 'cloning'} "
              f"{self.branch or 'the default branch'} of {source} into {target.repo_path} "
              f"(run {run_id if run_id is not None else 'not recorded'})", flush=True)


def _report(config: Config, target: TargetConfig, args: argparse.Namespace, branch: str,
            head: str | None, result: RunResult) -> int:
    """Print the steps and the outcome of ``result``; the exit status."""
    for step in result.steps:
        state = "ok" if step.ok else f"FAILED ({step.status})"
        print(printable(f"  {step.name:<18} {state:<11} {step.duration:6.2f}s  {step.command}"))
    moved = f"{short(result.head_before, 12)} -> {short(result.head_after, 12)}"
    if not result.ok:
        print(printable(f"deploy FAILED after {result.duration:.2f}s: {result.reason}"))
        print(f"HEAD {moved}" if result.head_before != result.head_after
              else f"HEAD stays at {short(result.head_after, 12)}")
        if result.run_id is not None:
            print(f"details: deployhook show {result.run_id} --config {args.config}")
        return 1
    told = fleet.tell(config, target.name, result.head_after, branch if branch.startswith(
        "refs/tags/") else f"refs/heads/{branch}", "deploy")
    if result.deployed:
        done = "finished the unfinished deploy of" if result.resumed else (
            "deployed" if head else "cloned")
        print(f"{done} {branch}: {moved} in {result.duration:.2f}s")
        note = _daemon_note(config, target)
        if note:
            print(note)
    else:
        print(f"already up to date: {branch} at {short(result.head_after, 12)} "
              f"(checked in {result.duration:.2f}s)")
    if told:
        print(told)
    return 0


def _warn_if_not_owner(checkout: Checkout) -> None:
    """Warn when the checkout belongs to someone else (say, the daemon's user): the files
    git writes now would belong to us, and the daemon might not update them later."""
    try:
        owner = (Path(checkout.path) / ".git").stat().st_uid
    except OSError:
        return
    if owner != os.geteuid():
        print(f"deployhook: warning: {checkout.path} belongs to uid {owner}, not to you "
              f"(uid {os.geteuid()}); run this as its owner (sudo -u <user> deployhook "
              "deploy) so the daemon can keep updating it", file=sys.stderr)


def _say_if_waiting(checkout: Checkout) -> None:
    """Tell the user when the daemon's deploy holds the checkout (``deploy`` then waits)."""
    path = Path(checkout.path) / ".git" / "deployhook.lock"
    if not path.parent.is_dir():
        return
    with open(path, "a") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            print("deployhook: another deploy (the daemon's) is running; waiting for it",
                  flush=True)
        else:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _daemon_note(config: Config, target: TargetConfig) -> str:
    """What a running daemon makes of a checkout that moved under it ("" when the
    checkout is another site's and ``reload = "auto"`` leaves the daemon alone)."""
    mode = effective_mode(target.reload, target.repo_path)
    if mode == "none":
        if target.reload == "auto":
            return ""  # another site's checkout: the daemon's code is not concerned
        return "note: reload = none: post_deploy (if any) did the restarting"
    health = _health(config)
    if health is None:
        return (f"note: no daemon answers at {base_url(config)}; "
                "the next 'deployhook serve' runs the new code")
    then = ("re-executes itself" if mode == "autoreload"
            else "exits for its supervisor to restart it")
    return (f"note: the daemon at {base_url(config)} (pid {health.get('pid', '?')}) was not "
            f"reloaded and still runs the code it started with; it {then} only after its "
            "next deploy that moves HEAD. Restart it to run the new code now, or deploy with "
            "'deployhook send --event push' so the daemon deploys and reloads itself.")


def _health(config: Config) -> dict[str, Any] | None:
    """The daemon's ``/health`` answer, or None when nothing answers quickly."""
    import urllib.request  # only for this command: ``serve`` imports no HTTP client

    try:
        with urllib.request.urlopen(base_url(config) + "/health", timeout=2) as response:
            body = json.loads(response.read() or b"{}")
    except (OSError, ValueError):
        return None
    return body if isinstance(body, dict) else None


def _writable_record(config: Config) -> Store | None:
    """The record for a deploy (created like the daemon does); None, with a warning, when
    it cannot be used: the deploy still runs."""
    try:
        return Store(config.state_db)
    except (sqlite3.Error, RuntimeError, OSError) as exc:
        print(f"deployhook: warning: cannot use the deployment record {config.state_db}: "
              f"{exc}; this run is not recorded", file=sys.stderr)
        return None
