"""Fleet mode: every server behind a balancer keeps its checkout at the commit the
fleet's Redis says (``redis_url``; the keys are in :mod:`~deployhook.fleet.keys`).

Level-triggered, as Flux and Argo CD do it: the node that accepts a delivery records
the *desired* commit of the target (a new generation) and publishes a notification;
every node's agent reconciles its own checkout to it through the target's usual
worker (coalescing, strategies, submodules, post_deploy, reload, its own record) and
writes its own outcome back.  The agent reconciles at start, on each notification,
after a lost connection comes back, and every ``reconcile_interval`` seconds.  A
generation that failed on this node is not tried again by the reconcile: a new
generation (a push, a redelivery, an explicit deploy) is.

Redis is an input, not the operator: what is read from it is checked and must be
signed with the fleet key (:mod:`~deployhook.fleet.checks`), and a desired
commit is deployed only on a ref this target deploys (the decision a delivery gets).
The heartbeat and the notification listener run under a
:class:`~deployhook.service.supervise.Supervisor`: restarted after a failure, their
state in ``/health`` (``fleet.tasks``).

:class:`Fleet` joins the agent's parts: :mod:`~deployhook.fleet.node` (the state they
share), :mod:`~deployhook.fleet.reconcile`, :mod:`~deployhook.fleet.publish` (telling
the fleet) and :mod:`~deployhook.fleet.switch` (switching together); here are its
loops (the heartbeat, the notifications) and its reads of every node's state.

These modules import ``redis`` (redis.asyncio: nothing blocks the IOLoop); the hub
imports this one only when ``redis_url`` is set.  The agent is built from the parts it
uses (the config, the targets, the git executor, the record, a subscription to run
results), not from the hub, which builds it.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import time
from typing import Any

from redis.exceptions import RedisError

from deployhook.fleet.checks import text
from deployhook.fleet.decide import NodeState, states, view
from deployhook.fleet.entries import Desired, Outcome
from deployhook.fleet.keys import CHANNEL, PROGRESS, SWITCH, heartbeat_key
from deployhook.fleet.node import UNREACHABLE
from deployhook.fleet.pipeline import parse_beats, parse_read, parse_switch, queue_beat, queue_read
from deployhook.fleet.publish import Publishing, load_pending
from deployhook.fleet.switch import Switching

log = logging.getLogger("deployhook.fleet")
RETRY = 1.0  # seconds between attempts while Redis is unreachable or something waits


class Fleet(Publishing, Switching):
    """This node's agent: heartbeat, notifications, reconcile, outcomes."""

    # -- running -------------------------------------------------------------------------
    def start(self) -> None:
        """Start the heartbeat and the notification listener (neither waits for Redis)."""
        log.info("fleet: node %s, desired state in Redis at %s", self.node, self.where)
        self.pending.update(load_pending(self.pending_path))
        self.loop = asyncio.get_event_loop()
        for target in self.targets.values():
            target.worker.switch_gate = functools.partial(self._gate, target)
        self.supervisor.start("heartbeat", self._beat_loop)
        self.supervisor.start("notifications", self._listen_loop)

    async def close(self) -> None:
        """Stop; leave the fleet (this node is absent at once, not after the TTL)."""
        self.closing = True
        for task in self.supervisor.stop() + list(self._tasks) + list(
                self._reconciling.values()):
            task.cancel()
        with contextlib.suppress(RedisError, OSError, TimeoutError):
            await asyncio.wait_for(self.client.delete(heartbeat_key(self.node)), 1.0)
        with contextlib.suppress(RedisError, OSError):
            await self.client.aclose()

    async def _beat_loop(self) -> None:
        """Heartbeat, flush what waited for Redis, reconcile every ``reconcile_interval``.

        Raises:
            RedisError: Redis refused a command (say, WRONGTYPE): the supervisor
                restarts the loop.
        """
        interval = self.config.reconcile_interval
        next_reconcile = 0.0
        while not self.closing:
            try:
                await self._beat()
                await self._flush()
                if time.monotonic() >= next_reconcile:
                    next_reconcile = time.monotonic() + interval
                    self.reconcile_all()
                self.cached = await self.snapshot()
                self._reached()
                self.supervisor.healthy("heartbeat")
            except UNREACHABLE as exc:
                self._unreachable(exc)
            busy = self.pending or self.outbox or not self.reachable
            await asyncio.sleep(RETRY if busy else self.beat_every)

    async def _listen_loop(self) -> None:
        """Reconcile the target each notification names; after (re)subscribing, every
        target (notifications sent meanwhile are lost)."""
        while not self.closing:
            pubsub = self.client.pubsub()
            try:
                await pubsub.subscribe(CHANNEL, PROGRESS, SWITCH)
                self.reconcile_all()
                self.supervisor.healthy("notifications")
                while not self.closing:
                    message = await pubsub.get_message(ignore_subscribe_messages=True,
                                                       timeout=1.0)
                    if message is not None:
                        self._heard(text(message["channel"]), text(message["data"]))
            except UNREACHABLE as exc:
                self._unreachable(exc)
                await asyncio.sleep(RETRY)
            finally:
                with contextlib.suppress(RedisError, OSError):
                    await pubsub.aclose()

    def _heard(self, channel: str, data: str) -> None:
        """A notification: a new desired state (reconcile it), an outcome or readiness
        written, or a switch decided (kept, if signed): whoever waits on the target's
        fleet wakes."""
        if channel == SWITCH:
            try:
                values = json.loads(data[:4096])
                name = str(values.pop("target"))[:100]
            except (ValueError, TypeError, AttributeError, KeyError):
                self.refusals.note(SWITCH, "a message that is not a switch's JSON")
                return
            switch = parse_switch(name, values, self.key, self.refusals) \
                if name in self.targets else None
            if switch is not None:
                self.switches[name] = switch
            self._notify(name)
            return
        name = data[:100]
        if channel == CHANNEL:
            self.poke(name)
        self._notify(name)

    async def _beat(self) -> None:
        pipe = self.client.pipeline(transaction=False)
        queue_beat(pipe, self.node, {t.name: t.head for t in self.targets.values()}, self.ttl)
        await pipe.execute()

    def _reached(self) -> None:
        if self.reachable is False:
            log.warning("fleet: Redis at %s is reachable again", self.where)
            self.reconcile_all()  # what was decided meanwhile (notifications are lost)
        self.reachable, self.error = True, ""

    async def states(self, name: str, desired: Desired) -> list[NodeState]:
        """Every node's state for target ``name`` against ``desired``'s generation."""
        _, outcomes, beats = await self._read([name])
        found = states(name, desired, outcomes[name], beats, self.ttl)
        generation, own = self.local.get(name, (0, None))
        mine = outcomes[name].get(self.node)
        if own is not None and generation >= desired.generation and (
                mine is None or mine.generation < generation):  # not in Redis yet
            found = [own if s.node == self.node else s for s in found]
        return found

    async def snapshot(self) -> dict[str, Any]:
        """Every target's desired state and nodes, read now.

        Raises:
            RedisError, OSError: Redis is unreachable.
        """
        names = list(self.targets)
        desired, outcomes, beats = await self._read(names)
        return {n: view(n, desired[n], states(n, desired[n], outcomes[n], beats, self.ttl))
                for n in names}

    async def _read(self, names: list[str]) -> tuple[
            dict[str, Desired | None], dict[str, dict[str, Outcome]], dict[str, dict[str, Any]]]:
        """The desired states, outcomes and the nodes' heartbeats of targets ``names``
        (as :func:`parse_read` and :func:`parse_beats` give them).

        Raises:
            RedisError, OSError: Redis is unreachable.
        """
        pipe = self.client.pipeline(transaction=False)
        queue_read(pipe, names)
        desired, outcomes, nodes = parse_read(
            names, await pipe.execute(raise_on_error=False), self.key, self.refusals)
        beats = parse_beats(nodes, await self.client.mget(
            [heartbeat_key(n) for n in nodes]), self.refusals) if nodes else {}
        return desired, outcomes, beats

    def status(self) -> dict[str, Any]:
        """For ``/health``: this node, Redis (its URL masked), each target's fleet as the
        last heartbeat read it, and the state of each of the agent's tasks."""
        return {"node": self.node, "redis": self.where, "reachable": self.reachable,
                "reason": self.error, "targets": self.cached,
                "tasks": self.supervisor.status()}

