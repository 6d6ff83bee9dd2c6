"""Tornado handlers: a thin adapter from HTTP to the pure delivery functions.

Every answer is a small JSON object with ``result`` and ``reason``; that body
is what users read in GitHub's "Recent Deliveries".
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import TYPE_CHECKING, Any

import tornado.web

from .checkout import RunResult
from .delivery import Push, check_size, read_delivery
from .errors import DeliveryError
from .rules import Deploy, Ignore, Ping, decide

if TYPE_CHECKING:
    from .hook import DeployHook

log = logging.getLogger("deployhook.http")
UNBOUNDED = 1 << 62


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
        self.reply(status_code, {"result": "error", "reason": reason or self._reason})


class HealthHandler(JSONHandler):
    """``GET /health``: 200 with the hook's status; never touches git."""

    def initialize(self, hook: DeployHook) -> None:
        self.hook = hook

    def get(self) -> None:
        self.reply(200, self.hook.status())


@tornado.web.stream_request_body
class WebhookHandler(JSONHandler):
    """``POST`` a GitHub delivery to deploy; ``GET`` answers 200 (reachability check)."""

    def initialize(self, hook: DeployHook) -> None:
        self.hook = hook
        self.limit = hook.config.max_body_size
        self.body = bytearray()
        self.too_large = False
        self.counted = False
        self.push: Push | None = None

    def prepare(self) -> None:
        if self.request.method != "POST":
            return
        self.hook.in_flight += 1  # a reload waits until this answer has been sent
        self.counted = True
        length = self.request.headers.get("Content-Length", "")
        if length.isdigit():
            self._check_size(int(length))
        else:
            # Chunked: let every byte reach data_received, which answers 413 past the
            # limit and so closes the connection; only the limit is ever buffered.
            self.request.connection.set_max_body_size(UNBOUNDED)  # type: ignore[union-attr]

    def data_received(self, chunk: bytes) -> None:
        if self.too_large or self._finished:
            return
        self.body += chunk
        self._check_size(len(self.body))

    def _check_size(self, length: int) -> None:
        try:
            check_size(length, self.limit)
        except DeliveryError as exc:
            self.too_large = True
            self.body = bytearray()
            self.answer_error(exc)

    def on_finish(self) -> None:
        self._release()

    def on_connection_close(self) -> None:
        super().on_connection_close()
        self._release()

    def _release(self) -> None:
        if self.counted:
            self.counted = False
            self.hook.in_flight -= 1
            self.hook.reloader.poke()

    def get(self) -> None:
        self.reply(200, {"result": "ok", "reason": "deployhook is listening; "
                         "GitHub delivers webhooks here with POST"})

    async def post(self) -> None:
        if self._finished:
            return
        hook = self.hook
        try:
            secret = hook.secret.get()
            delivery = read_delivery(self.request.headers, bytes(self.body), secret, self.limit)
            decision = decide(delivery, hook.repository, hook.branch)
        except DeliveryError as exc:
            self.answer_error(exc)
            return
        self.body = bytearray()
        if isinstance(decision, Ping):
            self.answer(200, delivery.delivery_id, {"result": "pong", "zen": decision.zen,
                                                    "reason": "ping received"})
        elif isinstance(decision, Ignore):
            self.answer(202, delivery.delivery_id, {"result": "ignored",
                                                    "reason": decision.reason})
        elif isinstance(decision, Deploy):
            await self.deploy(decision.push)

    async def deploy(self, push: Push) -> None:
        self.push = push
        future = self.hook.worker.submit(push)
        try:
            result = await asyncio.wait_for(asyncio.shield(future),
                                            self.hook.config.response_timeout)
        except TimeoutError:
            future.add_done_callback(lambda f: _log_late(push, f))
            self.answer(202, push.delivery_id, {
                "result": "deploying", "after": push.after,
                "reason": "the deploy is still running; its outcome will be at /health",
            })
            return
        self.answer(*outcome(push, result))

    def answer(self, status: int, delivery_id: str, body: dict[str, Any]) -> None:
        """Send ``body`` and log one line: delivery, event, ref, SHAs, outcome."""
        ref = self.push.ref if self.push else "-"
        shas = f"{self.push.before[:12]}..{self.push.after[:12]}" if self.push else "-"
        log.log(logging.WARNING if status >= 400 else logging.INFO,
                "delivery %s from %s event=%s ref=%s %s -> %d %s: %s", delivery_id,
                self.request.remote_ip, self.request.headers.get("X-GitHub-Event", "-"), ref,
                shas, status, body.get("result"), body.get("reason", ""))
        self.reply(status, body)

    def answer_error(self, exc: DeliveryError) -> None:
        delivery_id = self.request.headers.get("X-GitHub-Delivery", "-")
        self.answer(exc.status, delivery_id, {"result": "rejected", "reason": exc.reason})


def outcome(push: Push, result: RunResult) -> tuple[int, str, dict[str, Any]]:
    """The status and body answering ``push`` once ``result``'s run has ended."""
    body: dict[str, Any] = {
        "before": push.before, "after": push.after, "head": result.head_after,
        "duration": round(result.duration, 3),
    }
    if not result.ok:
        return 500, push.delivery_id, {"result": "failed", "reason": result.reason, **body}
    if not result.contains.get(push.after):
        reason = (f"{push.after} is not in {push.ref} after fetching: "
                  "it was force-pushed away or not pushed to this remote")
        return 409, push.delivery_id, {"result": "not deployed", "reason": reason, **body}
    moved = "deployed" if result.moved else "already deployed"
    return 200, push.delivery_id, {"result": "deployed", "reason": f"{moved} {push.after[:12]}",
                                   **body}


def _log_late(push: Push, future: asyncio.Future[RunResult]) -> None:
    if future.cancelled() or future.exception() is not None:
        return
    status, delivery_id, body = outcome(push, future.result())
    log.info("delivery %s (answered 202 earlier) -> %d %s: %s", delivery_id, status,
             body["result"], body["reason"])
