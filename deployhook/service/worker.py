"""The git worker: runs deploys in a ThreadPoolExecutor, one at a time, coalesced.

Deliveries that arrive while a deploy runs wait together; when it ends, one
more run brings the checkout to the newest pushed commit and answers all of
them.  So a burst of N pushes costs a handful of fetches, not N.  The IOLoop
only awaits futures; every git command runs in the executor.  Each run is
written to the deployment record when a Recorder is given.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TypeVar

from deployhook.forges.delivery import Push
from deployhook.git.checkout import Checkout, RunResult
from deployhook.git.steps import redact
from deployhook.record.recorder import Recorder
from deployhook.record.store import Store

log = logging.getLogger("deployhook.worker")
T = TypeVar("T")


@dataclass
class Request:
    """A push waiting for a run; ``row`` is its delivery's row in the record."""

    push: Push
    row: int | None = None
    trigger: str = "webhook"
    future: asyncio.Future[RunResult] = field(default_factory=lambda: asyncio.get_running_loop()
                                              .create_future())


class GitWorker:
    """Owns the executor and serialises the deploys of one checkout."""

    def __init__(
        self,
        checkout: Checkout,
        executor: ThreadPoolExecutor,
        on_result: Callable[[RunResult], None] | None = None,
        recorder: Recorder | None = None,
    ) -> None:
        self.checkout = checkout
        self.executor = executor
        self.on_result = on_result
        self.recorder = recorder
        self.last: RunResult | None = None
        self.runs = 0
        self._pending: list[Request] = []
        self._task: asyncio.Task[None] | None = None

    @property
    def busy(self) -> bool:
        """True while a deploy runs or deliveries wait for one."""
        return bool(self._pending) or (self._task is not None and not self._task.done())

    def submit(self, push: Push, row: int | None = None,
               trigger: str = "webhook") -> asyncio.Future[RunResult]:
        """Queue ``push``; the future resolves with the run that covered it."""
        request = Request(push, row, trigger)
        self._pending.append(request)
        if self._task is None or self._task.done():
            self._task = asyncio.ensure_future(self._drain())
        return request.future

    async def run_in_executor(self, fn: Callable[..., T], *args: object) -> T:
        """Run blocking ``fn`` in this worker's executor."""
        return await asyncio.get_running_loop().run_in_executor(self.executor, fn, *args)

    async def idle(self) -> None:
        """Return once no deploy runs or waits."""
        while self._task is not None and not self._task.done():
            await asyncio.shield(self._task)

    async def _drain(self) -> None:
        """Run the pending batches one after another.  Never raises: whatever goes wrong
        in a run (a bug included) finishes it as failed and answers its deliveries."""
        while self._pending:
            batch, self._pending = self._pending, []
            self.runs += 1
            try:
                result = await self._run(batch)
            except Exception as exc:  # a bug outside the deploy itself: answer, keep serving
                log.exception("deploy run crashed")
                result = RunResult(False, None, None, batch[-1].push.branch or "",
                                   reason=crash_reason(exc))
            self.last = result
            for request in batch:
                if not request.future.done():
                    request.future.set_result(result)
            if self.on_result is not None:
                try:
                    self.on_result(result)
                except Exception:
                    log.exception("handling the end of run %s failed", result.run_id or "-")

    async def _run(self, batch: list[Request]) -> RunResult:
        pushes = [request.push for request in batch]
        branch = pushes[-1].branch or ""
        rows = [r.row for r in batch if r.row is not None]
        trigger = "webhook" if any(r.trigger == "webhook" for r in batch) else batch[0].trigger
        run_id = await self._record(lambda s: s.start_run(
            trigger, branch, None, rows, [p.pusher for p in pushes]))
        try:
            result = await self.run_in_executor(self.checkout.deploy, branch, pushes)
        except Exception as exc:  # a bug, not a git failure (those come back as results)
            log.exception("deploy run %s crashed", run_id or "-")
            result = RunResult(False, None, await self._head(), branch,
                               reason=crash_reason(exc))
        result.run_id = run_id
        if run_id is not None:
            await self._record(lambda s: s.finish_run(
                run_id, result.ok, result.head_before, result.head_after, result.reason,
                result.steps))
        outcome = "ok" if result.ok else f"FAILED: {result.reason}"
        log.info("run %s: %d deliveries, %s -> %s in %.2fs: %s", run_id or "-", len(batch),
                 (result.head_before or "none")[:12], (result.head_after or "none")[:12],
                 result.duration, outcome)
        return result

    async def _head(self) -> str | None:
        """The checkout's HEAD now, or None when it cannot be read."""
        try:
            return await self.run_in_executor(
                lambda: self.checkout.head() if self.checkout.exists() else None)
        except Exception as exc:
            log.error("cannot read HEAD after a crashed run: %s", exc)
            return None

    async def _record(self, fn: Callable[[Store], T]) -> T | None:
        """Write to the record; a failing database is logged and never stops a deploy."""
        return None if self.recorder is None else await self.recorder.try_run(fn)


def crash_reason(exc: Exception) -> str:
    """The reason recorded and answered for a run that an unexpected error ended."""
    return redact(f"deployhook failed during the deploy ({type(exc).__name__}: {exc}); "
                  "the daemon's log has the details")[:400]
