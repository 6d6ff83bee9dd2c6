"""What the status page's buttons do: redeploy, pause, resume and roll back a target,
each as its CLI command does it (in fleet mode too), recorded with who asked.

- A redeploy (``deployhook deploy``) is queued to the target's worker like a delivery
  (trigger ``page``); in fleet mode, once it worked, its commit becomes the fleet's
  desired commit (kind ``deploy``).
- A pause or a resume (``deployhook pause``/``resume``) writes or removes the pause file
  and takes effect at once (a resume deploys what was accepted meanwhile); each is
  recorded as an event (``pause``, ``resume``).
- A rollback (``deployhook rollback --to RELEASE``, releases mode only) runs in the git
  executor, recorded as a run (trigger ``page-rollback``); in fleet mode, once it
  worked, the fleet's desired commit (kind ``rollback``).

No Tornado, and nothing here blocks the IOLoop: the web layer
(:mod:`deployhook.web.actions`) hands each action the target and who asked.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any

from deployhook.git import releases
from deployhook.service.runs import run_rollback

if TYPE_CHECKING:
    from deployhook.fleet.agent import Fleet
    from deployhook.git.checkout import RunResult
    from deployhook.git.paused import Pause
    from deployhook.git.releases import Release
    from deployhook.record.recorder import Recorder
    from deployhook.service.target import Target

log = logging.getLogger("deployhook.actions")
REDEPLOY = "page"  # the trigger of a redeploy's run
ROLLBACK = "page-rollback"  # the trigger of a rollback's run


class Actions:
    """The page's actions on the targets of one daemon, recording in ``record`` and, in
    fleet mode, telling ``fleet``."""

    def __init__(self, record: Recorder, fleet: Fleet | None) -> None:
        self.record, self.fleet = record, fleet
        self.rolling: set[str] = set()  # targets a rollback of ours is switching
        self._tasks: set[asyncio.Task[None]] = set()

    def busy(self, name: str) -> bool:
        """True while a rollback of target ``name`` asked for here runs."""
        return name in self.rolling

    def redeploy(self, target: Target, by: str) -> None:
        """Queue a deploy of the newest commit of ``target``'s branch (tags mode: its
        newest matching tag) asked for by ``by``, through its worker; returns at once.

        Raises:
            LookupError: no branch is known yet (see :meth:`Target.redeploy`).
        """
        future = target.redeploy(by, REDEPLOY)
        log.info("%s: redeploy asked for by %s", target.name, by)
        if self.fleet is not None:
            self._spawn(self._tell_after(target, future, by))

    async def _tell_after(self, target: Target, future: asyncio.Future[RunResult],
                          by: str) -> None:
        """Once the redeploy's run ended well, tell the fleet what it deployed."""
        result = await future
        if self.fleet is None or not result.ok or not result.head_after:
            return
        ref = result.branch if result.branch.startswith("refs/tags/") else (
            f"refs/heads/{result.branch}")
        told = await self.fleet.tell(target.name, result.head_after, ref, "deploy", by)
        log.info("%s: fleet: %s", target.name, told)

    async def pause(self, target: Target, by: str) -> Pause | None:
        """Pause ``target``'s deploys as ``by``; recorded as an event; the pause.

        Raises:
            OSError: the pause file cannot be written (no checkout, a read-only disk).
        """
        before, now = await target.set_pause(by)
        again = f" (was paused {before.describe()})" if before is not None else ""
        await self.record.add_event(target.name, "pause", by, f"deploys paused{again}")
        return now

    async def resume(self, target: Target, by: str) -> Pause | None:
        """Resume ``target``'s deploys (the newest push accepted meanwhile is deployed);
        recorded as an event; the pause it ended (None: it was not paused).

        Raises:
            OSError: the pause file cannot be removed.
        """
        before, _ = await target.set_pause(None)
        reason = (f"deploys resumed (were paused {before.describe()})" if before is not None
                  else "deploys resumed (they were not paused)")
        await self.record.add_event(target.name, "resume", by, reason)
        return before

    async def releases(self, target: Target) -> list[Release]:
        """``target``'s releases, oldest first, read in the git executor ([] outside
        releases mode)."""
        if not releases.enabled(target.config):
            return []
        return await target.worker.run_in_executor(releases.releases, target.config)

    async def release(self, target: Target, name: str) -> tuple[Release, Release | None]:
        """(the release named ``name`` a rollback of ``target`` can switch to, the live
        one).

        Raises:
            LookupError: why not: the target is not in releases mode, there is no such
                release, or it is live already.
        """
        if not releases.enabled(target.config):
            raise LookupError(f"target {target.name} has deploy_mode "
                              f"{target.config.deploy_mode!r}: a rollback needs "
                              "deploy_mode = \"releases\"")
        found = await self.releases(target)
        chosen = next((r for r in found if r.name == name), None)
        if chosen is None:
            raise LookupError(f"target {target.name} has no release {name[:80]!r}")
        if chosen.live:
            raise LookupError(f"release {chosen.name} is live already")
        return chosen, next((r for r in found if r.live), None)

    def roll_back(self, target: Target, release: Release, by: str) -> None:
        """Start switching ``target``'s ``current`` back to ``release`` as ``by`` asked
        (see :func:`~deployhook.service.runs.run_rollback`); returns at once, and
        :meth:`busy` is true until it ended."""
        self.rolling.add(target.name)
        log.info("%s: rollback to %s asked for by %s", target.name, release.name, by)
        self._spawn(self._roll_back(target, release, by))

    async def _roll_back(self, target: Target, release: Release, by: str) -> None:
        try:
            ok, reason, _, after = await target.worker.run_in_executor(functools.partial(
                run_rollback, target.config, self.record.from_thread, trigger=ROLLBACK,
                which=release.name, pushers=[by]))
        finally:
            self.rolling.discard(target.name)
        log.info("%s: rollback to %s: %s", target.name, release.name,
                 reason if ok else f"FAILED: {reason}")
        if ok and after and self.fleet is not None:
            ref = f"refs/heads/{target.branch}" if target.branch else ""
            told = await self.fleet.tell(target.name, after, ref, "rollback", by)
            log.info("%s: fleet: %s", target.name, told)

    def _spawn(self, coroutine: Coroutine[Any, Any, None]) -> None:
        """Run ``coroutine`` on its own, keeping it referenced; a failure is logged."""
        task = asyncio.ensure_future(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("a page action failed", exc_info=task.exception())
