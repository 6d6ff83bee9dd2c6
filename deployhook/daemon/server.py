"""Run the daemon: listen (or take systemd's socket), notify systemd, handle signals.

- SIGTERM / SIGINT: stop accepting connections, let a running deploy finish
  (at most ``stop_timeout``), answer its waiting deliveries, exit 0.  The handlers
  are installed before anything else, so a signal at any time takes this path.
- A re-executing reload drains and closes the same way, then execs itself with
  the listening sockets handed over (as systemd's socket activation would).
- SIGHUP: re-read the config file; a bad one is logged and the old one kept.  A stop or
  re-exec lets a re-read under way finish; one that comes once a re-exec has begun is
  passed on to the re-executed process.
- The three signals stay blocked across the re-exec's ``execve`` (the mask survives it)
  until the new process has its handlers: one sent meanwhile waits for them, instead of
  killing the process with the signal's default action.
- systemd: ``READY=1`` once listening, ``STATUS=`` after each deploy,
  ``WATCHDOG=1`` from the IOLoop, ``STOPPING=1`` and ``RELOADING=1``.
"""

from __future__ import annotations

import asyncio
import fcntl
import gc
import logging
import os
import signal
import socket
import sys
import time

from tornado.ioloop import PeriodicCallback

from deployhook import settings
from deployhook.daemon.listen import SD_LISTEN_FDS_START, describe, listening_sockets
from deployhook.daemon.sdnotify import Notifier, watchdog_interval
from deployhook.embed import DeployHook
from deployhook.errors import ConfigError
from deployhook.git.checkout import RunResult
from deployhook.service import reload
from deployhook.service.target import Target
from deployhook.settings import Config
from deployhook.web.app import make_app
from deployhook.web.connections import LimitedHTTPServer, make_server

log = logging.getLogger("deployhook")
LAST_DEPLOY_ENV = "_DEPLOYHOOK_LAST_DEPLOY"
# How long a thread holding the GIL (the body thread hashing, the record's thread, a git
# worker) may keep the IOLoop waiting: Python's default is 5 ms.
SWITCH_INTERVAL = 0.001
SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)  # handled by the daemon
# Seconds a stop waits for the request of a connection accepted just before it stopped
# accepting (a client sends its request within a round trip of connecting).
ARRIVAL = 0.5


class Daemon:
    """One running daemon: its hook, its server and its systemd notifier."""

    def __init__(self, config: Config, config_path: str | None) -> None:
        self.config_path = config_path
        self.notifier = Notifier()
        self.stopping = asyncio.Event()
        self.hook = DeployHook(config, on_exit=self.stopping.set, on_reexec=self._want_reexec,
                               drains=True)
        self.reexec = False
        self.rereads: set[asyncio.Future[bool]] = set()  # SIGHUPs' re-reads under way
        self.serving = False  # listening, the hook started: a SIGHUP re-reads at once
        self.caught = -1  # the pipe's end where other threads' signals land during a re-exec
        # A SIGHUP not acted on yet: re-read once the start is over, or raised again for
        # the re-executed process when it came during a re-exec.
        self.hup_for_next = False
        self.sockets: list[socket.socket] = []
        self.where = ""
        # The last deploy's summary survives an autoreload's exec (for STATUS=).
        self.last_deploy = os.environ.pop(LAST_DEPLOY_ENV, "")

    async def run(self) -> int:
        """Serve until told to stop; return the exit status.

        Raises:
            ConfigError: the checkout cannot be resolved.
            OSError: the address cannot be bound.
        """
        hook, config = self.hook, self.hook.config
        sys.setswitchinterval(SWITCH_INTERVAL)
        self._install_signals()  # first: a signal from here on always takes _shutdown
        await hook.start()
        self.sockets = listening_sockets(config.address, config.port)
        server = make_server(make_app(hook), config)
        # What the start built (every target's settings, checkout and state: most of the
        # heap with many targets) lives as long as the process: out of the collector's
        # full passes, which each delivery's garbage would otherwise make walk it all.
        gc.freeze()
        server.add_sockets(self.sockets)
        self.where = describe(self.sockets)
        hook.events.on_ran(self._deployed)
        hook.events.on_head_moved(self._head_moved)
        log.info("listening on http://%s%s", self.where, config.webhook_path)
        self.notifier.ready(self._status())
        self.serving = True
        if self.hup_for_next:  # a SIGHUP came while the hook started: its re-read now
            self.hup_for_next = False
            self._sighup()
        watchdog = self._start_watchdog()
        await self.stopping.wait()
        spare = self._keep_sockets() if self.reexec else []
        status = await self._shutdown(server, watchdog)
        if self.reexec and status == 0 and await self._hold_signals():
            self._hand_over(spare)
            log.info("re-executing the process")
            self._pass_on_caught()
            try:
                reload.reexec()
            except OSError as exc:
                signal.pthread_sigmask(signal.SIG_UNBLOCK, SIGNALS)
                log.error("cannot re-execute %s: %s; exiting for the supervisor", sys.executable,
                          exc)
                return 1
        return status

    async def _hold_signals(self) -> bool:
        """Block SIGTERM, SIGINT and SIGHUP until the re-executed process handles them
        (the mask survives ``execve``; without it, one sent during the exec would end the
        process with the signal's default action).  First the IOLoop runs what a signal
        caught just before asks (three passes of the loop), and a SIGHUP
        that came during the re-exec is raised again for the new process.  Returns False
        when a stop came: the process then ends as on SIGTERM."""
        signal.pthread_sigmask(signal.SIG_BLOCK, SIGNALS)
        # Another thread, where they are not blocked, may still catch one: it lands here.
        self.caught, write = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        signal.set_wakeup_fd(write, warn_on_full_buffer=False)
        for _ in range(3):  # the self-pipe read, the handler queued, the handler run
            await asyncio.sleep(0)
        if self.reexec and self.hup_for_next:
            signal.raise_signal(signal.SIGHUP)  # pending across the exec, for the new process
        if not self.reexec:
            self._stopped()
        return self.reexec

    def _pass_on_caught(self) -> None:
        """Raise again on this thread, where they are blocked (so they stay pending across
        the exec, for the new process), the signals another thread caught since
        :meth:`_hold_signals`."""
        try:
            caught = os.read(self.caught, 4096)
        except OSError:  # none
            caught = b""
        for sig in SIGNALS:
            if sig in caught:
                signal.raise_signal(sig)

    def _status(self) -> str:
        targets = self.hook.targets.values()
        if self.hook.single is not None:
            heads = f"HEAD {(self.hook.single.head or 'none')[:12]}"
        else:
            heads = f"{len(targets)} targets, HEAD " + ", ".join(
                f"{t.name} {(t.head or 'none')[:12]}" for t in list(targets)[:5])
        text = f"listening on {self.where}; {heads}"
        return text + (f"; {self.last_deploy}" if self.last_deploy else "")

    def _deployed(self, target: Target, result: RunResult) -> None:
        outcome = "ok" if result.ok else f"FAILED: {result.reason[:120]}"
        which = "" if self.hook.single is not None else f" of {target.name}"
        self.last_deploy = f"last deploy{which} {time.strftime('%H:%M:%S')} {outcome}"
        self.notifier.status(self._status())

    def _head_moved(self, target: Target) -> None:
        self.notifier.status(self._status())

    def _stop(self) -> None:
        """SIGTERM/SIGINT: stop, even when a re-exec was about to happen."""
        self.reexec = False
        self.stopping.set()

    def _want_reexec(self) -> None:
        """The reloader's ``on_reexec``: drain and close as on SIGTERM, then exec."""
        self.reexec = True
        self.stopping.set()

    def _start_watchdog(self) -> PeriodicCallback | None:
        interval = watchdog_interval()
        if interval is None:
            return None
        self.notifier.watchdog()  # at once: a re-executed process must not wait a period
        pinger = PeriodicCallback(self._watchdog_ping, interval * 1000)
        pinger.start()
        return pinger

    def _watchdog_ping(self) -> None:
        """WATCHDOG=1, from the IOLoop: a blocked loop stops the pings."""
        self.notifier.watchdog()

    def _install_signals(self) -> None:
        """Handle SIGTERM, SIGINT and SIGHUP on the IOLoop, then unblock them (a re-exec
        blocked them: one sent during it is delivered now)."""
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._stop)
        loop.add_signal_handler(signal.SIGHUP, self._sighup)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, SIGNALS)

    def _sighup(self) -> None:
        """SIGHUP: re-read the config file (one that comes during the start, once it has
        ended); once a re-exec has begun, the re-executed process does
        (:meth:`_hold_signals`); once a stop has, nothing does."""
        if self.stopping.is_set():
            self.hup_for_next = self.reexec
            if not self.reexec:
                log.info("SIGHUP while stopping: the configuration is not re-read")
            return
        if not self.serving:  # the start resolves the targets: the re-read comes after
            self.hup_for_next = True
            return
        task = asyncio.ensure_future(self.reread())
        self.rereads.add(task)
        task.add_done_callback(self.rereads.discard)

    async def reread(self) -> bool:
        """Apply the config file again (SIGHUP); return False and keep the old one if bad."""
        self.notifier.reloading("re-reading the configuration")
        try:
            new = settings.load(self.config_path)
            await self.hook.reconfigure(new)
        except ConfigError as exc:
            log.error("SIGHUP: configuration rejected, keeping the old one: %s", exc)
            self.notifier.ready(self._status() + "; new config REJECTED")
            return False
        except Exception:  # never lost in a task nobody awaits
            log.exception("SIGHUP: re-reading the configuration failed; keeping the old one")
            self.notifier.ready(self._status() + "; re-read FAILED")
            return False
        log.info("SIGHUP: configuration re-read from %s", self.config_path)
        self.notifier.ready(self._status())
        return True

    def _keep_sockets(self) -> list[int]:
        """Duplicates of the listening sockets that outlive ``server.stop()``: the kernel
        keeps queueing connections for the re-executed process, so none is refused."""
        count = len(self.sockets)
        return [fcntl.fcntl(s.fileno(), fcntl.F_DUPFD, SD_LISTEN_FDS_START + count)
                for s in self.sockets]  # out of the way of fds 3..3+count

    def _hand_over(self, spare: list[int]) -> None:
        """Put the kept sockets at fds 3.. with ``$LISTEN_FDS``/``$LISTEN_PID`` for the
        re-executed process, as systemd would, and keep STATUS's last deploy."""
        self.notifier.watchdog()
        if self.last_deploy:
            os.environ[LAST_DEPLOY_ENV] = self.last_deploy
        count = len(spare)
        for offset, fd in enumerate(spare):
            os.dup2(fd, SD_LISTEN_FDS_START + offset, inheritable=True)
            os.close(fd)
        os.environ["LISTEN_FDS"] = str(count)
        os.environ["LISTEN_PID"] = str(os.getpid())

    async def _shutdown(self, server: LimitedHTTPServer,
                        watchdog: PeriodicCallback | None) -> int:
        timeout = self.hook.config.stop_timeout
        if self.reexec:
            log.info("re-executing after a deploy: closing the record and the git workers")
            self.notifier.reloading("re-executing after a deploy")
        else:
            log.info("stopping: no new connections; waiting up to %gs for a running deploy",
                     timeout)
            self.notifier.stopping("stopping: finishing the running deploy")
        server.stop()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while server.arriving(ARRIVAL) and loop.time() < deadline:  # its request: in flight
            await asyncio.sleep(0.01)
        drained = await self._drain(deadline)
        await server.close_all_connections()
        # A request whose headers came while the drain ended may still be decided: wait
        # for it and its deploy too (no request can begin now).
        status = 0
        if not (drained and await self._drain(deadline)):
            log.error("a deploy was still running after stop_timeout=%gs; exiting anyway "
                      "(git finishes its current command on its own)", timeout)
            status = 1
        if self.rereads:  # a SIGHUP's re-read under way ends before the hook closes
            await asyncio.wait(self.rereads, timeout=timeout)
        if self.hook.reporter is not None:  # the forge hears the end
            from deployhook.report.reporter import SETTLE

            await self.hook.reporter.settle(min(timeout, SETTLE))
        if self.hook.notifier is not None:  # people hear of the last run
            from deployhook.report.notify import SETTLE as NOTIFY_SETTLE

            await self.hook.notifier.settle(min(timeout, NOTIFY_SETTLE))
        await self.hook.leave()
        if watchdog is not None:
            watchdog.stop()
        self.hook.close(wait=status == 0)
        if not self.reexec:  # a re-exec still pings the watchdog just before exec
            self._stopped()
        return status

    def _stopped(self) -> None:
        """The end of a stop: systemd's notifier closed, ``stopped`` logged."""
        self.notifier.close()
        log.info("stopped")

    async def _drain(self, deadline: float) -> bool:
        """Wait for the verified deliveries being decided and the deploys until the loop's
        time ``deadline``, then for the webhook answers in flight, at most
        :data:`~deployhook.service.reload.ANSWER_GRACE` more (and ``deadline``): an
        answer still unsent then belongs to a request whose body has not come, and its
        connection is closed.  False when a deploy still runs."""
        loop = asyncio.get_running_loop()
        answers_since: float | None = None  # when only answers were left
        while True:
            if self.hook.deploying():
                try:
                    await asyncio.wait_for(self.hook.idle(), max(0.0, deadline - loop.time()))
                except TimeoutError:
                    return False
                answers_since = None  # that deploy's answers are being sent now
            if not self.hook.in_flight:
                return True
            now = loop.time()
            answers_since = now if answers_since is None else answers_since
            if now >= min(deadline, answers_since + reload.ANSWER_GRACE):
                log.warning("%d webhook answers still unsent after %.1fs with no deploy "
                            "running: closing their connections (requests whose body has not "
                            "come)",
                            self.hook.in_flight, now - answers_since)
                return True
            await asyncio.sleep(0.02)


async def serve(config: Config, config_path: str | None = None) -> int:
    """Run the daemon until SIGTERM/SIGINT or an ``exit`` reload; return the exit status."""
    return await Daemon(config, config_path).run()


