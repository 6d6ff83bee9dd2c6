"""The daemon's HTTP server: bounded connections and an accept loop that survives EMFILE.

- At most ``max_connections`` connections are open.  A new one is never refused
  for the cap: the oldest idle connection (no request under way, or headers not
  yet complete) is closed to make room, then the oldest one whose body is still
  coming or was refused.  A connection whose whole body is in (its signature is
  checked within milliseconds) or whose delivery has been verified is never evicted:
  under a storm of real deliveries at the cap, none loses its answer.
- When ``accept()`` fails for want of file descriptors (EMFILE/ENFILE), the server
  frees one (an idle connection, else a reserved descriptor it keeps for this: it
  closes it, accepts and closes the waiting connection, and opens it again), stops
  accepting for a moment instead of spinning, and logs one line per interval.
- ``body_timeout`` and ``idle_timeout`` (Tornado's ``idle_connection_timeout``) come
  from the configuration.
"""

from __future__ import annotations

import errno
import logging
import os
import resource
import socket
import time
from collections.abc import Iterable
from typing import Any

from tornado.httpserver import HTTPServer
from tornado.httputil import HTTPServerRequest
from tornado.ioloop import IOLoop
from tornado.iostream import IOStream
from tornado.web import Application

from deployhook.settings import Config
from deployhook.web.bodylimit import SMALL_BODY

log = logging.getLogger("deployhook.connections")
OUT_OF_FDS = (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM)
PAUSE = 0.1  # seconds without accepting after running out of descriptors
LOG_EVERY = 30.0  # seconds between two "out of file descriptors" lines
FDS_KEPT = 64  # descriptors kept free of connections: record, git, post_deploy, logs
MIN_CONNECTIONS = 8
PRUNE_EVERY = 64  # accepted connections between two passes dropping the closed ones
IDLE, UNVERIFIED, COMPLETE, VERIFIED = "idle", "unverified", "complete", "verified"
NEW = "new"  # accepted, no webhook request seen on it yet (idle, for the cap)
_EVICTION_ORDER = ((NEW, IDLE), (UNVERIFIED,))


def mark(request: HTTPServerRequest, state: str) -> None:
    """Record that ``request``'s connection is ``idle``, ``unverified`` (its body coming,
    or refused), ``complete`` (its body all in, not yet checked) or ``verified``."""
    stream = getattr(request.connection, "stream", None)
    if stream is not None:
        stream.deployhook_state = (state, time.monotonic())


class LimitedHTTPServer(HTTPServer):
    """An HTTPServer with a connection cap that evicts strangers first (see the module)."""

    def initialize(self, app: Application, max_connections: int = 400,  # type: ignore[override]
                   **kwargs: Any) -> None:
        super().initialize(app, **kwargs)
        self.max_connections = max_connections
        self.streams: list[IOStream] = []
        self.evicted = 0
        self._accepted = 0
        self._reserve: int | None = _open_reserve()
        self._fd_failures = 0
        self._last_log = -LOG_EVERY

    def handle_stream(self, stream: IOStream, address: tuple[Any, ...]) -> None:
        """Track ``stream``, making room under the cap first, then serve it."""
        stream.deployhook_state = (NEW, time.monotonic())  # type: ignore[attr-defined]
        self._accepted += 1
        if len(self.streams) >= self.max_connections or self._accepted % PRUNE_EVERY == 0:
            # a pass over them all: at the cap, else once per PRUNE_EVERY connections
            self.streams = [s for s in self.streams if not s.closed()]
        while len(self.streams) >= self.max_connections and self.evict_one():
            pass
        self.streams.append(stream)
        super().handle_stream(stream, address)

    def evict_one(self) -> bool:
        """Close the oldest idle connection, else the oldest unverified one; False if none."""
        for states in _EVICTION_ORDER:
            candidates = [s for s in self.streams
                          if not s.closed() and s.deployhook_state[0] in states]  # type: ignore
            if candidates:
                victim = min(candidates, key=lambda s: s.deployhook_state[1])  # type: ignore
                self.streams.remove(victim)
                victim.close()
                self.evicted += 1
                return True
        return False

    def arriving(self, within: float) -> bool:
        """True while a connection accepted less than ``within`` seconds ago has shown no
        webhook request yet: its request is most likely on its way (a stop lets it come
        before it closes the connections)."""
        now = time.monotonic()
        return any(not s.closed() and s.deployhook_state[0] == NEW  # type: ignore
                   and now - s.deployhook_state[1] < within for s in self.streams)  # type: ignore

    def add_sockets(self, sockets: Iterable[socket.socket]) -> None:
        """Accept on ``sockets`` with :meth:`_accept`'s EMFILE handling instead of Tornado's."""
        for sock in sockets:
            self._sockets[sock.fileno()] = sock
            self._handlers[sock.fileno()] = self._watch(sock)

    def _watch(self, sock: socket.socket) -> Any:
        loop = IOLoop.current()
        state = {"removed": False, "paused": False}

        def ready(fd: Any, events: int) -> None:
            for _ in range(128):
                if state["removed"]:
                    return
                try:
                    connection, address = sock.accept()
                except BlockingIOError:
                    return
                except ConnectionAbortedError:
                    continue
                except OSError as exc:
                    if exc.errno not in OUT_OF_FDS:
                        raise
                    self._out_of_fds(sock, exc)
                    loop.remove_handler(sock)
                    state["paused"] = True
                    loop.call_later(PAUSE, resume)
                    return
                self._handle_connection(connection, address)

        def resume() -> None:
            if state["paused"] and not state["removed"]:
                state["paused"] = False
                loop.add_handler(sock, ready, IOLoop.READ)

        def remove() -> None:
            if not state["paused"]:
                loop.remove_handler(sock)
            state["removed"] = True

        loop.add_handler(sock, ready, IOLoop.READ)
        return remove

    def _out_of_fds(self, sock: socket.socket, exc: OSError) -> None:
        """Free a descriptor: evict an idle connection, else drop the waiting one."""
        self._fd_failures += 1
        if not self.evict_one() and self._reserve is not None:
            os.close(self._reserve)
            try:
                sock.accept()[0].close()  # the caller learns nothing, but is not left hanging
            except OSError:
                pass
            self._reserve = _open_reserve()
        now = time.monotonic()
        if now - self._last_log >= LOG_EVERY:
            self._last_log = now
            log.warning("out of file descriptors (%s); %d accept failures so far, %d "
                        "connections open, %d evicted: raise LimitNOFILE or lower "
                        "max_connections", errno.errorcode.get(exc.errno or 0, exc),
                        self._fd_failures, sum(not s.closed() for s in self.streams),
                        self.evicted)

    def close_reserve(self) -> None:
        """Release the reserved descriptor (at shutdown)."""
        if self._reserve is not None:
            os.close(self._reserve)
            self._reserve = None


def _open_reserve() -> int | None:
    try:
        return os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None


def fitting_connections(wanted: int) -> int:
    """``wanted``, lowered so that connections fit this process's RLIMIT_NOFILE.

    Each connection may hold two descriptors (its socket and a spooled body) and
    ``FDS_KEPT`` stay free for the record, git and post_deploy.
    """
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return wanted
    fitting = max(MIN_CONNECTIONS, (soft - FDS_KEPT) // 2)
    if fitting < wanted:
        log.warning("max_connections=%d does not fit the limit of %d open files; using %d",
                    wanted, soft, fitting)
    return min(wanted, fitting)


READ_CHUNK = 256 * 1024  # bytes read per callback: a 25 MB body is 100 callbacks, not 400


def make_server(app: Application, config: Config) -> LimitedHTTPServer:
    """The daemon's HTTP server, with every limit taken from ``config``."""
    return LimitedHTTPServer(
        app, max_connections=fitting_connections(config.max_connections),
        max_body_size=SMALL_BODY,  # webhooks lift it for their own requests
        idle_connection_timeout=config.idle_timeout,
        body_timeout=config.body_timeout, chunk_size=READ_CHUNK)
