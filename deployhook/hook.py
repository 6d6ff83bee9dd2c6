"""DeployHook: the runtime behind the handlers, one per deployed checkout.

It holds the configuration, the secret source, the checkout, the git worker
and the reloader, and the target facts (repository and branch) resolved at
start-up.  Mount it in any Tornado application with :meth:`DeployHook.routes`.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from .access import Access
from .checkout import Checkout, RunResult, github_repository
from .delivery import Push
from .errors import ConfigError
from .network import parse_networks
from .record import Recorder
from .reload import Reloader
from .secret import SecretSource
from .settings import Config
from .worker import GitWorker

log = logging.getLogger("deployhook")
RESTART_KEYS = ("address", "port", "webhook_path", "workers", "state_db")


class DeployHook:
    """Everything a deployhook endpoint needs; create it, ``await start()``, mount ``routes()``."""

    def __init__(self, config: Config, on_exit: Any = None) -> None:
        self.config = config
        self.secret = SecretSource(config.secret_file, config.secret)
        self.allowed = parse_networks(config.allowed_networks, "allowed_networks")
        self.trusted = parse_networks(config.trusted_proxies, "trusted_proxies")
        self.access = Access(self)  # who may read the record (pages, API, /health)
        self.checkout = Checkout(config)
        self.executor = ThreadPoolExecutor(config.workers, thread_name_prefix="deployhook-git")
        self.record = Recorder(config.state_db)
        self.worker = GitWorker(self.checkout, self.executor, self._on_result, self.record)
        self.reloader = Reloader(config.reload, self.busy, on_exit)
        self.repository: str | None = config.repository
        self.branch: str | None = config.branch
        self.head: str | None = None
        self.started = time.time()
        self.in_flight = 0
        self.listeners: list[Callable[[RunResult], None]] = []

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
        self.branch, self.repository, self.head = target

    def _on_result(self, result: RunResult) -> None:
        keep_runs, keep_days = self.config.keep_runs, self.config.keep_days
        self.record.submit(lambda s: s.prune(keep_runs, keep_days))
        for listener in self.listeners:
            listener(result)
        if result.head_after:
            self.head = result.head_after
        if self.branch is None and result.ok:
            self.branch = result.branch
        if result.moved:
            self.reloader.request()
        self.reloader.poke()

    def routes(self, health_path: str | None = "/health",
               record_path: str | None = "/deployments",
               page_path: str | None = "/") -> list[tuple[str, Any, dict[str, Any]]]:
        """URL specs for the webhook (at ``webhook_path``) and, unless None, the health
        check, the deployment record's JSON API and the status page (``page_path``,
        with one page per run at ``<page_path>runs/<id>``)."""
        from .api import DeploymentHandler, DeploymentsHandler
        from .handlers import HealthHandler, WebhookHandler
        from .pages import page_routes

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
        """A small JSON-able summary for /health (no secrets, no credentials)."""
        last = self.worker.last
        return {
            "status": "ok",
            "repository": self.repository,
            "branch": self.branch,
            "head": self.head,
            "deploying": self.worker.busy,
            "runs": self.worker.runs,
            "last_deploy": None if last is None else {
                "ok": last.ok, "head_before": last.head_before, "head_after": last.head_after,
                "duration": round(last.duration, 3), "reason": last.reason,
            },
            "pid": os.getpid(),
            "started": self.started,
        }

    def close(self, wait: bool = True) -> None:
        """Stop the executor (by default waiting for a running git command); close the
        repo and the record."""
        self.executor.shutdown(wait=wait, cancel_futures=not wait)
        self.record.close()
        self.checkout.close()


def resolve_target(checkout: Checkout, config: Config) -> tuple[str | None, str | None, str | None]:
    """(branch, repository, HEAD) for ``config``; blocking, run it in the executor.

    Raises:
        ConfigError: no checkout and no ``repo_url``, or a detached HEAD and no ``branch``.
    """
    repository, branch = config.repository, config.branch
    if not checkout.exists():
        if not config.repo_url:
            raise ConfigError(f"repo_path {config.repo_path} is not a git checkout; "
                              "clone it there or set repo_url")
        return branch, repository or github_repository(config.repo_url), None
    branch = branch or checkout.current_branch()
    if branch is None:
        raise ConfigError(f"{config.repo_path} has a detached HEAD; set branch in the config")
    return branch, repository or github_repository(checkout.remote_url()), checkout.head()


def _recorded_push(row: dict[str, Any]) -> Push:
    """The Push a recorded delivery row stands for."""
    return Push(ref=row["ref"], before=row["before"] or "", after=row["after"], deleted=False,
                repository="", default_branch=None, pusher=row["pusher"] or "unknown",
                delivery_id=row["delivery_id"])
