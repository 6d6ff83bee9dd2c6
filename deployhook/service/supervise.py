"""Long-running asyncio tasks that never die silently: each is restarted after a short
back-off when it raises, its reason logged and kept for ``/health``.

Used by every long-running task the fleet agent (:mod:`deployhook.fleet.agent`)
starts, and by the poller (:mod:`deployhook.service.poller`); no I/O of its own.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

from deployhook.redact import redact

FIRST_BACKOFF = 1.0  # seconds before the first restart; doubled after each failure in a row
MAX_BACKOFF = 30.0


@dataclass
class TaskState:
    """What ``/health`` shows of one supervised task.

    ``state``: ``starting`` (no round done since it was (re)started), ``running`` (a
    round succeeded since), ``backing off`` (it raised; restarted after ``backoff``
    seconds) or ``stopped``.  ``error``: its last failure (kept after it recovers).
    """

    state: str = "starting"
    error: str = ""
    restarts: int = 0
    since: float = 0.0
    backoff: float = FIRST_BACKOFF


class Supervisor:
    """Runs named coroutines, restarting each after a failure (see the module)."""

    def __init__(self, log: logging.Logger, part: str = "fleet") -> None:
        """``log``: where failures and recoveries are logged, each line starting with
        ``part`` (the part of the daemon whose tasks these are)."""
        self.log, self.part = log, part
        self.states: dict[str, TaskState] = {}
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._closing = False

    def start(self, name: str, run: Callable[[], Coroutine[Any, Any, None]]) -> None:
        """Run ``run()`` as task ``name`` until :meth:`stop`; when it raises (or returns
        before :meth:`stop`), log why and call it again after the back-off."""
        self.states[name] = TaskState(since=time.time())
        self._tasks[name] = asyncio.ensure_future(self._keep(name, run))

    def healthy(self, name: str) -> None:
        """Task ``name`` finished a round: ``running``, its back-off reset; a recovery
        is logged."""
        state = self.states[name]
        if state.state != "running":
            if state.restarts:
                self.log.warning("%s: task %s runs again (restart %d)", self.part, name,
                                 state.restarts)
            state.state, state.since, state.backoff = "running", time.time(), FIRST_BACKOFF

    def status(self) -> dict[str, dict[str, Any]]:
        """Each task's state, last error, restarts and since when (for ``/health``)."""
        return {name: {"state": s.state, "error": s.error, "restarts": s.restarts,
                       "since": s.since} for name, s in self.states.items()}

    def stop(self) -> list[asyncio.Task[None]]:
        """Cancel every task (returned, to be awaited by whoever needs them gone)."""
        self._closing = True
        for name, task in self._tasks.items():
            task.cancel()
            self.states[name].state = "stopped"
        return list(self._tasks.values())

    async def _keep(self, name: str, run: Callable[[], Coroutine[Any, Any, None]]) -> None:
        state = self.states[name]
        while not self._closing:
            try:
                await run()
                if self._closing:
                    return
                raise RuntimeError("returned while the daemon runs")
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # any failure: logged, shown, restarted
                reason = redact(f"{type(exc).__name__}: {exc}")[:300]
                if reason != state.error or state.state == "running":
                    self.log.error("%s: task %s failed (%s); restarting it in %.0f s",
                                   self.part, name, reason, state.backoff,
                                   exc_info=not _expected(exc))
                state.state, state.error, state.since = "backing off", reason, time.time()
            await asyncio.sleep(state.backoff)
            state.backoff = min(state.backoff * 2, MAX_BACKOFF)
            state.restarts += 1
            state.state = "starting"


def _expected(exc: BaseException) -> bool:
    """True for a failure whose reason says it all (Redis refusing a command): no
    traceback is logged for it."""
    return type(exc).__module__.startswith("redis")
