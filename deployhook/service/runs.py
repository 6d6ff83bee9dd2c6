"""One deploy run, recorded: the same orchestration for the daemon's worker, recovery
and ``deployhook deploy``; and one rollback, recorded, for ``deployhook rollback`` and
a fleet's rollback.

Blocking: call :func:`run_deploy` from a git thread (the daemon) or the CLI's main
thread.  The record is reached through ``record(fn)``, which runs ``fn(store)`` and
returns its result, or None when the record cannot be used: a failing record never
stops a deploy.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from deployhook.errors import SecretMissing
from deployhook.forges.delivery import Push
from deployhook.git import postdeploy, releases
from deployhook.git.checkout import Checkout, RunResult
from deployhook.record.store import Store
from deployhook.redact import redact
from deployhook.secret import SecretSource

log = logging.getLogger("deployhook.runs")
T = TypeVar("T")
Record = Callable[[Callable[[Store], Any]], Any]


def run_deploy(checkout: Checkout, record: Record, *, target: str, trigger: str, branch: str,
               pushes: Sequence[Push] = (), rows: Sequence[int] = (),
               pushers: Sequence[str] = ()) -> RunResult:
    """Record a run of ``target`` starting, deploy ``branch`` (see
    :meth:`Checkout.deploy`), record how it ended; return the result with its
    ``run_id`` (None when it was not recorded).

    A bug that ends the deploy unexpectedly is logged with its traceback and comes
    back as a failed result with HEAD as it was left; Ctrl-C in the CLI (or any other
    BaseException) still finishes the run in the record as failed and is raised again.
    """
    pushers = list(pushers) or [p.pusher for p in pushes]
    before = _head(checkout)
    run_id = record(lambda s: s.start_run(trigger, branch, before, list(rows), pushers,
                                          target=target))
    if run_id is not None:
        checkout.live = lambda step, text: record(lambda s: s.live_output(run_id, step, text))
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
            after = _head(checkout)
            record(lambda s: s.finish_run(run_id, False, before, after,
                                          "interrupted by the user (Ctrl-C)", []))
        raise
    finally:
        checkout.live = None
    result.run_id = run_id
    if not result.ok:
        on_failure(checkout, result, target, list(pushes), live(record, run_id))
    if run_id is not None:
        record(lambda s: s.finish_run(run_id, result.ok, result.head_before,
                                      result.head_after, result.reason, result.steps))
    return result


def run_rollback(config: Any, record: Record, *, trigger: str, which: str | None,
                 pushers: Sequence[str]) -> tuple[bool, str, str | None, str | None]:
    """Record a rollback of target ``config`` starting, switch its ``current`` to release
    ``which`` (see :func:`releases.roll_back`), record how it ended: (ok, reason, the live
    commit before, after).  Blocking, as :func:`run_deploy`."""
    before = releases.live_sha(config)
    run_id = record(lambda s: s.start_run(trigger, config.branch or "", before, [],
                                          list(pushers), target=config.name))
    try:
        ok, reason, steps = releases.roll_back(config, which)
    except LookupError as exc:
        ok, reason, steps = False, str(exc), []
    after = releases.live_sha(config)
    if run_id is not None:
        record(lambda s: s.finish_run(run_id, ok, before, after, reason, steps))
    return ok, reason, before, after


def live(record: Record, run_id: int | None) -> Callable[[str], None] | None:
    """What keeps on_failure's output in the record as it arrives (None: no record)."""
    if run_id is None:
        return None
    return lambda text: record(lambda s: s.live_output(run_id, "on_failure", text))


def on_failure(checkout: Checkout, result: RunResult, target: str,
               pushes: Sequence[Push], on_output: Callable[[str], None] | None = None
               ) -> None:
    """Run the target's ``on_failure`` command (when set) after the failed run ``result``,
    with ``DEPLOYHOOK_REASON`` and the run's facts in its environment; its step joins the
    run's steps.  Its own failure is only recorded (and logged): the run's outcome and
    reason stay.  Never raises."""
    config = checkout.config
    command = getattr(config, "on_failure", None)
    if not command:
        return
    tagged = getattr(config, "tags", None) is not None
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


def _secrets(config: Any) -> list[str]:
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
