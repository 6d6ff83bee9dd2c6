"""The JSON answer every handler writes.

Every answer is a small JSON object with ``result`` and ``reason``; that body is
what users read in their forge's "recent deliveries" view.
"""

from __future__ import annotations

import json
from typing import Any

import tornado.web


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
