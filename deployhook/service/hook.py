"""DeployHook: the runtime behind the handlers, one per deployed checkout.

It holds the configuration, the secret source, the checkout, the git worker
and the reloader, and the target facts (repository and branch) resolved at
start-up.  Mount it in any Tornado application with :meth:`DeployHook.routes`.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from tornado.ioloop import PeriodicCallback

from deployhook.daemon.reload import Reloader, reexec
from deployhook.forges.delivery import Push
from deployhook.git.checkout import Checkout, RunResult, resolve_target
from deployhook.git.headref import read_head
from deployhook.network import parse_networks
from deployhook.record.recorder import Recorder
from deployhook.secret import SecretSource
from deployhook.service.worker import GitWorker
from deployhook.settings import Config
from deployhook.web.access import Access

log = logging.getLogger("deployhook")
RESTART_KEYS = ("address", "port", "webhook_path", "workers", "state_db")
WATCH_EVERY = 0.25  # seconds between reads of the checkout's HEAD and the record's last run


class DeployHook:
    """Everything a deployhook endpoint needs; create it, ``await start()``, mount ``routes()``."""

    def __init__(self, config: Config, on_exit: Callable[[], None] | None = None,
                 on_reexec: Callable[[], None] | None = None) -> None:
        """``on_exit`` / ``on_reexec``: how the ``exit`` / re-executing reloads end this
        process (the daemon drains first); by default the IOLoop stops / the process
        re-executes once this hook is closed (see :class:`~deployhook.daemon.reload.Reloader`)."""
        self.config = config
        self.secret = SecretSource(config.secret_file, config.secret)
        self.allowed = parse_networks(config.allowed_networks, "allowed_networks")
        self.trusted = parse_networks(config.trusted_proxies, "trusted_proxies")
        self.access = Access(self)  # who may read the record (pages, API, /health)
        self.checkout = Checkout(config)
        self.executor = ThreadPoolExecutor(config.workers, thread_name_prefix="deployhook-git")
        self.record = Recorder(config.state_db)
        self.worker = GitWorker(self.checkout, self.executor, self._on_result, self.record)
        self.reloader = Reloader(config.reload, self.busy, on_exit,
                                 on_reexec or self._close_and_reexec, repo_path=config.repo_path)
        self.repository: str | None = config.repository
        self.branch: str | None = config.branch
        self.head: str | None = None
        self.started = time.time()
        self.in_flight = 0
        self.listeners: list[Callable[[RunResult], None]] = []
        # Called when HEAD changed without a deploy of ours (deployhook deploy, a person).
        self.head_listeners: list[Callable[[], None]] = []
        self.last_run: dict[str, Any] | None = None  # the record's newest finished run
        self.run_count: int | None = None  # runs in the record (None: record unreadable)
        self._generation = 0  # bumped by each deploy result: a slower watch read is stale
        self._watch: PeriodicCallback | None = None
        self._watching: asyncio.Future[None] | None = None

    def _close_and_reexec(self) -> None:
        """Default ``on_reexec`` (an embedding application): write the record's queue,
        stop the git executor (nothing runs: the reloader waited), then exec."""
        self.close(wait=True)
        reexec()

    def busy(self) -> bool:
        """True while a deploy runs or waits, or a webhook response is unsent."""
        return self.worker.busy or self.in_flight > 0

    async def start(self) -> None:
        """Resolve the deployed branch, the repository and HEAD (in the executor).

        Raises:
            ConfigError: ``repo_path`` is no checkout and ``repo_url`` is unset,
                or the checkout's HEAD is detached and ``branch`` is unset.
        """
        target = await self.worker.run_in_executor(resolve_target, self.checkout, self.config)
        self.branch, self.repository, self.head = target
        log.info("deploying %s of %s in %s (HEAD %s)", self.branch or "the default branch",
                 self.repository or "any repository", self.config.repo_path,
                 (self.head or "none")[:12])
        if not self.repository:
            log.warning("repository is not set and the remote is not on GitHub: "
                        "deliveries from any repository signed with the secret are accepted")
        await self.recover()
        await self.refresh()
        self._watch = PeriodicCallback(self._tick, WATCH_EVERY * 1000)
        self._watch.start()

    def _tick(self) -> None:
        if self._watching is None or self._watching.done():
            self._watching = asyncio.ensure_future(self.refresh())

    async def refresh(self) -> None:
        """Re-read HEAD from the checkout's files and the last run and the run count
        from the record (both off the IOLoop), so what the daemon reports as deployed
        is what the checkout and the record say, whoever deployed.  Never raises: an
        unreadable checkout or record keeps the last known values."""
        generation = self._generation
        repo_path = self.config.repo_path
        head = await asyncio.get_running_loop().run_in_executor(None, read_head, repo_path)
        try:
            recorded: tuple[dict[str, Any] | None, int] | None = await self.record.run(
                _last_and_count)
        except Exception as exc:  # reported where the record is written
            log.debug("cannot read the deployment record: %s", exc)
            recorded = None
        if generation != self._generation or self.worker.busy:
            return  # a deploy ended or runs meanwhile: its own result is newer
        if recorded is not None:
            self.last_run, self.run_count = recorded
        if head is not None and head != self.head:
            log.info("HEAD moved outside the daemon: %s -> %s",
                     (self.head or "none")[:12], head[:12])
            self.head = head
            for listener in self.head_listeners:
                listener()

    async def recover(self) -> None:
        """After a crash: mark runs left running as interrupted and redeploy the
        accepted pushes they (or nobody) covered, so no accepted push is lost."""
        keep_runs, keep_days = self.config.keep_runs, self.config.keep_days
        interrupted = await self.record.run(lambda s: s.interrupt_unfinished())
        unfinished = await self.record.run(lambda s: s.unfinished_deliveries())
        await self.record.run(lambda s: s.prune(keep_runs, keep_days))
        if interrupted:
            log.warning("runs %s were interrupted by the end of the last process",
                        ", ".join(map(str, interrupted)))
        pushes = [(row["id"], _recorded_push(row)) for row in unfinished
                  if row["ref"] and row["after"]]
        for row, push in pushes:
            if self.branch is None or push.branch == self.branch:
                self.worker.submit(push, row, trigger="recovery")
        if pushes:
            log.warning("redeploying %d accepted deliveries that never finished", len(pushes))

    async def reconfigure(self, config: Config) -> None:
        """Switch to ``config`` once no deploy runs (``RESTART_KEYS`` need a restart).

        Raises:
            ConfigError: the new target cannot be resolved; the old config stays.
        """
        checkout = Checkout(config)
        target = await self.worker.run_in_executor(resolve_target, checkout, config)
        fixed = [key for key in RESTART_KEYS
                 if getattr(config, key) != getattr(self.config, key)]
        if fixed:
            log.warning("%s changed: takes effect at the next restart", ", ".join(fixed))
        await self.worker.idle()
        self.checkout.close()
        self.config, self.checkout, self.worker.checkout = config, checkout, checkout
        self.secret = SecretSource(config.secret_file, config.secret)
        self.allowed = parse_networks(config.allowed_networks, "allowed_networks")
        self.trusted = parse_networks(config.trusted_proxies, "trusted_proxies")
        self.reloader.mode = config.reload
        self.reloader.repo_path = config.repo_path
        self.branch, self.repository, self.head = target

    def _on_result(self, result: RunResult) -> None:
        keep_runs, keep_days = self.config.keep_runs, self.config.keep_days
        self.record.submit(lambda s: s.prune(keep_runs, keep_days))
        self._generation += 1
        if result.head_after:
            self.head = result.head_after  # before the listeners: STATUS= shows the new HEAD
        self.last_run = _result_summary(result)
        if self.run_count is not None and result.run_id is not None:
            self.run_count += 1  # until the next refresh reads the record (after pruning)
        for listener in self.listeners:
            listener(result)
        if self.branch is None and result.ok:
            self.branch = result.branch
        if result.deployed:
            self.reloader.request()
        self.reloader.poke()

    def routes(self, health_path: str | None = "/health",
               record_path: str | None = "/deployments",
               page_path: str | None = "/") -> list[tuple[str, Any, dict[str, Any]]]:
        """URL specs for the webhook (at ``webhook_path``) and, unless None, the health
        check, the deployment record's JSON API and the status page (``page_path``,
        with one page per run at ``<page_path>runs/<id>``)."""
        from deployhook.web.api import DeploymentHandler, DeploymentsHandler
        from deployhook.web.handlers import HealthHandler, WebhookHandler
        from deployhook.web.pages import page_routes

        kwargs = {"hook": self}
        specs: list[tuple[str, Any, dict[str, Any]]] = [
            (self.config.webhook_path, WebhookHandler, kwargs)]
        if health_path:
            specs.append((health_path, HealthHandler, kwargs))
        if record_path:
            specs += [(record_path, DeploymentsHandler, kwargs),
                      (record_path + r"/([0-9]{1,18})", DeploymentHandler, kwargs)]
        if page_path:
            specs += page_routes(self, page_path)
        return specs

    def status(self) -> dict[str, Any]:
        """A small JSON-able summary for /health (no secrets, no credentials).

        ``head`` is the checkout's HEAD and ``last_deploy`` / ``runs`` the record's newest
        finished run and its number of runs, whoever deployed (read every
        ``WATCH_EVERY`` seconds); without a readable record, this process's own."""
        last = self.last_run
        if last is None and self.worker.last is not None:
            last = _result_summary(self.worker.last)
        return {
            "status": "ok",
            "repository": self.repository,
            "branch": self.branch,
            "head": self.head,
            "deploying": self.worker.busy,
            "runs": self.worker.runs if self.run_count is None else self.run_count,
            "last_deploy": last,
            "pid": os.getpid(),
            "started": self.started,
        }

    def close(self, wait: bool = True) -> None:
        """Stop the executor (by default waiting for a running git command); close the
        repo and the record."""
        if self._watch is not None:
            self._watch.stop()
        self.executor.shutdown(wait=wait, cancel_futures=not wait)
        self.record.close()
        self.checkout.close()


def _last_and_count(store: Any) -> tuple[dict[str, Any] | None, int]:
    """The newest finished run (as in /health's ``last_deploy``) and the run count."""
    finished = [r for r in store.runs(5) if r["outcome"] != "running"]
    last = None
    if finished:
        run = finished[0]
        last = {"ok": run["outcome"] == "ok", "run": run["id"], "trigger": run["trigger"],
                "head_before": run["head_before"], "head_after": run["head_after"],
                "duration": run["duration"], "reason": run["reason"]}
    return last, store.count_runs()


def _result_summary(result: RunResult) -> dict[str, Any]:
    """A deploy result of this process as in /health's ``last_deploy``."""
    return {"ok": result.ok, "run": result.run_id, "trigger": None,
            "head_before": result.head_before, "head_after": result.head_after,
            "duration": round(result.duration, 3), "reason": result.reason}


def _recorded_push(row: dict[str, Any]) -> Push:
    """The Push a recorded delivery row stands for."""
    return Push(ref=row["ref"], before=row["before"] or "", after=row["after"], deleted=False,
                repository="", default_branch=None, pusher=row["pusher"] or "unknown",
                delivery_id=row["delivery_id"])
