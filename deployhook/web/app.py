"""``make_app()``: the standalone Tornado application around one DeployHook."""

from __future__ import annotations

import logging

import tornado.web
from tornado.log import access_log

from deployhook.service.hook import DeployHook
from deployhook.web.handlers import WebhookHandler


class NotFoundHandler(tornado.web.RequestHandler):
    """404 for every other path, as a short JSON reason."""

    def prepare(self) -> None:
        self.set_status(404)
        self.set_header("Content-Type", "application/json; charset=utf-8")
        self.finish('{"result": "error", "reason": "not found"}\n')


class FaviconHandler(tornado.web.RequestHandler):
    """``GET /favicon.ico``: 204, cacheable for a day, so browsers stop asking and
    nothing is logged (the pages also point their icon at an empty data: URL)."""

    def get(self) -> None:
        self.set_status(204)
        self.set_header("Cache-Control", "public, max-age=86400")


def log_request(handler: tornado.web.RequestHandler) -> None:
    """Tornado's access log line, with the URI cut short (it comes from anyone)."""
    status = handler.get_status()
    if status < 400 or isinstance(handler, WebhookHandler):
        return  # deliveries log their own line; health checks and pages need none
    level = logging.ERROR if status >= 500 else logging.WARNING
    request = handler.request
    access_log.log(level, "%d %s %s (%s) %.2fms", status, request.method,
                   request.uri[:200] if request.uri else "", request.remote_ip,
                   1000.0 * request.request_time())


def make_app(hook: DeployHook) -> tornado.web.Application:
    """The daemon's application: the webhook, ``/health``, the record, a quiet
    ``/favicon.ico``, JSON 404s."""
    routes = [*hook.routes(), (r"/favicon\.ico", FaviconHandler)]
    return tornado.web.Application(routes, default_handler_class=NotFoundHandler,
                                   log_function=log_request)
