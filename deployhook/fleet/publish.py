"""Telling the fleet: a verified delivery, a deploy or rollback from the status page, or
a poll's find becomes the fleet's desired commit (a new generation, signed); what was
accepted while Redis was unreachable waits in memory and in a file, and is published
once Redis is back.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
from dataclasses import asdict, replace
from pathlib import Path
from typing import TYPE_CHECKING

from redis.exceptions import RedisError, WatchError

from deployhook.fleet.entries import Desired, Outcome, Told
from deployhook.fleet.keys import (
    DELIVERY_TTL,
    PUBLISH_TRIES,
    delivery_key,
    desired_key,
    outcomes_key,
)
from deployhook.fleet.pipeline import (
    checked_replies,
    next_desired,
    parse_desired,
    parse_outcomes,
    queue_publish,
)
from deployhook.fleet.reconcile import Reconciling
from deployhook.forges.delivery import Push

if TYPE_CHECKING:
    from deployhook.service.target import Target

log = logging.getLogger("deployhook.fleet")


class Publishing(Reconciling):
    """The agent's side that sets desired states (a poll or a redelivery that sets none
    pokes the reconcile)."""

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
