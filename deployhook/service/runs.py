"""One deploy run, recorded: the same orchestration for the daemon's worker, recovery
and ``deployhook deploy``; and one rollback, recorded, for ``deployhook rollback`` and
a fleet's rollback.

Blocking: call :func:`run_deploy` from a git thread (the daemon) or the CLI's main
thread.  The record is written through a :class:`RunLog` (the daemon's
:class:`~deployhook.record.recorder.ThreadRecord`, the CLI's own store), whose
methods give None when the record cannot be used: a failing record never stops a
deploy.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from typing import Protocol

from deployhook.errors import SecretMissing
from deployhook.forges.delivery import Push
from deployhook.git import postdeploy, releases
from deployhook.git.checkout import Checkout, RunResult
from deployhook.git.steps import Step
from deployhook.redact import redact
from deployhook.secret import SecretSource
from deployhook.settings import TargetConfig

log = logging.getLogger("deployhook.runs")
INTERRUPTED = "interrupted by the user (Ctrl-C)"


class RunLog(Protocol):
    """Where a run is recorded; each method gives None when the record cannot be used."""

    def start_run(self, trigger: str, branch: str, head_before: str | None,
                  rows: list[int], pushers: list[str], target: str) -> int | None:
        """Record a run starting; its id."""

    def live_output(self, run_id: int, step: str, output: str) -> None:
        """Keep a running step's output so far."""

    def finish_run(self, run_id: int, ok: bool, head_before: str | None,
                   head_after: str | None, reason: str, steps: list[Step]) -> None:
        """Record how a run ended."""


class Unrecorded:
    """A :class:`RunLog` that records nothing (a benchmark, a run without a record)."""

    def start_run(self, trigger: str, branch: str, head_before: str | None,
                  rows: list[int], pushers: list[str], target: str) -> int | None:
        return None

    def live_output(self, run_id: int, step: str, output: str) -> None:
        return None

    def finish_run(self, run_id: int, ok: bool, head_before: str | None,
                   head_after: str | None, reason: str, steps: list[Step]) -> None:
        return None


def run_deploy(checkout: Checkout, record: RunLog, *, target: str, trigger: str, branch: str,
               pushes: Sequence[Push] = (), rows: Sequence[int] = (),
               pushers: Sequence[str] = (), note: str = "") -> RunResult:
    """Record a run of ``target`` starting, deploy ``branch`` (see
    :meth:`Checkout.deploy`), record how it ended; return the result with its
    ``run_id`` (None when it was not recorded).  ``note`` (a poll's "no delivery
    brought it") is the reason of a run that moved HEAD, and follows a failure's.

    A bug that ends the deploy unexpectedly is logged with its traceback and comes
    back as a failed result with HEAD as it was left; Ctrl-C in the CLI (or any other
    BaseException) still finishes the run in the record as failed and is raised again.
    """
    pushers = list(pushers) or [p.pusher for p in pushes]
    before = _head(checkout)
    run_id = record.start_run(trigger, branch, before, list(rows), pushers, target)
    if run_id is not None:
        checkout.live = lambda step, text: record.live_output(run_id, step, text)
    try:
        if releases.enabled(checkout.config):  # build a release, switch ``current``
            result = releases.deploy(checkout, branch, list(pushes))
        else:
            result = checkout.deploy(branch, list(pushes))
    except Exception as exc:
        log.exception("deploy run %s of %s crashed", run_id or "-", target)
        result = RunResult(False, before, _head(checkout), branch, reason=crash_reason(exc))
    except BaseException:
        if run_id is not None:
            record.finish_run(run_id, False, before, _head(checkout), INTERRUPTED, [])
        raise
    finally:
        checkout.live = None
    result.run_id = run_id
    if not result.ok:
        on_failure(checkout, result, target, list(pushes), live(record, run_id))
    if note and (result.moved or not result.ok):
        result.reason = f"{result.reason} ({note})" if result.reason else note
    if run_id is not None:
        record.finish_run(run_id, result.ok, result.head_before, result.head_after,
                          result.reason, result.steps)
    return result


def run_failed(record: RunLog, *, target: str, trigger: str, head: str | None, reason: str,
               steps: Sequence[Step], pushers: Sequence[str]) -> int | None:
    """Record a run of ``target`` that failed before any deploy could start (no branch to
    deploy): started and finished at once, HEAD unmoved; its id (None: not recorded)."""
    run_id = record.start_run(trigger, "", head, [], list(pushers), target)
    if run_id is not None:
        record.finish_run(run_id, False, head, head, reason, list(steps))
    return run_id


def run_rollback(config: TargetConfig, record: RunLog, *, trigger: str, which: str | None,
                 pushers: Sequence[str]) -> tuple[bool, str, str | None, str | None]:
    """Record a rollback of target ``config`` starting, switch its ``current`` to release
    ``which`` (see :func:`releases.roll_back`), record how it ended: (ok, reason, the live
    commit before, after).  Blocking, as :func:`run_deploy`."""
    before = releases.live_sha(config)
    run_id = record.start_run(trigger, config.branch or "", before, [], list(pushers),
                              config.name)
    try:
        ok, reason, steps = releases.roll_back(config, which)
    except LookupError as exc:
        ok, reason, steps = False, str(exc), []
    after = releases.live_sha(config)
    if run_id is not None:
        record.finish_run(run_id, ok, before, after, reason, steps)
    return ok, reason, before, after


def live(record: RunLog, run_id: int | None) -> Callable[[str], None] | None:
    """What keeps on_failure's output in the record as it arrives (None: no record)."""
    if run_id is None:
        return None
    return lambda text: record.live_output(run_id, "on_failure", text)


def on_failure(checkout: Checkout, result: RunResult, target: str,
               pushes: Sequence[Push], on_output: Callable[[str], None] | None = None
               ) -> None:
    """Run the target's ``on_failure`` command (when set) after the failed run ``result``,
    with ``DEPLOYHOOK_REASON`` and the run's facts in its environment; its step joins the
    run's steps.  Its own failure is only recorded (and logged): the run's outcome and
    reason stay.  Never raises."""
    config: TargetConfig = checkout.config
    command = config.on_failure
    if not command:
        return
    tagged = config.tags is not None
    branch = "" if tagged else result.branch
    tag = result.branch.removeprefix("refs/tags/") if tagged else ""
    env = postdeploy.push_env(checkout.path, branch, pushes, result.head_before,
                              result.head_after, tag)
    env.update(DEPLOYHOOK_REASON=result.reason, DEPLOYHOOK_TARGET=target)
    cwd = checkout.path if os.path.isdir(checkout.path) else os.path.dirname(
        os.path.abspath(checkout.path))
    try:
        step = postdeploy.run(command, cwd if os.path.isdir(cwd) else "/", env,
                              config.on_failure_timeout, hidden=_secrets(config),
                              name="on_failure", on_output=on_output)
    except Exception:  # a bug here must not hide the run's own outcome
        log.exception("on_failure of %s could not be run", target)
        return
    result.steps.append(step)
    if not step.ok:
        log.warning("%s: on_failure failed (exit status %s) after a failed run",
                    target, step.status)


def _secrets(config: TargetConfig) -> list[str]:
    """The target's webhook secrets, to mask in on_failure's output (none when unreadable)."""
    try:
        return [value.decode("utf-8", "replace")
                for value in SecretSource(config.secret_file, config.secret).all()]
    except SecretMissing:
        return []


def crash_reason(exc: BaseException) -> str:
    """The reason recorded and answered for a run that an unexpected error ended."""
    return redact(f"deployhook failed during the deploy ({type(exc).__name__}: {exc}); "
                  "the daemon's log has the details")[:400]


def _head(checkout: Checkout) -> str | None:
    """HEAD now (in releases mode: the live release's commit), or None when there is no
    checkout or it cannot be read."""
    try:
        if releases.enabled(checkout.config):
            return releases.live_sha(checkout.config)
        return checkout.head() if checkout.exists() else None
    except Exception as exc:  # reading HEAD must never hide the run's own outcome
        log.error("cannot read HEAD of %s: %s", checkout.path, exc)
        return None
