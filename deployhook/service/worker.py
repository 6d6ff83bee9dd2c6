"""The git worker: runs deploys in a ThreadPoolExecutor, one at a time, coalesced.

Deliveries that arrive while a deploy runs wait together; when it ends, one
more run brings the checkout to the newest pushed commit and answers all of
them.  So a burst of N pushes costs a handful of fetches, not N.  After each run's
deliveries are answered, the git maintenance it left for later runs
(:meth:`Checkout.housekeep`) before the next run starts.  The IOLoop
only awaits futures; every git command runs in the executor.  Each run is
written to the deployment record when a Recorder is given.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TypeVar

from deployhook.forges.delivery import Push
from deployhook.git.checkout import Checkout, RunResult
from deployhook.record.recorder import Recorder
from deployhook.service.runs import RunLog, Unrecorded, crash_reason, run_deploy
from deployhook.settings import DEFAULT_TARGET

log = logging.getLogger("deployhook.worker")
T = TypeVar("T")


@dataclass
class Request:
    """A push waiting for a run; ``row`` is its delivery's row in the record.  Without a
    push (a redeploy), the newest commit of ``branch`` asked for by ``by``."""

    push: Push | None
    row: int | None = None
    trigger: str = "webhook"
    note: str = ""  # the run's reason when it succeeds (a poll's: no delivery brought it)
    future: asyncio.Future[RunResult] = field(default_factory=lambda: asyncio.get_running_loop()
                                              .create_future())
    branch: str = ""
    by: str = ""

    def deploys(self) -> str:
        """The branch (or, in tags mode, the tag's ref; "" for the newest tag) to deploy."""
        push = self.push
        if push is None:
            return self.branch
        return push.branch or (push.ref if push.ref.startswith("refs/tags/") else "")


class GitWorker:
    """Serialises and coalesces the deploys of one target's checkout.

    Its runs execute in the shared ``executor``; ``gate`` (shared by every target)
    bounds how many targets deploy at once.  A failing or slow target only ever
    holds one place in the gate.
    """

    def __init__(
        self,
        checkout: Checkout,
        executor: ThreadPoolExecutor,
        on_result: Callable[[RunResult], None] | None = None,
        recorder: Recorder | None = None,
        target: str = DEFAULT_TARGET,
        gate: asyncio.Semaphore | None = None,
        on_start: Callable[[list[Push]], None] | None = None,
    ) -> None:
        self.checkout = checkout
        self.executor = executor
        self.on_result = on_result
        self.recorder = recorder
        self.target = target
        self.gate = gate
        self.on_start = on_start  # called with a run's pushes as it starts; must not raise
        self.switch_gate: Callable[[str], str] | None = None  # see Checkout.switch_gate
        self.last: RunResult | None = None
        self.runs = 0
        self._pending: list[Request] = []
        self._running: list[Request] | None = None  # the batch of the run under way
        self._task: asyncio.Task[None] | None = None
        self._housekeeping = False  # the run is answered; its git maintenance runs

    @property
    def busy(self) -> bool:
        """True while a deploy runs or deliveries wait for one (not while only the git
        maintenance after an answered run runs: nothing is deploying then)."""
        running = self._task is not None and not self._task.done() and not self._housekeeping
        return bool(self._pending) or running

    @property
    def waiting(self) -> int:
        """How many accepted pushes wait for the next run."""
        return len(self._pending)

    def queued(self, future: asyncio.Future[RunResult]) -> str:
        """Why the run ``future`` (from :meth:`submit`) waits for has not started yet, or
        "" when it has (or the future is not this worker's): its target's run under way
        (or that run's git maintenance) must end first, or every one of the ``workers``
        places is taken."""
        if not any(request.future is future for request in self._pending):
            return ""
        if self._running is not None or self._housekeeping:
            return f"the run of {self.target} under way must end first"
        return "every worker is deploying another target (workers limits the deploys at once)"

    def use(self, checkout: Checkout) -> None:
        """Deploy ``checkout`` from the next run on (a reload; call while no run goes on)."""
        self.checkout = checkout

    def submit(self, push: Push, row: int | None = None, trigger: str = "webhook",
               note: str = "") -> asyncio.Future[RunResult]:
        """Queue ``push``; the future resolves with the run that covered it.  A push of
        the commit a poll's run under way deploys (same ref and commit) joins that run
        instead of making another: a delivery racing the poll that saw its commit.
        ``note``: the run's reason when it succeeds (see :func:`run_deploy`)."""
        request = Request(push, row, trigger, note)
        running = self._running
        if running is not None and not self._housekeeping and any(
                r.trigger == "poll" and r.push is not None
                and (r.push.ref, r.push.after) == (push.ref, push.after) for r in running):
            running.append(request)  # answered with that run's result
            return request.future
        return self._queue(request)

    def deploy_now(self, branch: str, by: str, trigger: str) -> asyncio.Future[RunResult]:
        """Queue a deploy of the newest commit of ``branch`` (in tags mode ``""``: the
        newest matching tag) asked for by ``by``, as ``deployhook deploy`` does: its run
        always fetches, unless it joins deliveries waiting (then it is their run); the
        future resolves with that run."""
        return self._queue(Request(None, None, trigger, branch=branch, by=by))

    def _queue(self, request: Request) -> asyncio.Future[RunResult]:
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
            if self.gate is not None:
                async with self.gate:
                    await self._next()
            else:
                await self._next()

    async def _next(self) -> None:
        batch, self._pending = self._pending, []
        self.runs += 1
        self._running = batch
        try:
            result = await self._run(batch)
        except Exception as exc:  # a bug outside the deploy itself: answer, keep serving
            log.exception("deploy run of %s crashed", self.target)
            result = RunResult(False, None, None, batch[-1].deploys(),
                               reason=crash_reason(exc))
        self._running = None
        self.last = result
        for request in batch:
            if not request.future.done():
                request.future.set_result(result)
        if self.on_result is not None:
            try:
                self.on_result(result)
            except Exception:
                log.exception("handling the end of run %s failed", result.run_id or "-")
        self._housekeeping = True  # answered: now the git maintenance the run left for later
        try:
            await self.run_in_executor(self.checkout.housekeep)
        except Exception:
            log.exception("git maintenance after run %s failed", result.run_id or "-")
        finally:
            self._housekeeping = False

    async def _run(self, batch: list[Request]) -> RunResult:
        pushes = [request.push for request in batch if request.push is not None]
        branch = batch[-1].deploys()
        rows = [r.row for r in batch if r.row is not None]
        pushers = [r.push.pusher if r.push is not None else r.by for r in batch]
        trigger = "webhook" if any(r.trigger == "webhook" for r in batch) else batch[0].trigger
        note = next((r.note for r in batch if r.trigger == trigger and r.note), "")
        if self.on_start is not None:
            try:
                self.on_start(pushes)
            except Exception:
                log.exception("handling the start of a run of %s failed", self.target)
        self.checkout.switch_gate = self.switch_gate
        result = await self.run_in_executor(functools.partial(
            run_deploy, self.checkout, self._record(), target=self.target, trigger=trigger,
            branch=branch, pushes=pushes, rows=rows, pushers=pushers, note=note))
        outcome = "ok" if result.ok else f"FAILED: {result.reason}"
        log.info("%s run %s: %d deliveries, %s -> %s in %.2fs: %s", self.target,
                 result.run_id or "-", len(batch), (result.head_before or "none")[:12],
                 (result.head_after or "none")[:12], result.duration, outcome)
        return result

    def _record(self) -> RunLog:
        """Where this worker's runs are recorded (a git thread waits for each write; a
        failing database is logged and never stops a deploy)."""
        return Unrecorded() if self.recorder is None else self.recorder.from_thread
