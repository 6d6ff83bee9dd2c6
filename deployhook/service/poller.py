"""Polling: a push is never lost, even when no delivery brings it.

A forge does not deliver again by itself a delivery that failed, and a webhook can be
misconfigured, disabled, or sent while the daemon or the network was down.  So, as
Flux and Argo CD do, the daemon asks each target's remote every ``poll_interval``
seconds (jittered by ±10%; the first periodic poll of each target falls anywhere in
the interval, so many targets do not poll at once) for what it would deploy: the
branch's tip, or in tags mode the newest matching tag (:meth:`Checkout.remote_tip`,
one ``git ls-remote`` in the git executor, at most :data:`PARALLEL` at once, never
holding the ``workers`` gate).  At start every target is asked once (catch-up after
downtime), after the recovery of unfinished deliveries.

A tip is deployed (trigger ``poll``, its run's reason saying no delivery brought it)
only when it is news: not what HEAD is or contains, no earlier run (a delivery's, the
CLI's, a poll's) deployed or tried it (so a rollback stays rolled back, a failed
commit is not retried every interval), no run is under way or waiting (it fetches;
the next poll looks again), and deploys are not paused (resuming polls at once).  A
delivery of the same commit racing a poll's run joins that run (see
:meth:`GitWorker.submit`).  In fleet mode a poll that finds news tells the fleet, as
a delivery does (:meth:`Fleet.polled`), so that the fleet's desired commit and this
node's agree.  A failing poll is logged once per change of its reason, shown in
``/health`` and the page, and never stops the poller (a supervised task).
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from deployhook.forges.delivery import Push
from deployhook.git import paused
from deployhook.git.checkout import RemoteError, Tip
from deployhook.redact import redact
from deployhook.service.supervise import Supervisor

if TYPE_CHECKING:
    from deployhook.fleet.agent import Fleet
    from deployhook.record.recorder import Recorder
    from deployhook.service.target import Target

log = logging.getLogger("deployhook.poll")
PARALLEL = 4  # ls-remotes at once (the git executor has as many threads more)
JITTER = 0.1  # each interval is poll_interval times 1 ± JITTER
MAX_WAIT = 1.0  # seconds the loop sleeps at most (a reload may change poll_interval)


class Poller:
    """Polls every target's remote (see the module); ``start()`` it once the targets
    are started, ``stop()`` it at the end."""

    def __init__(self, targets: Mapping[str, Target], record: Recorder,
                 fleet: Fleet | None = None, rng: Callable[[], float] = random.random
                 ) -> None:
        """``targets`` by name (read, never changed); ``record``: asked whether a tip
        was deployed before; ``fleet``: told of news in fleet mode; ``rng``: the
        jitter's random numbers in [0, 1)."""
        self.targets, self.record, self.fleet, self.rng = targets, record, fleet, rng
        self.supervisor = Supervisor(log, "poll")
        self.due: dict[str, float] = {}  # target -> when (monotonic) it polls next
        self._spread: set[str] = set()  # targets whose next poll is the spread first one
        self._polling: dict[str, asyncio.Task[None]] = {}
        self._slots = asyncio.Semaphore(PARALLEL)
        self._wake = asyncio.Event()

    def start(self) -> None:
        """Poll every target now (catch-up), then every ``poll_interval``."""
        now = time.monotonic()
        for name, target in self.targets.items():
            if target.config.poll_interval > 0:
                self.due[name] = now
                self._spread.add(name)
        self.supervisor.start("poll", self._loop)

    def stop(self) -> list[asyncio.Task[None]]:
        """Stop polling; the tasks cancelled (to await where they must be gone)."""
        tasks = self.supervisor.stop() + list(self._polling.values())
        for task in tasks:
            task.cancel()
        return tasks

    def poke(self, name: str) -> None:
        """Poll target ``name`` now (deploys resumed), if it polls at all."""
        if name in self.due:
            self.due[name] = time.monotonic()
            self._wake.set()

    async def _loop(self) -> None:
        """Start each target's poll when it is due; sleep until the next is."""
        while True:
            now = time.monotonic()
            for name, target in self.targets.items():
                self._schedule(name, target, now)
            self.supervisor.healthy("poll")
            wait = min([due - now for due in self.due.values()] + [MAX_WAIT])
            self._wake.clear()
            try:
                await asyncio.wait_for(self._wake.wait(), max(wait, 0.0))
            except TimeoutError:
                pass

    def _schedule(self, name: str, target: Target, now: float) -> None:
        """Start ``target``'s poll if it is due (and none runs), and set its next."""
        interval = target.config.poll_interval  # as a reload leaves it
        if interval <= 0:
            self.due.pop(name, None)
            return
        if name not in self.due:  # turned on by a reload: anywhere in the interval
            self.due[name] = now + self.rng() * interval
        running = self._polling.get(name)
        if running is not None and not running.done():
            if self.due[name] <= now:  # due while its last poll still runs (a slow remote,
                # the start's catch-up): look again a little later, not on every turn
                self.due[name] = now + min(MAX_WAIT, interval)
            return
        if self.due[name] > now:
            return
        if name in self._spread:
            self._spread.discard(name)
            self.due[name] = now + self.rng() * interval
        else:
            self.due[name] = now + interval * (1 + JITTER * (2 * self.rng() - 1))
        self._polling[name] = asyncio.ensure_future(self.poll(target))

    async def poll(self, target: Target) -> None:
        """Ask ``target``'s remote for its tip and deploy it if it is news (see the
        module).  Never raises: a failure is the target's poll error."""
        state = target.polling
        try:
            async with self._slots:
                tip = await target.worker.run_in_executor(target.checkout.remote_tip,
                                                          target.branch)
        except asyncio.CancelledError:
            raise
        except RemoteError as exc:
            self._failed(target, str(exc))
            return
        except Exception as exc:  # git missing, a bug: shown as the poll's error
            log.debug("poll of %s failed", target.name, exc_info=True)
            self._failed(target, f"{type(exc).__name__}: {exc}")
            return
        if state.error:
            log.warning("%s: the remote answers polls again (failing since %s)",
                        target.name, time.strftime("%H:%M:%S", time.localtime(state.failed)))
        state.polled, state.tip, state.error, state.failed = time.time(), tip.sha, "", None
        state.failures = 0
        try:
            await self._decide(target, tip)
        except Exception:  # a bug: logged, the next poll decides again
            log.exception("%s: deciding on polled %s failed", target.name, tip.sha[:12])

    def _failed(self, target: Target, reason: str) -> None:
        """Keep the poll's error; log it when it differs from the last one."""
        state, reason = target.polling, redact(reason)[:300]
        if reason != state.error:
            log.warning("%s: polling the remote failed: %s", target.name, reason)
        state.error, state.failed = reason, state.failed or time.time()
        state.failures += 1

    async def _decide(self, target: Target, tip: Tip) -> None:
        """Deploy ``tip`` on ``target`` when it is news (see the module)."""
        state = target.polling
        if tip.sha == state.decided:
            return
        head = target.head
        if head in (tip.sha, tip.commit):
            state.decided = tip.sha
            return
        if target.worker.busy or target.paused is not None:
            return  # the run fetches / resuming polls again: decide then
        known = await self._known(target, tip, head)
        pause = await target.worker.run_in_executor(paused.read, target.config.repo_path)
        if pause is not None or target.worker.busy:
            return
        state.decided = tip.sha
        if known:
            return
        push = Push(ref=tip.ref, before=head or "", after=tip.sha, deleted=False,
                    repository="", default_branch=None, pusher="poll", delivery_id="-")
        if self.fleet is not None and not await self.fleet.polled(target, push):
            return  # the fleet knows it already: its reconcile brings it here
        where = tip.ref.removeprefix("refs/heads/").replace("refs/tags/", "tag ", 1)
        note = (f"polled: {tip.commit[:12]} is on {where} but no delivery brought it: "
                "check the forge's webhook")
        log.warning("%s: %s; deploying it", target.name, note)
        target.worker.submit(push, None, trigger="poll", note=note)

    async def _known(self, target: Target, tip: Tip, head: str | None) -> bool:
        """True when ``tip`` needs no deploy: HEAD contains it (branches), or a run of
        ``target`` deployed or tried it before (the record)."""
        if head is not None and target.config.tags is None and await \
                target.worker.run_in_executor(target.checkout.contains, tip.commit, head):
            return True
        short = tip.ref.removeprefix("refs/heads/")  # what a run records as its branch
        for ref, sha in ((tip.ref, tip.sha), (short, tip.commit)):
            if await self.record.deployed_before(ref, sha, target.name) is not None:
                return True
        return False

    def delivered(self, name: str) -> None:
        """Target ``name`` got a verified delivery now."""
        target = self.targets.get(name)
        if target is not None:
            target.polling.delivered = time.time()

    def status(self) -> dict[str, Any]:
        """The poller's task (for ``/health``)."""
        return self.supervisor.status()
