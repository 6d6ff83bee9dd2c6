"""Listening sockets: systemd socket activation (``$LISTEN_FDS``) or a fresh bind."""

from __future__ import annotations

import os
import socket

from tornado.netutil import bind_sockets

SD_LISTEN_FDS_START = 3


def activated_sockets(environ: dict[str, str] | None = None) -> list[socket.socket]:
    """The sockets systemd passed to this process, or [] when there are none.

    ``$LISTEN_PID`` must name this process (it survives an autoreload's exec,
    which keeps the PID, so a re-executed daemon finds its sockets again).
    """
    env = os.environ if environ is None else environ
    pid, count = env.get("LISTEN_PID", ""), env.get("LISTEN_FDS", "")
    if not (pid.isdigit() and count.isdigit()) or int(pid) != os.getpid():
        return []
    sockets = []
    for fd in range(SD_LISTEN_FDS_START, SD_LISTEN_FDS_START + int(count)):
        sock = socket.socket(fileno=fd)
        sock.setblocking(False)
        sockets.append(sock)
    return sockets


def listening_sockets(address: str, port: int) -> list[socket.socket]:
    """Activated sockets if any, else sockets bound to ``address:port``.

    Raises:
        OSError: the address cannot be bound (in use, not permitted, unknown).
    """
    return activated_sockets() or bind_sockets(port, address)


def describe(sockets: list[socket.socket]) -> str:
    """``host:port`` of the first socket, for logs and STATUS."""
    name = sockets[0].getsockname()
    if isinstance(name, tuple):
        host = name[0] if ":" not in name[0] else f"[{name[0]}]"
        return f"{host}:{name[1]}"
    return str(name)
