"""Reload after a deploy that moved HEAD: re-execute, exit, or do nothing.

The reload waits until no deploy runs or waits, so it never cuts a deploy short.  The
webhook answers in flight are drained by whoever ends the process: the daemon stops
accepting connections first (they queue for the re-executed process), then waits for
them; an application embedding the hook has the reloader wait for them, at most
:data:`ANSWER_GRACE` once no deploy runs.  Either way a request that never ends (a
stranger sending headers and no body, or bad signatures back to back) holds a reload
or a stop for :data:`ANSWER_GRACE` at most.

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
# Seconds the webhook answers still in flight may hold a reload or a stop once no deploy
# runs: a delivery's body arrives in well under that; a request still unanswered then is
# one whose body has not come (its connection is closed).
ANSWER_GRACE = 5.0


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
    """Fires once, when asked to and when no deploy runs (and, with ``answering``, no
    answer is in flight, or :data:`ANSWER_GRACE` has passed since only answers held it)."""

    def __init__(
        self,
        mode: str,
        busy: Callable[[], bool],
        on_exit: Callable[[], None] | None = None,
        on_reexec: Callable[[], None] | None = None,
        repo_path: str = ".",
        answering: Callable[[], int] | None = None,
        answer_grace: float = ANSWER_GRACE,
    ) -> None:
        """``busy``: a deploy runs or waits (the reload never fires then).  ``answering``:
        the webhook answers in flight, waited for at most ``answer_grace`` seconds once
        ``busy`` is False (None: ``on_exit`` and ``on_reexec`` drain them themselves)."""
        self.mode = mode
        self.repo_path = repo_path
        self._busy = busy
        self._answering = answering
        self._answer_grace = answer_grace
        self._on_exit = on_exit
        self._on_reexec = on_reexec
        self.wanted = ""  # the reload asked for and not done yet: "exit" or "autoreload"
        self._asked_as = mode
        self._hooks: list[Callable[[], None]] = []
        self._held: object | None = None  # the timeout ending the answers' hold

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

    def _fire(self, overdue: bool = False) -> None:
        """Reload unless nothing is wanted or a deploy runs; while only answers are in
        flight, wait for them until the hold ends (``overdue``)."""
        if not self.wanted or self._busy():
            self._release()
            return
        unsent = self._answering() if self._answering is not None else 0
        if unsent and not overdue:
            if self._held is None:
                self._held = IOLoop.current().call_later(self._answer_grace, self._fire, True)
            return
        self._release()
        if unsent:
            log.warning("%d webhook answers still unsent after %gs with no deploy running: "
                        "reloading anyway (requests whose body has not come)", unsent,
                        self._answer_grace)
        mode, self.wanted = self.wanted, ""
        if mode == "exit":
            log.info("deploy moved HEAD: exiting for the supervisor to restart")
            (self._on_exit or IOLoop.current().stop)()
        elif mode == "autoreload":
            log.info("deploy moved HEAD: re-executing the process (%s)", self._asked_as)
            for fn in self._hooks:
                fn()
            (self._on_reexec or reexec)()

    def _release(self) -> None:
        """End the answers' hold (a deploy runs again, or the reload fires)."""
        if self._held is not None:
            IOLoop.current().remove_timeout(self._held)
            self._held = None
