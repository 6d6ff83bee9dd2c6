"""``make_app()`` and ``routes()``: the Tornado side of a :class:`~deployhook.service.hub.Hub`.

These are the web layer's wiring: they take the hub and hand each handler only the
parts it uses.  Every target answers at ``/hooks/<name>``; ``webhook_path`` routes by
repository.
"""

from __future__ import annotations

from typing import Any

import tornado.web
from tornado.httputil import HTTPServerRequest
from tornado.log import access_log

from deployhook.network import client_address
from deployhook.service.actions import Actions
from deployhook.service.current import Current
from deployhook.service.deliveries import Deliveries
from deployhook.service.hub import Hub
from deployhook.service.intake import Intake
from deployhook.settings import TARGET_NAME
from deployhook.web.access import Access
from deployhook.web.actions import action_routes
from deployhook.web.api import DeploymentHandler, DeploymentsHandler, HealthHandler
from deployhook.web.apidocs import DocsAssetHandler, DocsHandler, OpenAPIHandler
from deployhook.web.bodylimit import BoundedApplication
from deployhook.web.handlers import JSONHandler
from deployhook.web.metrics import Metrics, MetricsHandler
from deployhook.web.pages import page_routes
from deployhook.web.webhook import WebhookHandler

HOOKS_PATH = "/hooks"
Spec = tuple[str, Any, dict[str, Any]]
METHODS = frozenset(tornado.web.RequestHandler.SUPPORTED_METHODS)


class NotFoundHandler(tornado.web.RequestHandler):
    """404 for every other path, as a short JSON reason."""

    def prepare(self) -> None:
        self.set_status(404)
        self.set_header("Content-Type", "application/json; charset=utf-8")
        self.finish('{"result": "error", "reason": "not found"}\n')


class FaviconHandler(JSONHandler):
    """``GET /favicon.ico``: 204, cacheable for a day, so browsers stop asking and
    nothing is logged (the pages also point their icon at an empty data: URL)."""

    def get(self) -> None:
        self.set_status(204)
        self.set_header("Cache-Control", "public, max-age=86400")


class Refusals:
    """Counts what non-webhook routes refuse (4xx) with the refused deliveries: in
    aggregate, per sender and minute (:class:`~deployhook.service.rejections.Rejections`),
    never a line per request, and nothing of what the stranger sent (no path, no
    header): the route's own pattern and the status.  5xx answers are logged."""

    def __init__(self, current: Current, deliveries: Deliveries) -> None:
        self.current, self.rejections = current, deliveries.rejections

    def log(self, handler: tornado.web.RequestHandler) -> None:
        """Tornado's ``log_function``: webhook answers log themselves; a refusal is
        counted; a 5xx gets one line."""
        status = handler.get_status()
        if status < 400 or isinstance(handler, WebhookHandler):
            return
        request = handler.request
        if status >= 500:
            access_log.error("%d %s %s (%s) %.2fms", status, request.method,
                             request.path[:200].encode("unicode_escape").decode(),
                             request.remote_ip, 1000.0 * request.request_time())
            return
        self.refused(request, status, type(handler).__name__)

    def refused(self, request: HTTPServerRequest, status: int, what: str = "body") -> None:
        """Count one refusal of ``request`` (``what``: the handler, or ``body``)."""
        client = client_address(request.remote_ip, request.headers.get("X-Forwarded-For"),
                                self.current.trusted)
        method = request.method if request.method in METHODS else "other"
        self.rejections.count(str(client) if client is not None else "unknown", "",
                              status, f"{method} refused by {what}")


def routes(hub: Hub, health_path: str | None = "/health",
           record_path: str | None = "/deployments", page_path: str | None = "/",
           hooks_path: str = HOOKS_PATH, api_path: str | None = "/openapi.json",
           docs_path: str | None = "/docs", metrics_path: str | None = "/metrics",
           deliveries: Deliveries | None = None) -> list[Spec]:
    """URL specs for the webhook (``<hooks_path>/<target>`` for each target, and
    ``webhook_path`` routing by repository) and, unless None, the health check, the
    record's JSON API, the status page (``page_path``, with ``runs/<id>`` and
    ``targets/<name>`` below it, and its buttons), the OpenAPI document, its page and
    the metrics.  ``deliveries``: the delivery service to use (default: a new one)."""
    access, deliveries = Access(hub.current), deliveries or _deliveries(hub)
    deliveries.answered.append(hub.delivered)  # when each target last got a delivery
    hook = {"intake": Intake(hub.current, hub.targets, hub.flight, deliveries)}
    record = {"record": hub.record, "access": access}
    view = {"targets": hub.targets, "fleet": hub.fleet, **record}
    specs: list[Spec] = [(hub.config.webhook_path, WebhookHandler, {**hook, "routed": True}),
                         (f"{hooks_path}/({TARGET_NAME.pattern})", WebhookHandler, hook)]
    if health_path:
        specs.append((health_path, HealthHandler,
                      {"status": hub.status, "targets": hub.targets, "access": access}))
    if record_path:
        specs += [(record_path, DeploymentsHandler, view),
                  (record_path + r"/([0-9]{1,18})", DeploymentHandler, record)]
    if page_path:
        actions = Actions(hub.record, hub.fleet)
        specs += page_routes(hub.targets, hub.record, hub.fleet, access, page_path, actions)
        specs += action_routes(page_path, {**view, "actions": actions})
    if api_path:
        specs.append((api_path, OpenAPIHandler,
                      {"current": hub.current, "targets": hub.targets, "access": access}))
    if docs_path:
        specs += [(docs_path, DocsHandler, {"access": access}),
                  (docs_path + r"/([a-z.-]{1,40})", DocsAssetHandler, {"access": access})]
    if metrics_path:
        metrics = Metrics(hub.targets)
        hub.events.on_ran(metrics.ran)
        deliveries.answered.append(metrics.delivered)
        specs.append((metrics_path, MetricsHandler, {"access": access, "metrics": metrics}))
    return specs


def _deliveries(hub: Hub) -> Deliveries:
    """The delivery service of ``hub``'s parts."""
    return Deliveries(hub.record, hub.current, hub.fleet)


def make_app(hub: Hub) -> tornado.web.Application:
    """The daemon's application: the webhooks, ``/health``, the record, a quiet
    ``/favicon.ico``, JSON 404s; every other route's body bounded (see
    :mod:`~deployhook.web.bodylimit`), and what they refuse counted in aggregate."""
    deliveries = _deliveries(hub)
    refusals = Refusals(hub.current, deliveries)
    specs = [*routes(hub, deliveries=deliveries), (r"/favicon\.ico", FaviconHandler)]
    return BoundedApplication(specs, default_handler_class=NotFoundHandler,
                              log_function=refusals.log,
                              refused=lambda request, status: refusals.refused(request, status))
