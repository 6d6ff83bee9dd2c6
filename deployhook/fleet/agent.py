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

This module imports ``redis`` (redis.asyncio: nothing blocks the IOLoop); the hub
imports it only when ``redis_url`` is set.  The agent is built from the parts it uses
(the config, the targets, the git executor, the record, a subscription to run
results), not from the hub, which builds it.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import os
import time
from collections.abc import Callable, Coroutine, Mapping
from concurrent.futures import Executor
from dataclasses import asdict, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError, WatchError
from redis.exceptions import TimeoutError as RedisTimeoutError

from deployhook.fleet.checks import Refusals
from deployhook.fleet.credentials import fleet_key, masked, password, tls
from deployhook.fleet.decide import NodeState, decide, states, view
from deployhook.fleet.entries import READY, Desired, Outcome, Switch, Told
from deployhook.fleet.keys import (
    CHANNEL,
    DELIVERY_TTL,
    NOT_SWITCHED,
    PROGRESS,
    SUPERSEDED,
    SWITCH,
    delivery_key,
    desired_key,
    heartbeat_every,
    heartbeat_key,
    heartbeat_ttl,
    outcomes_key,
    ready_key,
    switch_key,
)
from deployhook.fleet.pipeline import (
    checked_replies,
    next_desired,
    parse_beats,
    parse_desired,
    parse_outcomes,
    parse_read,
    parse_switch,
    queue_beat,
    queue_publish,
    queue_read,
    queue_ready,
    queue_report,
    queue_switch,
)
from deployhook.forges.delivery import Push
from deployhook.git import releases
from deployhook.git.checkout import RunResult
from deployhook.redact import redact
from deployhook.service.rules import deploys
from deployhook.service.runs import run_rollback
from deployhook.service.supervise import Supervisor

if TYPE_CHECKING:
    from deployhook.record.recorder import Recorder
    from deployhook.service.target import Target
    from deployhook.settings import Config

log = logging.getLogger("deployhook.fleet")
RETRY = 1.0  # seconds between attempts while Redis is unreachable or something waits
TIMEOUT = 3.0  # seconds for one Redis command (connecting: 2 s)
PUBLISH_TRIES = 10  # WATCH rounds lost to concurrent writers before giving up
# Redis cannot be reached: the loops wait and try again; any other failure (Redis
# refusing a command, a bug) goes to the supervisor.
UNREACHABLE = (RedisConnectionError, RedisTimeoutError, OSError)


class Fleet:
    """This node's agent: heartbeat, notifications, reconcile, outcomes."""

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
        self._rolling: set[str] = set()  # targets a rollback (or :meth:`tell`) is switching
        self.versions: dict[str, int] = {}  # target -> changes of its fleet seen (notified)
        self._changed: dict[str, asyncio.Event] = {}  # set at the next change, then new
        self.switches: dict[str, Switch] = {}  # target -> the last switch announced
        self.loop: asyncio.AbstractEventLoop | None = None
        subscribe(self._ran)

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

    def _spawn(self, coroutine: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

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
                        self._heard(_text(message["channel"]), _text(message["data"]))
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

    async def _beat(self) -> None:
        pipe = self.client.pipeline(transaction=False)
        queue_beat(pipe, self.node, {t.name: t.head for t in self.targets.values()}, self.ttl)
        await pipe.execute()

    async def _flush(self) -> None:
        """Publish the desired states accepted while Redis was unreachable (unless a
        newer one is there), and write our outcomes that could not be written."""
        for name, desired in list(self.pending.items()):
            current = parse_desired(name, await self.client.hgetall(desired_key(name)),
                                    self.key, self.refusals)
            if current is None or current.time <= desired.time:
                if desired.delivery != "-":
                    await self.client.set(delivery_key(name, desired.delivery), self.node,
                                          nx=True, ex=DELIVERY_TTL)
                done = await self._publish(desired)
                log.info("fleet: told the fleet %s of %s at last (generation %d)",
                         desired.sha[:12], name, done.generation)
            if self.pending.get(name) is desired:  # not replaced by a newer one meanwhile
                del self.pending[name]
            await self._keep_pending()
        for name, outcome in list(self.outbox.items()):
            await self._write(name, outcome)

    async def _keep_pending(self) -> None:
        """Write :attr:`pending` to its file (in a thread), so that a restart before
        Redis is back still tells the fleet."""
        await asyncio.get_running_loop().run_in_executor(
            self.executor, save_pending, self.pending_path, dict(self.pending))

    def _reached(self) -> None:
        if self.reachable is False:
            log.warning("fleet: Redis at %s is reachable again", self.where)
            self.reconcile_all()  # what was decided meanwhile (notifications are lost)
        self.reachable, self.error = True, ""

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

    # -- reconciling -------------------------------------------------------------------
    def reconcile_all(self) -> None:
        for name in self.targets:
            self.poke(name)

    def poke(self, name: str) -> None:
        """Reconcile target ``name`` soon (once more if a reconcile of it runs)."""
        if name not in self.targets or self.closing:
            return
        running = self._reconciling.get(name)
        if running is not None and not running.done():
            self._again.add(name)
            return
        self._reconciling[name] = asyncio.ensure_future(self._reconcile_loop(name))

    async def _reconcile_loop(self, name: str) -> None:
        while True:
            self._again.discard(name)
            try:
                await self.reconcile(self.targets[name])
            except (RedisError, OSError) as exc:
                self._unreachable(exc)
            except Exception:
                log.exception("fleet: reconciling %s failed", name)
            if name not in self._again or self.closing:
                return

    async def reconcile(self, target: Target) -> None:
        """Bring ``target``'s checkout to the desired commit unless this node already
        reported on its generation (deployed or failed), a run of ours covers it, or
        deploys are paused here."""
        name = target.name
        pipe = self.client.pipeline(transaction=False)
        pipe.hgetall(desired_key(name))
        pipe.hget(outcomes_key(name), self.node)
        raw, mine = checked_replies(self.refusals, await pipe.execute(raise_on_error=False),
                                    (desired_key(name), outcomes_key(name)))
        desired = parse_desired(name, raw, self.key, self.refusals)
        if desired is None:
            return
        outcome = parse_outcomes(name, {self.node: mine}, self.key, self.refusals).get(
            self.node) if mine else None
        covering = self.covering.get(name)
        if (outcome is not None and outcome.generation >= desired.generation) or (
                covering is not None and covering.generation >= desired.generation) or (
                target.paused is not None or name in self._rolling):
            return
        last = target.last_run
        if target.head == desired.sha and (last is None or last.get("ok")):
            await self._write(name, Outcome(self.node, desired.generation, desired.sha,
                                            target.head, True, "at the desired commit"))
            return
        if desired.kind == "rollback":
            await self._roll_back(target, desired)
            return
        refused = _refused(target, desired)
        if refused:
            await self._write(name, Outcome(self.node, desired.generation, desired.sha,
                                            target.head, False, refused))
            return
        self.covering[name] = desired
        log.info("%s: fleet: deploying %s (generation %d, from %s)", name, desired.sha[:12],
                 desired.generation, desired.by)
        target.worker.submit(_push(desired), None, trigger="fleet")

    async def _roll_back(self, target: Target, desired: Desired) -> None:
        """Switch ``current`` to this node's release of the desired commit (a
        ``deployhook rollback`` on another node), recorded; write the outcome."""
        name, config = target.name, target.config
        if not releases.enabled(config):
            ok, reason = False, "a rollback needs deploy_mode = \"releases\" on this node"
        else:
            self._rolling.add(name)
            try:
                ok, reason = await target.worker.run_in_executor(
                    self._recorded_rollback, target, desired)
            finally:
                self._rolling.discard(name)
        head = await target.worker.run_in_executor(releases.live_sha, config) \
            if releases.enabled(config) else target.head
        log.info("%s: fleet: rollback to %s: %s", name, desired.sha[:12], reason)
        await self._write(name, Outcome(self.node, desired.generation, desired.sha, head,
                                        ok and head == desired.sha, redact(reason)[:300]))

    def _recorded_rollback(self, target: Target, desired: Desired) -> tuple[bool, str]:
        """In a git thread: the rollback to ``desired``, recorded as a run (trigger fleet)."""
        ok, reason, _, _ = run_rollback(target.config, self.record.from_thread, trigger="fleet",
                                        which=desired.sha,
                                        pushers=[f"fleet: {desired.by}"[:200]])
        return ok, reason

    def _ran(self, target: Target, result: RunResult) -> None:
        """After each run of ours: when it covered the generation we bring this target
        to, write our outcome for it."""
        self._notify(target.name)
        covering = self.covering.get(target.name)
        if covering is None:
            return
        covered = covering.sha in result.contains or result.head_after == covering.sha
        if (result.ok or result.reason.startswith(SUPERSEDED)) and not covered:
            return  # a run that began before ours was queued: ours comes next
        del self.covering[target.name]
        ok = result.ok and (result.head_after == covering.sha or (
            covering.kind != "rollback" and bool(result.contains.get(covering.sha))))
        reason = "deployed" if ok else (result.reason if not result.ok else (
            f"{covering.sha[:12]} is not in {covering.ref} after fetching"))
        outcome = Outcome(self.node, covering.generation, covering.sha, result.head_after,
                          ok, redact(reason)[:300])
        self.local[target.name] = (covering.generation, NodeState(
            self.node, "deployed" if ok else "failed", result.head_after, outcome.reason,
            outcome.time))
        self.outbox[target.name] = outcome
        self._spawn(self._write_quietly(target.name, outcome))

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

    # -- switching together (releases mode) --------------------------------------------
    def _gate(self, target: Target, sha: str) -> str:
        """In a git thread, once the release of ``sha`` is built: "" to switch
        ``current`` now, else why not (see :meth:`together`); blocks meanwhile.  Only
        in releases mode with ``fleet_switch = "together"``: else "" at once."""
        config = target.config
        if not releases.enabled(config) or config.fleet_switch != "together" or (
                self.loop is None or self.closing):
            return ""
        return asyncio.run_coroutine_threadsafe(self.together(target, sha),
                                                self.loop).result()

    async def together(self, target: Target, sha: str) -> str:
        """Report this node's release of ``sha`` built (for the desired generation of
        that commit) and wait until every live node has: "" then (whoever sees it first
        writes the switch, signed; every node switches on its message); or why not: a
        node failed its generation (none switches), a newer commit is wanted, or the
        fleet did not get ready within ``git_timeout`` + ``post_deploy_timeout``.
        Redis unreachable, or no desired state: "" (this node switches alone, as it
        deploys alone then)."""
        name, config = target.name, target.config
        loop = asyncio.get_running_loop()
        deadline = loop.time() + config.git_timeout + config.post_deploy_timeout
        reported = -1
        while True:
            since = self.version(name)
            try:
                desired, ready, outcomes, beats, switch = await self._switch_state(name)
                if desired is None:
                    return ""
                if switch is not None and (switch.generation, switch.sha) == (
                        desired.generation, sha):
                    return ""
                if desired.sha == sha and reported != desired.generation:
                    await self._report_ready(name, desired, target.head)
                    reported = desired.generation
                    continue
                if desired.sha == sha:
                    verdict, why = decide(name, desired, {**ready, self.node: Outcome(
                        self.node, desired.generation, sha, None, True, "built")},
                        outcomes, beats)
                    if verdict == "abort":
                        return why
                    if verdict == "switch":
                        await self._decide_switch(Switch(name, desired.generation, sha,
                                                         self.node))
                        return ""
                elif reported >= 0 and desired.generation > reported:
                    return f"{SUPERSEDED}the fleet now wants {desired.sha[:12]}"
            except UNREACHABLE as exc:
                self._unreachable(exc)
                log.warning("%s: fleet: switching to %s alone: %s", name, sha[:12], self.error)
                return ""
            remaining = deadline - loop.time()
            if remaining <= 0:
                return (f"{NOT_SWITCHED}the fleet did not build {sha[:12]} within "
                        f"{config.git_timeout + config.post_deploy_timeout:g} s")
            await self.changed(name, since, min(remaining, 1.0))
            announced = self.switches.get(name)
            if announced is not None and announced.sha == sha and (
                    announced.generation == reported):
                return ""  # the message said so: no read before switching

    async def _switch_state(self, name: str) -> tuple[
            Desired | None, dict[str, Outcome], dict[str, Outcome], dict[str, Any],
            Switch | None]:
        """Target ``name``'s desired state, readiness, outcomes, live nodes and switch.

        Raises:
            RedisError, OSError: Redis is unreachable.
        """
        pipe = self.client.pipeline(transaction=False)
        pipe.hgetall(ready_key(name))
        pipe.hgetall(switch_key(name))
        queue_read(pipe, [name])
        replies = await pipe.execute(raise_on_error=False)
        raw_ready, raw_switch = checked_replies(self.refusals, replies[:2],
                                                (ready_key(name), switch_key(name)))
        desired, outcomes, nodes = parse_read([name], replies[2:], self.key, self.refusals)
        beats = parse_beats(nodes, await self.client.mget(
            [heartbeat_key(n) for n in nodes]), self.refusals) if nodes else {}
        return (desired[name], parse_outcomes(name, raw_ready, self.key, self.refusals, READY),
                outcomes[name], beats, parse_switch(name, raw_switch, self.key, self.refusals))

    async def _report_ready(self, name: str, desired: Desired, head: str | None) -> None:
        pipe = self.client.pipeline(transaction=False)
        queue_ready(pipe, name, Outcome(self.node, desired.generation, desired.sha, head, True,
                                        "built, waiting to switch"), self.key)
        await pipe.execute()

    async def _decide_switch(self, switch: Switch) -> None:
        log.info("%s: fleet: every live node built %s: switch (generation %d)",
                 switch.target, switch.sha[:12], switch.generation)
        pipe = self.client.pipeline(transaction=False)
        queue_switch(pipe, switch, self.key)
        await pipe.execute()

    # -- deliveries --------------------------------------------------------------------
    async def _publish(self, desired: Desired) -> Desired:
        """Make ``desired`` the next generation of its target, signed (a transaction
        under ``WATCH``, tried again when another writer came between); return it.

        Raises:
            RedisError, OSError: Redis is unreachable, refused, or the key kept changing.
        """
        key = desired_key(desired.target)
        async with self.client.pipeline(transaction=True) as pipe:
            for _ in range(PUBLISH_TRIES):
                try:
                    await pipe.watch(key)
                    done = next_desired(desired, await pipe.hget(key, "generation"))
                    pipe.multi()
                    queue_publish(pipe, done, self.key)
                    await pipe.execute()
                    return done
                except WatchError:
                    continue
        raise WatchError(f"{key} kept changing during {PUBLISH_TRIES} tries")

    async def accepted(self, target: Target, push: Push) -> Told:
        """Tell the fleet of a verified push for ``target``: a new delivery sets the
        desired commit (a new generation, covered by our own worker's run); a
        redelivery does not, unless a node failed its generation (then those nodes try
        again, through their agents).  Redis unreachable: the push waits to be published
        (never raises)."""
        desired = Desired(target.name, push.after, push.ref, push.delivery_id,
                          f"{self.node} (push by {push.pusher})"[:200])
        try:
            new = push.delivery_id == "-" or bool(await self.client.set(
                delivery_key(target.name, push.delivery_id), self.node, nx=True,
                ex=DELIVERY_TTL))
            if not new:
                current, failed = await self._current(target.name)
                if current is None or current.delivery != push.delivery_id or not failed:
                    return Told(current, False)
                log.info("%s: fleet: redelivery %s: %s try generation %d again", target.name,
                         push.delivery_id, ", ".join(failed), current.generation)
                return Told(await self._publish(current), False)  # their agents retry
            done = await self._publish(desired)
        except (RedisError, OSError) as exc:
            self._unreachable(exc)
            self.pending[target.name] = desired
            await self._keep_pending()
            return Told(None, True, self.error)
        self.covering[target.name] = done
        return Told(done, True)

    async def tell(self, name: str, sha: str, ref: str, kind: str, by: str) -> str:
        """After a deploy (``kind`` "deploy") or rollback ("rollback") of target ``name``
        that reached ``sha`` here at ``by``'s request (the status page's buttons): make it
        the fleet's desired commit (a new generation; this node's outcome: done), as
        ``deployhook deploy`` and ``rollback`` do (:func:`deployhook.cli.fleet.tell`), so
        the reconcile never undoes it and the other nodes follow.  Redis unreachable: it
        waits to be published, as a delivery does.  Returns what happened (for the log);
        never raises."""
        desired = Desired(name, sha, ref, f"{kind}-{time.time_ns()}",
                          f"{self.node} ({kind} by {by})"[:200], kind)
        self._rolling.add(name)  # our own reconcile leaves it alone meanwhile
        try:
            done = await self._publish(desired)
            await self._write(name, Outcome(self.node, done.generation, sha, sha, True, kind))
        except (RedisError, OSError) as exc:
            self._unreachable(exc)
            self.pending[name] = desired
            await self._keep_pending()
            return f"the fleet is told once Redis is back ({self.error})"
        finally:
            self._rolling.discard(name)
        return f"{sha[:12]} is the fleet's desired commit (generation {done.generation})"
    async def polled(self, target: Target, push: Push) -> bool:
        """A poll of ``target`` found ``push``'s commit, which no run here deployed (see
        :mod:`~deployhook.service.poller`): tell the fleet as a delivery would, under the
        delivery ID ``poll-<sha>`` (so that of the nodes whose polls find it, the first
        tells the fleet), unless the fleet's desired commit is that one already (the
        reconcile brings it here).  True when this node deploys it now: it told the
        fleet, or Redis is unreachable (as with a delivery: the fleet is told once it
        is back).  Never raises."""
        try:
            current, _ = await self._current(target.name)
        except (RedisError, OSError) as exc:
            self._unreachable(exc)
            current = None
        if current is not None and (current.sha, current.ref) == (push.after, push.ref):
            self.poke(target.name)
            return False
        told = await self.accepted(target, replace(push, delivery_id=f"poll-{push.after}"))
        if not told.new:
            self.poke(target.name)
        return told.new

    def uncover(self, name: str) -> None:
        """No run of ours covers the generation :meth:`accepted` set for target ``name``
        (a delivery this node had deployed already): the reconcile reports it."""
        self.covering.pop(name, None)
        self.poke(name)

    async def _current(self, name: str) -> tuple[Desired | None, list[str]]:
        """The desired state of ``name`` and the nodes that failed its generation."""
        pipe = self.client.pipeline(transaction=False)
        pipe.hgetall(desired_key(name))
        pipe.hgetall(outcomes_key(name))
        raw, outcomes = checked_replies(
            self.refusals, await pipe.execute(raise_on_error=False),
            (desired_key(name), outcomes_key(name)))
        desired = parse_desired(name, raw, self.key, self.refusals)
        if desired is None:
            return None, []
        failed = [o.node for o in parse_outcomes(name, outcomes, self.key,
                                                 self.refusals).values()
                  if o.generation == desired.generation and not o.ok]
        return desired, failed

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


def save_pending(path: Path, pending: dict[str, Desired]) -> None:
    """Keep the desired states not published yet in ``path`` (removed when none);
    blocking.  A failure is logged: they still wait in memory."""
    try:
        if not pending:
            path.unlink(missing_ok=True)
            return
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps({t: asdict(d) for t, d in pending.items()}))
        os.replace(tmp, path)
    except OSError as exc:
        log.error("cannot keep the fleet's pending desired state in %s: %s", path, exc)


def load_pending(path: Path) -> dict[str, Desired]:
    """What :func:`save_pending` kept (nothing when the file is missing or damaged)."""
    try:
        return {t: Desired(**d) for t, d in json.loads(path.read_text()).items()}
    except (OSError, ValueError, TypeError, AttributeError):
        return {}


def _push(desired: Desired) -> Push:
    """The push a reconcile hands the worker for ``desired``."""
    return Push(ref=desired.ref, before="", after=desired.sha, deleted=False, repository="",
                default_branch=None, pusher=f"fleet: {desired.by}"[:200],
                delivery_id=desired.delivery)


def _refused(target: Target, desired: Desired) -> str:
    """Why this node cannot deploy ``desired`` ("" when it can): the decision a
    delivery of its ref gets here (its branch, or a tag matching ``tags``)."""
    why = deploys(desired.ref, desired.sha, target.branch, target.config.tags)
    return f"this node does not deploy {desired.ref}: {why}" if why else ""


def _text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)
