"""Reload after a deploy that moved HEAD: re-execute, exit, or do nothing.

The reload waits until no deploy runs or waits and no webhook response is in
flight, so it never cuts a response or a deploy short.

Modes: ``autoreload`` re-executes the process with Tornado's autoreload
machinery (its reload hooks run first); ``exit`` stops the IOLoop so the
process ends cleanly for its supervisor to restart; ``none`` does nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from tornado import autoreload
from tornado.ioloop import IOLoop

log = logging.getLogger("deployhook.reload")
GRACE = 0.1  # seconds for the last response bytes to leave the socket


class Reloader:
    """Fires once, when asked to and when nothing is busy."""

    def __init__(
        self,
        mode: str,
        busy: Callable[[], bool],
        on_exit: Callable[[], None] | None = None,
    ) -> None:
        self.mode = mode
        self._busy = busy
        self._on_exit = on_exit
        self.wanted = False
        self._hooks: list[Callable[[], None]] = []

    def add_hook(self, fn: Callable[[], None]) -> None:
        """Run ``fn`` just before the process re-executes (``autoreload`` mode only)."""
        self._hooks.append(fn)

    def request(self) -> None:
        """Ask for a reload once everything in flight has finished."""
        if self.mode == "none":
            return
        self.wanted = True
        self.poke()

    def poke(self) -> None:
        """Check again (call when a response or a deploy ends)."""
        if self.wanted and not self._busy():
            IOLoop.current().call_later(GRACE, self._fire)

    def _fire(self) -> None:
        if not self.wanted or self._busy():
            return
        self.wanted = False
        if self.mode == "exit":
            log.info("deploy moved HEAD: exiting for the supervisor to restart")
            (self._on_exit or IOLoop.current().stop)()
            return
        log.info("deploy moved HEAD: re-executing the process (autoreload)")
        for fn in self._hooks:
            fn()
        autoreload._reload()  # Tornado's own re-exec: runs its reload hooks, keeps -m
