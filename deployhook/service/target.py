"""A target: one deployed checkout with its settings, secrets, checkout and worker.

No Tornado and no routes: the web layer is handed the targets by name.  Everything
blocking runs in the shared git executor.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from deployhook.forges.delivery import Push
from deployhook.git import paused, releases
from deployhook.git.checkout import Checkout, RunResult
from deployhook.record.recorder import Recorder
from deployhook.secret import SecretSource
from deployhook.service.pollstate import PollState
from deployhook.service.worker import GitWorker
from deployhook.settings import TargetConfig

log = logging.getLogger("deployhook")


class Target:
    """One checkout kept in step with one repository's branch (or tags).

    ``repository``, ``branch`` and ``head`` are resolved by :meth:`start`; ``head``
    and ``last_run`` follow every deploy, and the periodic refresh, so they
    say what the checkout and the record say, whoever deployed.
    """

    def __init__(self, config: TargetConfig, executor: ThreadPoolExecutor, record: Recorder,
                 gate: asyncio.Semaphore | None = None,
                 on_result: Callable[[Target, RunResult], None] | None = None,
                 on_start: Callable[[Target, list[Push]], None] | None = None) -> None:
        self.name = config.name
        self.config = config
        self.secret = SecretSource(config.secret_file, config.secret)
        self.checkout = Checkout(config)
        self.record = record
        self._on_result = on_result
        self.worker = GitWorker(self.checkout, executor, self._result, record, self.name, gate,
                                on_start and (lambda pushes: on_start(self, pushes)))
        self.repository: str | None = config.repository
        self.branch: str | None = config.branch
        self.head: str | None = None
        self.last_run: dict[str, Any] | None = None  # the record's newest finished run
        self.run_count: int | None = None  # its runs in the record (None: not read yet)
        self.generation = 0  # bumped by each deploy result: a slower refresh is stale
        self.paused: paused.Pause | None = None  # as the last refresh read it
        self.pause_changes = 0  # pauses and resumes of this process (a slower read is stale)
        self.polling = PollState()  # deliveries and polls of its remote (service/poller.py)

    def __repr__(self) -> str:
        return f"Target({self.name!r}, {self.config.repo_path!r})"

    async def start(self) -> None:
        """Resolve the deployed branch, the repository and HEAD (in the executor), then
        redeploy what an earlier process accepted and never finished.

        Raises:
            ConfigError: ``repo_path`` is no checkout and ``repo_url`` is unset, or the
                checkout's HEAD is detached and neither ``branch`` nor ``tags`` is set.
        """
        resolved = await self.worker.run_in_executor(releases.resolve, self.checkout,
                                                     self.config)
        self.branch, self.repository, self.head = resolved
        what = f"tags {self.config.tags}" if self.config.tags else (
            self.branch or "the default branch")
        log.info("%s: deploying %s of %s in %s (HEAD %s)", self.name, what,
                 self.repository or "any repository", self.config.repo_path,
                 (self.head or "none")[:12])
        if not self.repository:
            log.warning("%s: repository is not set and the remote's URL does not name it: "
                        "deliveries for any repository signed with its secret are accepted",
                        self.name)
        self.paused = await self.worker.run_in_executor(paused.read, self.config.repo_path)
        if self.paused is not None:
            log.warning("%s: deploys are paused %s: deliveries are answered 202 paused "
                        "until 'deployhook resume'", self.name, self.paused.describe())
            return
        await self.recover()

    async def recover(self, trigger: str = "recovery") -> None:
        """Redeploy the accepted deliveries of this target that no run finished (a crash,
        a kill; or, with ``trigger`` "resume", those accepted while paused), so that no
        accepted push is lost.  They go to the worker together: one run deploys the
        newest."""
        unfinished = await self.record.unfinished_deliveries(self.name)
        pushes = [(row["id"], recorded_push(row)) for row in unfinished
                  if row["ref"] and row["after"]]
        for row, push in pushes:
            if self.config.tags or self.branch is None or push.branch == self.branch:
                self.worker.submit(push, row, trigger=trigger)
        if pushes and trigger == "resume":
            log.warning("%s: deploying the newest of %d deliveries accepted while paused",
                        self.name, len(pushes))
        elif pushes:
            log.warning("%s: redeploying %d accepted deliveries that never finished",
                        self.name, len(pushes))

    def switch(self, config: TargetConfig, checkout: Checkout,
               resolved: tuple[str | None, str | None, str | None]) -> None:
        """Take the settings of a reload while no deploy runs: ``checkout`` (the old one is
        closed), the secret, and the branch, repository and HEAD ``resolved`` for them."""
        self.checkout.close()
        self.config, self.checkout = config, checkout
        self.worker.use(checkout)
        self.secret = SecretSource(config.secret_file, config.secret)
        self.branch, self.repository, self.head = resolved

    def pause_read(self, state: paused.Pause | None) -> bool:
        """Take the pause a refresh read; True when that is a resume (paused before, not
        now): the caller then deploys what was accepted meanwhile (:meth:`recover`)."""
        was, self.paused = self.paused, state
        if was is None and state is not None:
            log.warning("%s: deploys paused %s", self.name, state.describe())
        if was is not None and state is None:
            log.warning("%s: deploys resumed (were paused %s)", self.name, was.describe())
            return True
        return False

    def pause_found(self, state: paused.Pause) -> None:
        """Take ``state``, the pause a push just found, when no refresh has read it yet:
        from now on every refresh reads this target's pause (and sees its resume), and
        a read a refresh had under way is stale."""
        if self.paused is None:
            self.pause_changes += 1
            self.pause_read(state)

    async def set_pause(self, by: str | None) -> tuple[paused.Pause | None, paused.Pause | None]:
        """Pause this target's deploys as ``by`` (None: resume them), as ``deployhook
        pause``/``resume`` do, in the executor; take the new state at once (a resume
        deploys what was accepted meanwhile, :meth:`recover`).  Returns (the pause
        before, the pause now).

        Raises:
            OSError: the pause file cannot be written or removed (or there is no checkout).
        """
        path = self.config.repo_path
        before = await self.worker.run_in_executor(paused.read, path)
        if by is not None:
            now: paused.Pause | None = await self.worker.run_in_executor(paused.pause, path, by)
        else:
            await self.worker.run_in_executor(paused.resume, path)
            now = None
        self.pause_changes += 1
        if self.pause_read(now):
            await self.recover("resume")
        return before, now

    def redeploy(self, by: str, trigger: str) -> asyncio.Future[RunResult]:
        """Queue a deploy of the newest commit of the deployed branch (in tags mode, the
        newest matching tag) asked for by ``by``, through the worker (see
        :meth:`GitWorker.deploy_now`); the future resolves with its run.

        Raises:
            LookupError: no branch is known yet (no checkout and no ``branch`` set).
        """
        if self.config.tags is None and self.branch is None:
            raise LookupError("no branch to deploy yet: set branch, or push once")
        return self.worker.deploy_now(self.branch or "", by, trigger)

    def _result(self, result: RunResult) -> None:
        self.generation += 1
        if result.head_after:
            self.head = result.head_after
        self.last_run = result_summary(result)
        if self.run_count is not None and result.run_id is not None:
            self.run_count += 1  # until the next refresh reads the record (after pruning)
        if self.branch is None and result.ok and not self.config.tags:
            self.branch = result.branch
        if self._on_result is not None:
            self._on_result(self, result)

    def refreshed(self, head: str | None, recorded: tuple[dict[str, Any] | None, int] | None,
                  generation: int) -> bool:
        """Take what a refresh read (HEAD from the files, the last run and the run count
        from the record) unless a deploy ended or runs meanwhile; True when HEAD moved
        without a deploy of ours (``deployhook deploy``, a person)."""
        if generation != self.generation or self.worker.busy:
            return False
        if recorded is not None:
            self.last_run, self.run_count = recorded
        if head is None or head == self.head:
            return False
        log.info("%s: HEAD moved outside the daemon: %s -> %s", self.name,
                 (self.head or "none")[:12], head[:12])
        self.head = head
        return True

    def last_deploy(self) -> dict[str, Any] | None:
        """Its newest finished run (the record's, or this process's until the record
        has been read), as in ``/health``'s ``last_deploy``; None before any."""
        if self.last_run is None and self.worker.last is not None:
            return result_summary(self.worker.last)
        return self.last_run

    def attention(self) -> tuple[str, ...]:
        """What about it needs a look, of ``deploying``, ``failing`` (its last deploy
        failed) and ``paused``, in that order (``()``: none)."""
        last = self.last_deploy()
        return tuple(flag for flag, on in (
            ("deploying", self.worker.busy), ("failing", last is not None and not last["ok"]),
            ("paused", self.paused is not None)) if on)

    def status(self) -> dict[str, Any]:
        """This target for ``/health`` (no secrets, no credentials, no paths)."""
        last = self.last_deploy()
        return {
            "repository": self.repository,
            "branch": self.branch,
            "tags": self.config.tags,
            "head": self.head,
            "deploying": self.worker.busy,
            "runs": self.worker.runs if self.run_count is None else self.run_count,
            "last_deploy": last,
            "paused": None if self.paused is None else {
                "by": self.paused.by, "since": self.paused.since},
            "poll": self.polling.status(self.config.poll_interval),
        }

    def close(self) -> None:
        self.checkout.close()


def only_target(targets: Mapping[str, Target]) -> Target | None:
    """The one target of a config without ``targets`` (or with exactly one), else None."""
    return next(iter(targets.values())) if len(targets) == 1 else None


def result_summary(result: RunResult) -> dict[str, Any]:
    """A deploy result of this process as in /health's ``last_deploy``."""
    return {"ok": result.ok, "run": result.run_id, "trigger": None,
            "head_before": result.head_before, "head_after": result.head_after,
            "duration": round(result.duration, 3), "reason": result.reason}


def recorded_summary(run: dict[str, Any]) -> dict[str, Any]:
    """A recorded run as in /health's ``last_deploy``."""
    return {"ok": run["outcome"] == "ok", "run": run["id"], "trigger": run["trigger"],
            "head_before": run["head_before"], "head_after": run["head_after"],
            "duration": run["duration"], "reason": run["reason"]}


def recorded_push(row: dict[str, Any]) -> Push:
    """The Push a recorded delivery row stands for."""
    return Push(ref=row["ref"], before=row["before"] or "", after=row["after"], deleted=False,
                repository="", default_branch=None, pusher=row["pusher"] or "unknown",
                delivery_id=row["delivery_id"])
