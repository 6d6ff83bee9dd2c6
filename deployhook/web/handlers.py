"""The JSON answer every handler writes, and ``/health``.

Every answer is a small JSON object with ``result`` and ``reason``; that body is
what users read in their forge's "recent deliveries" view.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import tornado.web

if TYPE_CHECKING:
    from deployhook.web.access import Access

class JSONHandler(tornado.web.RequestHandler):
    """Shapes every answer, errors included, as ``{"result": ..., "reason": ...}``."""

    def reply(self, status: int, body: dict[str, Any]) -> None:
        self.set_status(status)
        self.set_header("Content-Type", "application/json; charset=utf-8")
        self.set_header("Cache-Control", "no-store")
        self.finish(json.dumps(body) + "\n")

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        exc = kwargs.get("exc_info", (None, None, None))[1]
        reason = exc.reason if isinstance(exc, tornado.web.HTTPError) and exc.reason else None
        if status_code == 401:  # send_error() cleared the header set before raising
            self.set_header("WWW-Authenticate", 'Basic realm="deployhook", charset="UTF-8"')
        set_allow(self, status_code)
        self.reply(status_code, {"result": "error", "reason": reason or self._reason})


def set_allow(handler: tornado.web.RequestHandler, status_code: int) -> None:
    """On a 405, the ``Allow`` header RFC 9110 requires: the methods ``handler``'s class
    implements (``GET, POST``)."""
    if status_code != 405:
        return
    base = tornado.web.RequestHandler
    handler.set_header("Allow", ", ".join(
        method for method in handler.SUPPORTED_METHODS
        if getattr(type(handler), method.lower(), None) is not getattr(base, method.lower())))


class HealthHandler(JSONHandler):
    """``GET /health``: 200 and whether the daemon is healthy; never touches git.

    Anyone gets ``{"status": ...}`` alone (what a monitor needs); a request the
    record's access check lets in (the status password, or ``status_access =
    "loopback"`` from this machine) gets the daemon's whole status (``status()``).  A wrong password
    counts as a failed login, and while its client is throttled no password is
    checked: /health is no way around the throttle.
    """

    def initialize(self, status: Callable[[], dict[str, Any]], access: Access) -> None:
        self.status, self.access = status, access

    def get(self) -> None:
        # Without the password nothing more than "ok" is said, so the whole status (a
        # dictionary per target: a thousand targets cost milliseconds) is not built.
        self.reply(200, self.status() if self.access.allows(self.request) else {"status": "ok"})
