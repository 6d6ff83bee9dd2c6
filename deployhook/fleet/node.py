"""What every part of a node's fleet agent shares: its state (the Redis client, the
fleet key, what it covers and what waits to be written), the changes it was told of,
whether Redis answers, and the writing of its outcomes.

:class:`Node` is the base of the agent's parts: :class:`~deployhook.fleet.reconcile.Reconciling`
(whose ``_ran`` the constructor subscribes to run results),
:class:`~deployhook.fleet.switch.Switching`, :class:`~deployhook.fleet.publish.Publishing`;
:class:`~deployhook.fleet.agent.Fleet` is all of them, and its loops.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Coroutine, Mapping
from concurrent.futures import Executor
from pathlib import Path
from typing import TYPE_CHECKING, Any

import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from deployhook.fleet.checks import Refusals
from deployhook.fleet.credentials import fleet_key, masked, password, tls
from deployhook.fleet.decide import NodeState
from deployhook.fleet.entries import Desired, Outcome, Switch
from deployhook.fleet.keys import heartbeat_every, heartbeat_ttl
from deployhook.fleet.pipeline import queue_report
from deployhook.git.checkout import RunResult
from deployhook.redact import redact
from deployhook.service.supervise import Supervisor

if TYPE_CHECKING:
    from deployhook.record.recorder import Recorder
    from deployhook.service.target import Target
    from deployhook.settings import Config

log = logging.getLogger("deployhook.fleet")
TIMEOUT = 3.0  # seconds for one Redis command (connecting: 2 s)
# Redis cannot be reached: the loops wait and try again; any other failure (Redis
# refusing a command, a bug) goes to the supervisor.
UNREACHABLE = (RedisConnectionError, RedisTimeoutError, OSError)


class Node:
    """The state of this node's fleet agent, and what its parts share."""

    def __init__(self, config: Config, targets: Mapping[str, Target], executor: Executor,
                 record: Recorder,
                 subscribe: Callable[[Callable[[Target, RunResult], None]], None]) -> None:
        """The agent of this node (``config.node``) for ``targets`` (by name; the
        mapping is read, never changed), running its file writes on ``executor`` and
        recording rollbacks in ``record``; ``subscribe`` registers the callback it wants
        after each run of a target.  What it reads of ``config`` takes effect at a restart
        only (:data:`~deployhook.service.hub.RESTART_KEYS`).

        Raises ConfigError: ``redis_password_file``, ``redis_ca_file`` or
        ``fleet_key_file`` cannot be read.
        """
        assert config.redis_url is not None and config.node is not None
        self.config, self.targets, self.executor, self.record = config, targets, executor, record
        self.node: str = config.node
        self.beat_every = heartbeat_every(config.reconcile_interval)
        self.ttl = heartbeat_ttl(config.reconcile_interval)  # absent after it without a beat
        self.where = masked(config.redis_url)
        self.key = fleet_key(config.fleet_key_file)
        self.refusals = Refusals(log)
        self.supervisor = Supervisor(log)
        self.client = aioredis.from_url(
            config.redis_url, password=password(config.redis_password_file),
            socket_timeout=TIMEOUT, socket_connect_timeout=2.0, health_check_interval=10,
            **tls(config.redis_url, config.redis_ca_file))
        self.covering: dict[str, Desired] = {}  # target -> the generation our worker runs
        self.pending: dict[str, Desired] = {}  # accepted while Redis was unreachable
        self.pending_path = Path(config.state_db + ".fleet-pending")  # ...kept there too
        self.outbox: dict[str, Outcome] = {}  # our outcomes not written yet
        self.local: dict[str, tuple[int, NodeState]] = {}  # target -> our last outcome
        self.cached: dict[str, Any] = {}  # every target's fleet as last read (/health)
        self.reachable: bool | None = None
        self.error = ""
        self.closing = False
        self._tasks: set[asyncio.Task[Any]] = set()  # short ones: writing an outcome
        self._reconciling: dict[str, asyncio.Task[None]] = {}
        self._again: set[str] = set()
        self._after_run: set[str] = set()  # reconcile these once their run under way ends
        self._rolling: set[str] = set()  # targets a rollback (or :meth:`tell`) is switching
        self.versions: dict[str, int] = {}  # target -> changes of its fleet seen (notified)
        self._changed: dict[str, asyncio.Event] = {}  # set at the next change, then new
        self.switches: dict[str, Switch] = {}  # target -> the last switch announced
        self.loop: asyncio.AbstractEventLoop | None = None
        subscribe(self._ran)

    def _spawn(self, coroutine: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _notify(self, name: str) -> None:
        """Target ``name``'s fleet changed: wake whoever waits (:meth:`changed`)."""
        self.versions[name] = self.versions.get(name, 0) + 1
        event = self._changed.pop(name, None)
        if event is not None:
            event.set()

    def version(self, name: str) -> int:
        """How many changes of target ``name``'s fleet this agent was told of."""
        return self.versions.get(name, 0)

    async def changed(self, name: str, since: int, timeout: float) -> None:
        """Return once target ``name``'s fleet changed after :meth:`version` was
        ``since`` (a notification), or after ``timeout`` seconds."""
        if self.version(name) != since or timeout <= 0:
            return
        event = self._changed.setdefault(name, asyncio.Event())
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(event.wait(), timeout)

    def note_unreachable(self, exc: BaseException) -> None:
        """A read of Redis by someone else (a page) failed with ``exc``."""
        self._unreachable(exc)

    def _unreachable(self, exc: BaseException) -> None:
        self.error = redact(f"Redis at {self.where} is unreachable ({type(exc).__name__}: "
                            f"{exc})")[:300]
        if self.reachable is not False and not self.closing:
            log.warning("fleet: %s; this node keeps deploying its own deliveries and tells "
                        "the fleet once it is back", self.error)
        self.reachable = False

    async def _write_quietly(self, name: str, outcome: Outcome) -> None:
        try:
            await self._write(name, outcome)
        except (RedisError, OSError) as exc:
            self._unreachable(exc)  # the beat loop writes it once Redis is back

    async def _write(self, name: str, outcome: Outcome) -> None:
        pipe = self.client.pipeline(transaction=False)
        queue_report(pipe, name, outcome, self.key)
        await pipe.execute()
        if self.outbox.get(name) is outcome:
            del self.outbox[name]
