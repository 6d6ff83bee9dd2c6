"""The git worker: runs deploys in a ThreadPoolExecutor, one at a time, coalesced.

Deliveries that arrive while a deploy runs wait together; when it ends, one
more run brings the checkout to the newest pushed commit and answers all of
them.  So a burst of N pushes costs a handful of fetches, not N.  The IOLoop
only awaits futures; every git command runs in the executor.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from .checkout import Checkout, RunResult
from .delivery import Push

log = logging.getLogger("deployhook.worker")
T = TypeVar("T")


class GitWorker:
    """Owns the executor and serialises the deploys of one checkout."""

    def __init__(
        self,
        checkout: Checkout,
        executor: ThreadPoolExecutor,
        on_result: Callable[[RunResult], None] | None = None,
    ) -> None:
        self.checkout = checkout
        self.executor = executor
        self.on_result = on_result
        self.last: RunResult | None = None
        self.runs = 0
        self._pending: list[tuple[Push, asyncio.Future[RunResult]]] = []
        self._task: asyncio.Task[None] | None = None

    @property
    def busy(self) -> bool:
        """True while a deploy runs or deliveries wait for one."""
        return bool(self._pending) or (self._task is not None and not self._task.done())

    def submit(self, push: Push) -> asyncio.Future[RunResult]:
        """Queue ``push``; the future resolves with the run that covered it."""
        future: asyncio.Future[RunResult] = asyncio.get_running_loop().create_future()
        self._pending.append((push, future))
        if self._task is None or self._task.done():
            self._task = asyncio.ensure_future(self._drain())
        return future

    async def run_in_executor(self, fn: Callable[..., T], *args: object) -> T:
        """Run blocking ``fn`` in this worker's executor."""
        return await asyncio.get_running_loop().run_in_executor(self.executor, fn, *args)

    async def idle(self) -> None:
        """Return once no deploy runs or waits."""
        while self._task is not None and not self._task.done():
            await asyncio.shield(self._task)

    async def _drain(self) -> None:
        loop = asyncio.get_running_loop()
        while self._pending:
            batch, self._pending = self._pending, []
            pushes = [push for push, _ in batch]
            branch = pushes[-1].branch or ""
            self.runs += 1
            try:
                result = await loop.run_in_executor(
                    self.executor, self.checkout.deploy, branch, pushes)
            except Exception as exc:  # a bug, not a git failure: answer, keep serving
                log.exception("deploy run crashed")
                for _, future in batch:
                    if not future.done():
                        future.set_exception(exc)
                continue
            self.last = result
            for _, future in batch:
                if not future.done():
                    future.set_result(result)
            if self.on_result is not None:
                self.on_result(result)
