"""Reload after a deploy that moved HEAD: re-execute, exit, or do nothing.

The reload waits until no deploy runs or waits and no webhook response is in
flight, so it never cuts a response or a deploy short.

Modes: ``auto`` (the default) re-executes when the checkout holds the code this
process runs (deployhook itself, or the script that embeds it) and otherwise
does nothing; ``autoreload`` always re-executes; ``exit`` ends the process
cleanly for its supervisor to restart; ``none`` does nothing.

Re-executing goes through :func:`reexec` (``os.execv`` of the same interpreter
and command line, so the PID stays).  The daemon passes ``on_reexec`` so it
drains and closes (the record's pending writes, the git executor) exactly as on
SIGTERM before it execs; a :class:`~deployhook.embed.DeployHook` embedded in
another application closes itself (record, git executor) and execs.  The hooks
of :meth:`Reloader.add_hook` run first in both cases.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import NoReturn

from tornado.ioloop import IOLoop

from deployhook import settings

log = logging.getLogger("deployhook.reload")
GRACE = 0.1  # seconds for the last response bytes to leave the socket


def running_code() -> list[Path]:
    """The files this process runs: the deployhook package and the ``__main__`` script."""
    paths = [Path(__file__).resolve().parent]
    main = getattr(sys.modules.get("__main__"), "__file__", None)
    if main:
        paths.append(Path(main).resolve())
    return paths


def holds_running_code(repo_path: str, code: Iterable[Path] | None = None) -> bool:
    """True when one of ``code`` (default :func:`running_code`) lies inside ``repo_path``."""
    root = Path(repo_path).resolve()
    return any(path.is_relative_to(root) for path in (running_code() if code is None else code))


def effective_mode(mode: str, repo_path: str) -> str:
    """``mode`` with ``auto`` resolved: ``autoreload`` when the checkout at ``repo_path``
    holds this process's code, else ``none``."""
    if mode != "auto":
        return mode
    return "autoreload" if holds_running_code(repo_path) else "none"


def reexec() -> NoReturn:
    """Replace this process with the same interpreter and command line (``-m`` kept),
    same PID and environment.

    Raises:
        OSError: the interpreter cannot be executed (the process goes on).
    """
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (AttributeError, OSError, ValueError):
            pass
    os.execve(sys.executable, list(sys.orig_argv), settings.reexec_environment())


class Reloader:
    """Fires once, when asked to and when nothing is busy."""

    def __init__(
        self,
        mode: str,
        busy: Callable[[], bool],
        on_exit: Callable[[], None] | None = None,
        on_reexec: Callable[[], None] | None = None,
        repo_path: str = ".",
    ) -> None:
        self.mode = mode
        self.repo_path = repo_path
        self._busy = busy
        self._on_exit = on_exit
        self._on_reexec = on_reexec
        self.wanted = ""  # the reload asked for and not done yet: "exit" or "autoreload"
        self._asked_as = mode
        self._hooks: list[Callable[[], None]] = []

    def add_hook(self, fn: Callable[[], None]) -> None:
        """Run ``fn`` when a re-executing reload fires, before ``on_reexec``."""
        self._hooks.append(fn)

    def request(self, mode: str | None = None, repo_path: str | None = None) -> None:
        """Ask for a reload once everything in flight has finished.  ``mode`` and
        ``repo_path``, when given, are those of the target whose deploy asks (each target
        has its own ``reload``: under ``auto`` only the one holding this process's code
        re-executes it); otherwise the reloader's own."""
        mode, repo_path = mode or self.mode, repo_path or self.repo_path
        effective = effective_mode(mode, repo_path)
        if effective == "none":
            if mode == "auto":
                log.info("deploy moved HEAD; reload = auto and %s does not hold this "
                         "process's code: the process keeps running", repo_path)
            return
        if self.wanted != "autoreload":  # a re-exec asked for wins over an exit
            self.wanted = effective
        self._asked_as = mode
        self.poke()

    def poke(self) -> None:
        """Check again (call when a response or a deploy ends)."""
        if self.wanted and not self._busy():
            IOLoop.current().call_later(GRACE, self._fire)

    def _fire(self) -> None:
        if not self.wanted or self._busy():
            return
        mode, self.wanted = self.wanted, ""
        if mode == "exit":
            log.info("deploy moved HEAD: exiting for the supervisor to restart")
            (self._on_exit or IOLoop.current().stop)()
        elif mode == "autoreload":
            log.info("deploy moved HEAD: re-executing the process (%s)", self._asked_as)
            for fn in self._hooks:
                fn()
            (self._on_reexec or reexec)()
