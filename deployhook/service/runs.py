"""One deploy run, recorded: the same orchestration for the daemon's worker, recovery
and ``deployhook deploy``.

Blocking: call :func:`run_deploy` from a git thread (the daemon) or the CLI's main
thread.  The record is reached through ``record(fn)``, which runs ``fn(store)`` and
returns its result, or None when the record cannot be used: a failing record never
stops a deploy.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from deployhook.forges.delivery import Push
from deployhook.git import releases
from deployhook.git.checkout import Checkout, RunResult
from deployhook.git.steps import redact
from deployhook.record.store import Store

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
    result.run_id = run_id
    if run_id is not None:
        record(lambda s: s.finish_run(run_id, result.ok, result.head_before,
                                      result.head_after, result.reason, result.steps))
    return result


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
