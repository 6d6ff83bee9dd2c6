"""The deployment record, used from the IOLoop: every Store call runs on one thread.

Callers use the methods that name what they do (:meth:`Recorder.runs_page`,
:meth:`Recorder.add_delivery`, ...); a git thread writes a run through
:attr:`Recorder.from_thread` (a :class:`ThreadRecord`).  :meth:`Recorder.run` stays
for a read no method names (a test's, a tool's).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, TypeVar

from deployhook.git.steps import Step
from deployhook.record.store import PRUNE_BATCH, DeliveryRecord, Store, target_groups

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
    PRUNE_BATCH = PRUNE_BATCH  # rows of each table a pruning transaction deletes at most

    def __init__(self, path: str) -> None:
        self.path = path
        self.executor = ThreadPoolExecutor(1, thread_name_prefix="deployhook-db")
        self._store: Store | None = None
        self._queue: list[tuple[DeliveryRecord, float, int, str, str]] = []
        self._flushing: Future[object] | None = None
        self._scheduled = False
        self._rejected: Counter[tuple[int, str, str, int, str]] = Counter()
        self.dropped = 0
        self._pruning: asyncio.Future[int] | None = None
        self._prune_due: set[str | None] = set()  # targets to prune next (None: every one)
        self._prune_settings = (0, 0.0)  # keep_runs, keep_days of the newest prune_later
        self.from_thread = ThreadRecord(self)

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

    # -- what the daemon reads and writes, by name (on the IOLoop) -------------------------
    async def runs_page(self, limit: int, offset: int = 0, target: str | None = None
                        ) -> tuple[list[dict[str, Any]], int]:
        """Runs (of ``target``, or of every target) newest first, and how many there are.

        Raises:
            sqlite3.Error, OSError: the record cannot be read.
        """
        return await self.run(lambda s: (s.runs(limit, offset, target), s.count_runs(target)))

    async def find_run(self, run_id: int) -> dict[str, Any] | None:
        """Run ``run_id`` with its steps and deliveries (None: no such run).

        Raises:
            sqlite3.Error, OSError: the record cannot be read.
        """
        return await self.run(lambda s: s.run(run_id))

    async def add_event(self, target: str, kind: str, by: str, reason: str = "") -> int | None:
        """:meth:`Store.add_event`; None when the record cannot be used (logged)."""
        return await self.try_run(lambda s: s.add_event(target, kind, by, reason))

    async def events(self, limit: int, target: str | None = None) -> list[dict[str, Any]]:
        """:meth:`Store.events`: the newest ``limit`` events (of ``target``).

        Raises:
            sqlite3.Error, OSError: the record cannot be read.
        """
        return await self.run(lambda s: s.events(limit, target))

    async def earlier_deploy(self, delivery_id: str, after: str, target: str
                             ) -> dict[str, Any] | None:
        """:meth:`Store.earlier_deploy`; None too when the record cannot be used (logged)."""
        return await self.try_run(lambda s: s.earlier_deploy(delivery_id, after, target))

    async def deployed_before(self, ref: str, after: str, target: str
                              ) -> dict[str, Any] | None:
        """:meth:`Store.deployed_before`; None too when the record cannot be used (logged)."""
        return await self.try_run(lambda s: s.deployed_before(ref, after, target))

    async def add_delivery(self, record: DeliveryRecord) -> int | None:
        """Record an accepted delivery; its row, or None when the record cannot be used."""
        return await self.try_run(lambda s: s.add_delivery(record))

    async def add_answered(self, record: DeliveryRecord, status: int, result: str,
                           reason: str) -> int | None:
        """Record a delivery with its answer in one go; its row, or None when the record
        cannot be used."""
        def write(store: Store) -> int:
            row = store.add_delivery(record)
            store.answer_delivery(row, status, result, reason)
            return row

        return await self.try_run(write)

    def answer_delivery(self, row: int, status: int, result: str, reason: str,
                        run_id: int | None = None) -> None:
        """Queue storing the answer delivery ``row`` got (and its run)."""
        self.submit(lambda s: s.answer_delivery(row, status, result, reason, run_id))

    def add_step(self, run_id: int, step: Step) -> None:
        """Queue adding ``step`` to run ``run_id`` (a report to the forge that failed)."""
        self.submit(lambda s: s.add_step(run_id, step))

    async def unfinished_deliveries(self, target: str) -> list[dict[str, Any]]:
        """The accepted deliveries of ``target`` no run finished ([] when the record
        cannot be used)."""
        return await self.try_run(lambda s: s.unfinished_deliveries(target)) or []

    async def interrupt_unfinished(self) -> list[int]:
        """Mark the runs a dead process left running as interrupted; their ids ([] when
        the record cannot be used)."""
        return await self.try_run(lambda s: s.interrupt_unfinished()) or []

    async def prune(self, keep_runs: int, keep_days: float,
                    targets: Sequence[str] | None = None) -> int:
        """Drop the runs of each of ``targets`` (None: of every target the record keeps)
        beyond its newest ``keep_runs``, the runs older than ``keep_days``, and what goes
        with them (:meth:`Store.prune`), a batch (:meth:`Store.prune_some`) at a time on
        the record's thread, so that what else the daemon asks of the record runs between
        two batches and no other process waits long for the lock.  Returns how many runs
        went; failures are logged (and end the pruning)."""
        names = targets if targets is not None else await self.try_run(lambda s: s.targets())
        gone = 0
        for group in target_groups(names or ()):
            while True:
                done = await self.try_run(
                    lambda s, g=group: s.prune_some(keep_runs, keep_days, self.PRUNE_BATCH, g))
                if done is None:
                    return gone
                gone += done[0]
                if not done[1]:
                    break
        return gone

    def prune_later(self, keep_runs: int, keep_days: float, target: str | None = None) -> None:
        """Start pruning (:meth:`prune`) ``target``'s runs (None: every target's) without
        waiting.  One pruning at a time: a target named while one goes on is pruned
        after it, with the newest ``keep_runs`` and ``keep_days`` given."""
        self._prune_due.add(target)
        self._prune_settings = (keep_runs, keep_days)
        if self._pruning is None or self._pruning.done():
            self._pruning = asyncio.ensure_future(self._prune_due_ones())

    async def _prune_due_ones(self) -> int:
        """Prune the targets :meth:`prune_later` named until none is left; how many runs
        went."""
        gone = 0
        while self._prune_due:
            due, self._prune_due = self._prune_due, set()
            names = None if None in due else sorted(t for t in due if t is not None)
            gone += await self.prune(*self._prune_settings, names)
        return gone

    async def summaries(self, unless: int | None) -> tuple[int, Summaries | None]:
        """The record's data version, and each target's newest finished run, run count,
        and the targets with a run going on, unless the data version is still ``unless``.

        Raises:
            sqlite3.Error, OSError: the record cannot be read.
        """
        return await self.run(lambda s: _summaries(s, unless))

    def close(self) -> None:
        """Finish queued writes, then close the database (a pruning going on stops at
        its batch's end)."""
        if self._pruning is not None and not self._pruning.done():
            with contextlib.suppress(RuntimeError):  # the IOLoop is closed already
                self._pruning.cancel()
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


class ThreadRecord:
    """The record as a git thread writes a run (never the IOLoop's thread, never the
    record's own): each method runs its Store method on the record's thread and waits; a
    failing database is logged and gives None, and never stops a deploy."""

    def __init__(self, recorder: Recorder) -> None:
        self.recorder = recorder

    def start_run(self, trigger: str, branch: str, head_before: str | None,
                  rows: list[int], pushers: list[str], target: str) -> int | None:
        """:meth:`Store.start_run`: the new run's id (None: not recorded)."""
        return self.recorder.call(
            lambda s: s.start_run(trigger, branch, head_before, rows, pushers, target=target))

    def live_output(self, run_id: int, step: str, output: str) -> None:
        """:meth:`Store.live_output`."""
        self.recorder.call(lambda s: s.live_output(run_id, step, output))

    def finish_run(self, run_id: int, ok: bool, head_before: str | None,
                   head_after: str | None, reason: str, steps: list[Step]) -> None:
        """:meth:`Store.finish_run`."""
        self.recorder.call(lambda s: s.finish_run(run_id, ok, head_before, head_after,
                                                  reason, steps))


Summaries = tuple[dict[str, dict[str, Any]], dict[str, int], set[str]]


def _summaries(store: Store, unless: int | None) -> tuple[int, Summaries | None]:
    """The record's data version, and each target's newest finished run, run count,
    and the targets with a run going on, unless the data version is still ``unless``."""
    version = store.data_version()
    if version == unless:
        return version, None
    return version, (store.last_runs(), store.run_counts(), store.running_targets())


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
