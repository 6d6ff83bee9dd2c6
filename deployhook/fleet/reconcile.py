"""Reconciling: bringing this node's checkout of each target to the fleet's desired
commit through the target's usual worker (or a rollback to this node's release of it),
unless this node already reported on that generation, and writing the outcome.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from redis.exceptions import RedisError

from deployhook.fleet.decide import NodeState
from deployhook.fleet.entries import Desired, Outcome
from deployhook.fleet.keys import SUPERSEDED, desired_key, outcomes_key
from deployhook.fleet.node import Node
from deployhook.fleet.pipeline import checked_replies, parse_desired, parse_outcomes
from deployhook.forges.delivery import Push
from deployhook.git import releases
from deployhook.git.checkout import RunResult
from deployhook.redact import redact
from deployhook.service.rules import deploys
from deployhook.service.runs import run_rollback

if TYPE_CHECKING:
    from deployhook.service.target import Target

log = logging.getLogger("deployhook.fleet")


class Reconciling(Node):
    """The agent's reconcile: at start, on each notification, after a lost connection
    comes back, and every ``reconcile_interval`` seconds."""

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
        deploys are paused here.  While a run is under way with nothing waiting, the
        reconcile is put off until it ends (:meth:`_ran`)."""
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
        if target.worker.busy and not target.worker.waiting:
            # A run is under way and nothing waits: it may reach the desired commit by
            # itself (it fetches the branch); reconcile again once it ends rather than
            # queue a run now that could only repeat it (a burst: two runs at most).
            self._after_run.add(name)
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
        to, write our outcome for it; a reconcile put off until this run ended (see
        :meth:`reconcile`) runs now."""
        self._notify(target.name)
        if target.name in self._after_run:
            self._after_run.discard(target.name)
            self.poke(target.name)
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
