"""The embedding API: mount deployhook in your own Tornado application.

``DeployHook(config)`` is a :class:`~deployhook.service.hub.Hub` (every target of
the config) that also reloads the process after a deploy as each target's
``reload`` says, and builds its URL specs with :meth:`DeployHook.routes`::

    hook = deployhook.DeployHook(deployhook.load("deployhook.py"))
    await hook.start()
    app = tornado.web.Application([(r"/", Home), *hook.routes()])

With a single target, ``hook.worker``, ``hook.head``, ``hook.repository`` and
``hook.branch`` are that target's, as before targets existed.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from deployhook.git.checkout import RunResult
from deployhook.service.hub import Hub
from deployhook.service.reload import Reloader, reexec
from deployhook.service.target import Target
from deployhook.service.worker import GitWorker
from deployhook.settings import Config
from deployhook.web.app import routes

if TYPE_CHECKING:
    from deployhook.report.notify import Notifier
    from deployhook.report.reporter import Reporter


class DeployHook(Hub):
    """A hub that reloads after deploys and mounts in any Tornado application."""

    def __init__(self, config: Config, on_exit: Callable[[], None] | None = None,
                 on_reexec: Callable[[], None] | None = None, drains: bool = False) -> None:
        """``on_exit`` / ``on_reexec``: how the ``exit`` / re-executing reloads end this
        process; by default the IOLoop stops / the process closes this hook and
        re-executes (see :class:`~deployhook.service.reload.Reloader`).  ``drains``: they
        stop accepting connections and then wait for the webhook answers in flight
        themselves (the daemon's do), so the reload waits only for the deploys; else the
        reload also waits for those answers, at most ``reload.ANSWER_GRACE``."""
        super().__init__(config)
        first = config.targets[0]
        self.reloader = Reloader(first.reload, self.deploying, on_exit,
                                 on_reexec or self._close_and_reexec, repo_path=first.repo_path,
                                 answering=None if drains else lambda: self.in_flight)
        self.events.on_ran(self._reload_after)
        self.events.on_idle(self.reloader.poke)
        self.reporter: Reporter | None = None  # made once a target sets ``report``
        self._report_if_configured()
        self.notifier: Notifier | None = None  # made once a target sets ``notify``
        if any(t.notify for t in config.targets):
            from deployhook.report.notify import check_urls

            check_urls(config.targets)  # ConfigError: the daemon does not start
        self._notify_if_configured()

    def _notify_if_configured(self) -> None:
        """Make the notifier once a target sets ``notify`` (its URLs checked: only then is
        Apprise imported)."""
        if self.notifier is None and any(t.notify for t in self.config.targets):
            from deployhook.report.notify import Notifier

            self.notifier = Notifier(self.record, lambda: self.config.public_url)
            self.events.on_started(self.notifier.started)
            self.events.on_ran(self.notifier.finished)

    def _report_if_configured(self) -> None:
        """Make the forge reporter once a target sets ``report``: only then are it and its
        HTTP client imported (at start, or by the reload that first sets ``report``)."""
        if self.reporter is None and any(t.report is not None for t in self.config.targets):
            from deployhook.report.reporter import Reporter

            self.reporter = Reporter(self.record, lambda: self.config.public_url)
            self.events.on_started(self.reporter.started)
            self.events.on_ran(self.reporter.finished)

    async def reconfigure(self, config: Config) -> None:
        """:meth:`Hub.reconfigure`, then start reporting (notifying) if ``config`` is the
        first to set ``report`` (``notify``).

        Raises:
            ConfigError: as :meth:`Hub.reconfigure`, or ``notify`` cannot be honoured
                (the old config stays).
        """
        if any(t.notify for t in config.targets):  # Apprise's first load takes a while
            from deployhook.report.notify import check_urls

            await asyncio.get_running_loop().run_in_executor(self.executor, check_urls,
                                                             config.targets)
        await super().reconfigure(config)
        self._report_if_configured()
        self._notify_if_configured()

    def close(self, wait: bool = True) -> None:
        """:meth:`Hub.close`; the notifier's thread ends after the message it sends."""
        super().close(wait)
        if self.notifier is not None:
            self.notifier.close()

    def _reload_after(self, target: Target, result: RunResult) -> None:
        if result.deployed:
            self.reloader.request(target.config.reload, target.config.repo_path)

    def _close_and_reexec(self) -> None:
        """Default ``on_reexec`` (an embedding application): write the record's queue,
        stop the git executor (nothing runs: the reloader waited), then exec."""
        self.close(wait=True)
        reexec()

    def routes(self, health_path: str | None = "/health",
               record_path: str | None = "/deployments",
               page_path: str | None = "/", **paths: str | None,
               ) -> list[tuple[str, Any, dict[str, Any]]]:
        """URL specs: the webhooks (``webhook_path`` and ``/hooks/<target>``) and, unless
        None, the health check, the record's JSON API, the status page, and (``paths``:
        ``api_path``, ``docs_path``, ``metrics_path``) the OpenAPI document, its page
        and the metrics."""
        return routes(self, health_path, record_path, page_path, **paths)  # type: ignore[arg-type]

    def _only(self) -> Target:
        if self.single is None:
            raise AttributeError("this config has several targets: use hook.targets[name]")
        return self.single

    @property
    def worker(self) -> GitWorker:
        return self._only().worker

    @property
    def head(self) -> str | None:
        return self._only().head

    @property
    def repository(self) -> str | None:
        return self._only().repository

    @property
    def branch(self) -> str | None:
        return self._only().branch
