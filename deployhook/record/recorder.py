"""The deployment record, used from the IOLoop: every Store call runs on one thread."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

from deployhook.record.store import DeliveryRecord, Store

log = logging.getLogger("deployhook.record")
T = TypeVar("T")


class Recorder:
    """Owns the Store and its thread; ``await run(fn)`` calls ``fn(store)`` there.

    Deliveries answered at once go through :meth:`log`: a bounded queue written
    in one transaction every ``FLUSH_EVERY`` seconds (the excess is counted and
    reported, not kept).  Unverified deliveries refused go through :meth:`reject`:
    counted per minute, sender, target, status and reason, and those counts added to
    the record's ``rejections`` table in the same batch, so a flood of bad requests
    costs the IOLoop a dictionary update each and the record a row per sender a minute.
    """

    FLUSH_EVERY = 0.05
    MAX_QUEUED = 5000

    def __init__(self, path: str) -> None:
        self.path = path
        self.executor = ThreadPoolExecutor(1, thread_name_prefix="deployhook-db")
        self._store: Store | None = None
        self._queue: list[tuple[DeliveryRecord, float, int, str, str]] = []
        self._flushing: Future[object] | None = None
        self._scheduled = False
        self._rejected: Counter[tuple[int, str, str, int, str]] = Counter()
        self.dropped = 0

    def log(self, record: DeliveryRecord, status: int, result: str, reason: str) -> None:
        """Queue a delivery answered at once; written within ``FLUSH_EVERY`` seconds."""
        if len(self._queue) >= self.MAX_QUEUED:
            self.dropped += 1
            return
        self._queue.append((record, time.time(), status, result, reason))
        self._schedule()

    def reject(self, remote_addr: str, target: str, status: int, reason: str) -> None:
        """Count an unverified delivery refused now; the counts are written within
        ``FLUSH_EVERY`` seconds (senders past ``MAX_QUEUED`` in one batch count as ``-``)."""
        key = (int(time.time()) // 60 * 60, remote_addr, target, status, reason)
        if key not in self._rejected and len(self._rejected) >= self.MAX_QUEUED:
            key = (key[0], "-", target, status, reason)
        self._rejected[key] += 1
        self._schedule()

    def _schedule(self) -> None:
        """Flush within ``FLUSH_EVERY`` seconds (one timer at a time)."""
        if not self._scheduled:
            self._scheduled = True
            asyncio.get_running_loop().call_later(self.FLUSH_EVERY, self._flush)

    def _flush(self) -> None:
        self._scheduled = False
        if self._flushing is not None and not self._flushing.done():
            self._schedule()
            return  # the database is behind: let the queue fill (it is bounded)
        batch, self._queue = self._queue, []
        rejected, self._rejected = self._rejected, Counter()
        if self.dropped:
            log.warning("the deployment record fell behind: %d deliveries not recorded",
                        self.dropped)
            self.dropped = 0
        if batch or rejected:
            self._flushing = self.submit(lambda s: _write(s, batch, rejected))

    def _call(self, fn: Callable[[Store], T]) -> T:
        if self._store is None:
            self._store = Store(self.path)
        return fn(self._store)

    async def run(self, fn: Callable[[Store], T]) -> T:
        """Run ``fn(store)`` on the database thread and return its result."""
        return await asyncio.get_running_loop().run_in_executor(self.executor, self._call, fn)

    async def try_run(self, fn: Callable[[Store], T]) -> T | None:
        """Like :meth:`run`, but a failing database is logged and gives None."""
        try:
            return await self.run(fn)
        except Exception as exc:
            log.error("cannot use the deployment record: %s", exc)
            return None

    def call(self, fn: Callable[[Store], T]) -> T | None:
        """From another thread (never the IOLoop's, never the record's own): run
        ``fn(store)`` on the record's thread and wait for it; a failing database is
        logged and gives None."""
        try:
            return self.executor.submit(self._call, fn).result()
        except Exception as exc:
            log.error("cannot use the deployment record: %s", exc)
            return None

    def submit(self, fn: Callable[[Store], object]) -> Future[object]:
        """Queue ``fn(store)`` without waiting; failures are logged."""
        future = self.executor.submit(self._call, fn)
        future.add_done_callback(_log_failure)
        return future

    def close(self) -> None:
        """Finish queued writes, then close the database."""
        batch, self._queue = self._queue, []
        rejected, self._rejected = self._rejected, Counter()
        if batch or rejected:
            self.submit(lambda s: _write(s, batch, rejected))
        self.executor.submit(self._close).result()
        self.executor.shutdown(wait=True)

    def _close(self) -> None:
        if self._store is not None:
            self._store.close()
            self._store = None


def _write(store: Store, batch: list[tuple[DeliveryRecord, float, int, str, str]],
           rejected: Counter[tuple[int, str, str, int, str]]) -> None:
    if batch:
        store.log_deliveries(batch)
    if rejected:
        store.count_rejections(rejected)


def _log_failure(future: Future[object]) -> None:
    exc = future.exception()
    if exc is not None:
        log.error("cannot write the deployment record: %s", exc)
