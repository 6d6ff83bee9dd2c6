"""Switching together (releases mode, ``fleet_switch = "together"``): a node that built
the release of the desired commit reports it ready and waits until every live node has,
then every node switches ``current`` at once; a node that failed holds every switch.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

from deployhook.fleet.decide import decide
from deployhook.fleet.entries import READY, Desired, Outcome, Switch
from deployhook.fleet.keys import NOT_SWITCHED, SUPERSEDED, heartbeat_key, ready_key, switch_key
from deployhook.fleet.node import UNREACHABLE, Node
from deployhook.fleet.pipeline import (
    checked_replies,
    parse_beats,
    parse_outcomes,
    parse_read,
    parse_switch,
    queue_read,
    queue_ready,
    queue_switch,
)
from deployhook.git import releases

if TYPE_CHECKING:
    from deployhook.service.target import Target

log = logging.getLogger("deployhook.fleet")


class Switching(Node):
    """The agent's gate before a release's switch (the worker's ``switch_gate``)."""

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
