"""``make_app()``: the standalone Tornado application around one DeployHook."""

from __future__ import annotations

import tornado.web

from .hook import DeployHook


class NotFoundHandler(tornado.web.RequestHandler):
    """404 for every other path, as a short JSON reason."""

    def prepare(self) -> None:
        self.set_status(404)
        self.set_header("Content-Type", "application/json; charset=utf-8")
        self.finish('{"result": "error", "reason": "not found"}\n')


def make_app(hook: DeployHook) -> tornado.web.Application:
    """The daemon's application: the webhook, ``/health`` and JSON 404s."""
    return tornado.web.Application(hook.routes(), default_handler_class=NotFoundHandler)
