"""The hub: the registry that builds the parts of one daemon and wires them at start.

The parts: the record (one SQLite file, one thread), the git executor, the bound on
how many targets deploy at once (``workers``), the targets, the settings in force
(:class:`~deployhook.service.current.Current`), the event bus
(:class:`~deployhook.service.events.Events`), the webhook answers in flight, and in
fleet mode the fleet's agent.  Each part is handed only the parts it uses; only the
wiring (:mod:`deployhook.embed`, :func:`deployhook.web.app.routes`) holds the hub.
No Tornado.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import threading
import time
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from tornado.ioloop import PeriodicCallback

from deployhook.errors import ConfigError
from deployhook.git import releases
from deployhook.git.checkout import Checkout, RunResult
from deployhook.git.paused import Pause
from deployhook.git.paused import read as read_pause
from deployhook.git.refs import read_head
from deployhook.network import Network
from deployhook.record.recorder import Recorder
from deployhook.service.current import Current
from deployhook.service.events import Events, InFlight
from deployhook.service.poller import PARALLEL, Poller
from deployhook.service.target import Target, only_target, recorded_summary
from deployhook.settings import Config, TargetConfig

if TYPE_CHECKING:
    from deployhook.fleet.agent import Fleet

log = logging.getLogger("deployhook")
RESTART_KEYS = ("address", "port", "webhook_path", "workers", "state_db", "redis_url",
                "redis_password_file", "redis_ca_file", "fleet_key_file", "node",
                "reconcile_interval")
WATCH_EVERY = 0.25  # seconds between refreshes; each target's HEAD is read once a second
HEAD_ROUNDS = 4  # refreshes in which every target's HEAD is read once (a quarter each)
# Targets whose HEAD and pause one refresh reads at most (and the paused ones): past
# HEAD_ROUNDS times this many targets, each is read every len(targets) / 128 seconds.
# Each read is a few system calls, each handing the GIL back and forth with a busy loop:
# a thousand a second made every request cost 10-20% more CPU than with one target.
REFRESH_MOST = 32
GIT_NICE = 10  # how much lower the git threads' (and git's) CPU priority is than the loop's
RECORD_EVERY = 20  # refreshes between reads of the record when nobody else wrote to it


class Hub:
    """Every target by name, in config order; create it, ``await start()``."""

    def __init__(self, config: Config) -> None:
        self.current = Current(config)
        self.record = Recorder(config.state_db)
        self.executor = ThreadPoolExecutor(config.workers + 2 + PARALLEL,
                                           thread_name_prefix="deployhook-git",
                                           initializer=background)
        self.gate = asyncio.Semaphore(config.workers)
        self.events = Events()
        self.flight = InFlight(self.events)  # webhook answers not sent yet
        self.targets: dict[str, Target] = {
            target.name: self._target(target) for target in config.targets}
        self.started = time.time()
        self._watch: PeriodicCallback | None = None
        self._watching: asyncio.Future[None] | None = None
        self._ticks = 0
        self._next = 0  # where in the targets the next partial refresh begins
        self._data_version: int | None = None
        self.fleet: Fleet | None = None  # with ``redis_url``: this node's fleet agent
        if config.redis_url is not None:
            from deployhook.fleet.agent import Fleet  # redis is imported only here

            self.fleet = Fleet(config, self.targets, self.executor, self.record,
                               self.events.on_ran)
        self.poller = Poller(self.targets, self.record, self.fleet)  # see service/poller.py

    def _target(self, config: TargetConfig) -> Target:
        return Target(config, self.executor, self.record, self.gate, self._result,
                      self.events.started)

    @property
    def config(self) -> Config:
        """The daemon's config in force (a reload replaces it)."""
        return self.current.config

    @property
    def allowed(self) -> tuple[Network, ...]:
        """``allowed_networks`` in force."""
        return self.current.allowed

    @property
    def trusted(self) -> tuple[Network, ...]:
        """``trusted_proxies`` in force."""
        return self.current.trusted

    @property
    def in_flight(self) -> int:
        """Webhook answers not sent yet."""
        return self.flight.count

    @property
    def single(self) -> Target | None:
        """The one target of a config without ``targets`` (or with exactly one)."""
        return only_target(self.targets)

    def deploying(self) -> bool:
        """True while a verified delivery is being decided, or a deploy of any target runs
        or waits."""
        return bool(self.flight.deciding) or any(t.worker.busy for t in self.targets.values())

    async def start(self) -> None:
        """Mark runs a dead process left running as interrupted, resolve every target (in
        parallel), redeploy what was accepted and never finished, start watching.

        Raises:
            ConfigError: a target cannot be resolved (the message names it).
        """
        interrupted = await self.record.interrupt_unfinished()
        await self.record.prune(self.config.keep_runs, self.config.keep_days)
        if interrupted:
            log.warning("runs %s were interrupted by the end of the last process",
                        ", ".join(map(str, interrupted)))
        results = await asyncio.gather(*(t.start() for t in self.targets.values()),
                                       return_exceptions=True)
        for target, result in zip(self.targets.values(), results, strict=True):
            if isinstance(result, ConfigError) and len(self.targets) > 1:
                raise ConfigError(f"target {target.name!r}: {result}")
            if isinstance(result, BaseException):
                raise result
        await self.refresh()
        self._watch = PeriodicCallback(self._tick, WATCH_EVERY * 1000)
        self._watch.start()
        if self.fleet is not None:
            self.fleet.start()
        await self._last_deliveries()
        self.poller.start()  # after the recovery: its runs are under way, polls wait

    async def _last_deliveries(self) -> None:
        """Each target's last verified delivery as the record keeps it (polling shows it)."""
        uses = await self.record.try_run(lambda store: store.secret_uses()) or {}
        for name, seen in uses.items():
            if name in self.targets and seen:
                self.targets[name].polling.delivered = max(seen.values())

    def delivered(self, target: str, facts: Any, answer: Any) -> None:
        """A delivery was answered (a :attr:`Deliveries.answered` listener): a verified
        one tells target ``target``'s polling that its webhook works."""
        if getattr(facts, "signature", "") == "valid":
            self.poller.delivered(target)

    async def leave(self) -> None:
        """Stop polling; leave the fleet (with ``redis_url``): stop its agent, drop this
        node's heartbeat.  Never raises."""
        self.poller.stop()
        if self.fleet is not None:
            await self.fleet.close()

    def _tick(self) -> None:
        if self._watching is None or self._watching.done():
            self._watching = asyncio.ensure_future(self.refresh(everything=False))

    async def refresh(self, everything: bool = True) -> None:
        """Re-read targets' HEADs from their files and their last runs and run counts from
        the record, off the IOLoop, so that what the daemon reports is what the checkouts
        and the record say, whoever deployed; and their pauses (a target resumed since
        the last look deploys what it accepted while paused).  Each call after the first
        reads the next share of the HEADs and pauses (:meth:`_share`: every target once
        a second, or :data:`REFRESH_MOST` a call with many targets; every paused one each
        time) and reads the record only when another process wrote to it, a HEAD moved,
        or every ``RECORD_EVERY`` calls.  Never raises."""
        targets = list(self.targets.values()) if everything else self._share()
        self._ticks += 1
        generations = [t.generation for t in targets]
        paths = [releases.head_path(t.config) for t in targets]
        heads = await asyncio.get_running_loop().run_in_executor(
            self.executor, _read_heads, paths)
        moved = any(h is not None and h != t.head for t, h in zip(targets, heads, strict=True))
        force = everything or moved or self._ticks % RECORD_EVERY == 0
        changes = [t.pause_changes for t in targets]
        pauses = await asyncio.get_running_loop().run_in_executor(
            self.executor, _read_pauses, [t.config.repo_path for t in targets])
        for target, pause, seen in zip(targets, pauses, changes, strict=True):
            if target.pause_changes == seen and target.pause_read(pause):  # else stale
                await target.recover("resume")
                self.poller.poke(target.name)
        try:
            version, summaries = await self.record.summaries(
                None if force else self._data_version)
            self._data_version = version
        except Exception as exc:  # reported where the record is written
            log.debug("cannot read the deployment record: %s", exc)
            summaries = None
        for target, head, generation in zip(targets, heads, generations, strict=True):
            last = None if summaries is None else summaries[0].get(target.name)
            recorded = None if summaries is None else (
                last and recorded_summary(last), summaries[1].get(target.name, 0))
            if summaries is not None and target.name in summaries[2]:
                head = None  # another process is deploying it: its HEAD is not final yet
            if target.refreshed(head, recorded, generation):
                self.events.head_moved(target)

    def _share(self) -> list[Target]:
        """The targets the next partial refresh reads: a quarter of them, at most
        :data:`REFRESH_MOST`, after the last share (round the list), and every paused one
        (so that a resume deploys within a second whatever the number of targets)."""
        targets = list(self.targets.values())
        if len(targets) <= HEAD_ROUNDS:
            return targets
        size = min(-(-len(targets) // HEAD_ROUNDS), REFRESH_MOST)
        start = self._next % len(targets)
        share = (targets + targets)[start:start + size]
        self._next = start + size
        chosen = set(map(id, share))
        return share + [t for t in targets if t.paused is not None and id(t) not in chosen]

    def _result(self, target: Target, result: RunResult) -> None:
        self.record.prune_later(self.config.keep_runs, self.config.keep_days, target.name)
        self.events.ran(target, result)

    async def reconfigure(self, config: Config) -> None:
        """Switch every target to its settings in ``config`` once no deploy runs.  Adding
        or removing targets and ``RESTART_KEYS`` take effect at the next restart.

        Raises:
            ConfigError: a target cannot be resolved; the old config stays.
        """
        loop = asyncio.get_running_loop()
        kept = [t for t in config.targets if t.name in self.targets]
        resolved = {}
        for target in kept:
            checkout = Checkout(target)
            try:
                resolved[target.name] = (checkout, await loop.run_in_executor(
                    self.executor, releases.resolve, checkout, target))
            except ConfigError as exc:
                raise ConfigError(f"target {target.name!r}: {exc}") from None
        fixed = [key for key in RESTART_KEYS if getattr(config, key) != getattr(self.config, key)]
        if {t.name for t in config.targets} != set(self.targets):
            fixed.append("targets (added or removed)")
        if fixed:
            log.warning("%s changed: takes effect at the next restart", ", ".join(fixed))
        for target in self.targets.values():
            await target.worker.idle()
        for settings in kept:
            checkout, resolution = resolved[settings.name]
            self.targets[settings.name].switch(settings, checkout, resolution)
        self.current.set(config)

    def status(self, shown: Iterable[str] | None = None) -> dict[str, Any]:
        """``/health`` with the password: the targets named in ``shown`` (None: every
        one) under ``targets``, how many targets there are and how many need a look
        (``counts``), and with one target its fields at the top level too (as before
        targets existed)."""
        names = self.targets if shown is None else shown
        targets = {name: self.targets[name].status() for name in names}
        body: dict[str, Any] = {"status": "ok"}
        if self.single is not None:
            body.update(targets.get(self.single.name) or self.single.status())
        body.update({"targets": targets, "counts": self.counts(), "pid": os.getpid(),
                     "started": self.started})
        if self.fleet is not None:
            body["fleet"] = self.fleet.status()
        body["poller"] = self.poller.status()
        return body

    def counts(self) -> dict[str, int]:
        """How many targets there are, and how many of them are deploying, failing
        (their last deploy failed), paused, and any of those (``attention``)."""
        counts = dict.fromkeys(("targets", "attention", "deploying", "failing", "paused"), 0)
        counts["targets"] = len(self.targets)
        for target in self.targets.values():
            flags = target.attention()
            counts["attention"] += bool(flags)
            for flag in flags:
                counts[flag] += 1
        return counts

    async def idle(self) -> None:
        """Return once no verified delivery is being decided and no target deploys or
        waits (:meth:`deploying` is False)."""
        while self.deploying():
            await self.flight.decided()
            for target in list(self.targets.values()):
                await target.worker.idle()

    def close(self, wait: bool = True) -> None:
        """Stop watching and the executor (by default waiting for a running git command);
        close the checkouts and the record."""
        if self._watch is not None:
            self._watch.stop()
        with contextlib.suppress(RuntimeError):  # the IOLoop is closed already
            self.poller.stop()
        self.executor.shutdown(wait=wait, cancel_futures=not wait)
        self.record.close()
        for target in self.targets.values():
            target.close()


def background() -> None:
    """Lower the CPU priority of the calling thread (a git thread) by :data:`GIT_NICE`,
    and so of every git process it starts (children inherit it): on a busy machine the
    IOLoop's thread, at the daemon's own priority, runs first, and ``/health`` and the
    webhooks are answered while a thousand deploys run.  Never raises."""
    with contextlib.suppress(OSError, AttributeError):
        tid = threading.get_native_id()
        os.setpriority(os.PRIO_PROCESS, tid, os.getpriority(os.PRIO_PROCESS, tid) + GIT_NICE)


def _read_heads(paths: list[str]) -> list[str | None]:
    """Each checkout's HEAD read from its files (no git process); None where unreadable."""
    heads = []
    for path in paths:
        try:
            heads.append(read_head(path))
        except Exception:  # a half-written file, a removed checkout: keep the last value
            heads.append(None)
    return heads


def _read_pauses(paths: list[str]) -> list[Pause | None]:
    """Each checkout's pause (``deployhook pause``), None where not paused."""
    return [read_pause(path) for path in paths]

