"""Tornado handlers: stream, verify and parse a delivery, then write the answer the
delivery service gives; ``/health``.

Every answer is a small JSON object with ``result`` and ``reason``; that body is
what users read in their forge's "recent deliveries" view.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import threading
from collections.abc import Awaitable
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

import tornado.web

from deployhook.errors import BodyTooLarge, DeliveryError
from deployhook.forges.delivery import parse_body
from deployhook.service.deliveries import Answer
from deployhook.service.hub import Hub
from deployhook.service.intake import Intake, Pending
from deployhook.web import connections, spool
from deployhook.web.bigparse import parse_in_child
from deployhook.web.bodylimit import UNBOUNDED

if TYPE_CHECKING:
    from deployhook.web.access import Access

log = logging.getLogger("deployhook.http")
def _lower_priority() -> None:
    """Run this thread below the IOLoop's: on a busy machine the loop is scheduled first."""
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), BODY_NICENESS)
    except OSError:  # not permitted or not Linux: same priority, still off the loop
        pass


# Bodies are hashed and spooled on one thread of their own, at a lower priority: the
# IOLoop keeps a core however many strangers send at once (hashlib and file writes drop
# the GIL).
BODY_NICENESS = 5
BODY_THREAD = ThreadPoolExecutor(1, thread_name_prefix="deployhook-body",
                                 initializer=_lower_priority)
HASH_IN_THREAD = 16 * 1024  # chunks this big are hashed in a thread (hashlib drops the GIL)
# as are the writes of spooled bodies (a write may wait on the disk)


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
    "loopback"`` from this machine) gets the hook's whole status.  A wrong password
    counts as a failed login, and while its client is throttled no password is
    checked: /health is no way around the throttle.
    """

    def initialize(self, hub: Hub, access: Access) -> None:
        self.hub, self.access = hub, access

    def get(self) -> None:
        status = self.hub.status()
        if not self.access.allows(self.request):
            status = {"status": status["status"]}
        self.reply(200, status)


@tornado.web.stream_request_body
class WebhookHandler(JSONHandler):
    """``POST`` a delivery of any forge; ``GET`` answers 200 (reachability check).

    Streams the body and writes the answer; everything else is the
    :class:`~deployhook.service.intake.Intake`'s: which targets and secrets, the
    checks before the body, verifying, and only then parsing, routing and deciding.
    The body is hashed as it arrives (on the body thread for large chunks) and kept
    (in memory, or spooled to a file) until it is verified.
    """

    def initialize(self, intake: Intake, routed: bool = False) -> None:
        """``routed``: this is ``webhook_path``, routing by repository (else the URL names
        the target)."""
        self.intake, self.routed = intake, routed
        self.body = spool.Body(closer=BODY_THREAD)
        self.pending: Pending | None = None
        self.refused = False  # answered before the whole body was read

    async def prepare(self) -> None:
        if self.request.method != "POST":
            return
        # Read no byte Tornado's own cap would refuse first: the intake checks the size.
        self.request.connection.set_max_body_size(UNBOUNDED)  # type: ignore[union-attr]
        connections.mark(self.request, connections.UNVERIFIED)
        config = self.intake.config
        spool.MEMORY.limit, spool.DISK.limit = config.unverified_memory, config.unverified_disk
        length = self.request.headers.get("Content-Length", "")
        announced = int(length) if length.isascii() and length.isdigit() \
            and len(length) <= 18 else None
        route = None if self.routed else (self.path_args[0] if self.path_args else "")
        self.pending, answer = self.intake.begin(route, self.request.headers,
                                                 self.request.remote_ip, announced)
        if answer is not None:
            await self._refuse(answer)

    def data_received(self, chunk: bytes) -> Awaitable[None] | None:
        """Hash ``chunk`` for every candidate secret and keep it until the body is verified.

        A small chunk of a body kept in memory is hashed here and None returned; else the
        awaitable Tornado waits for (so it stops reading): room in a budget, then the
        hashing and spooling on the body thread."""
        pending = self.pending
        if self.refused or self._finished or pending is None:
            return None
        if self.body.size + len(chunk) > pending.limit:  # chunked, past max_body_size
            self.body.release()
            return self._refuse(self.intake.refuse(pending, BodyTooLarge(
                f"body of {self.body.size + len(chunk)} bytes is over the limit of "
                f"{pending.limit} bytes")))
        room = self.body.add(chunk)
        if room is None and len(chunk) < HASH_IN_THREAD and self.body.file is None:
            pending.update(chunk)
            return None
        return self._keep(chunk, room)

    async def _keep(self, chunk: bytes, room: asyncio.Future[None] | None) -> None:
        """Wait for ``room`` (adding ``chunk`` again each time), then hash and spool it."""
        while room is not None:
            await room
            if self._finished or self.refused:
                return
            room = self.body.add(chunk)
        pending = self.pending
        assert pending is not None
        if len(chunk) < HASH_IN_THREAD and self.body.file is None:
            pending.update(chunk)
            return
        try:
            await asyncio.get_running_loop().run_in_executor(
                BODY_THREAD, self._consume, pending, chunk)
        except OSError as exc:
            log.error("cannot spool a request body to a temporary file: %s", exc)
            self.body.release()
            await self._refuse(self.intake.refuse(
                pending, DeliveryError("no room on the server to hold the body", 503)))

    def _consume(self, pending: Pending, chunk: bytes) -> None:
        """In a thread: hash ``chunk`` (hashlib drops the GIL) and write spooled chunks."""
        if not self.refused:
            pending.update(chunk)
        self.body.write_pending()

    async def post(self, *_: str) -> None:
        if self._finished or self.refused or self.pending is None:
            return
        try:
            answer = await self.intake.finish(self.pending, self.body.size, self._payload,
                                              self._verified)
        finally:
            self.body.release()
        if answer.delay:
            await self._refuse(answer)
        else:
            self.reply(answer.status, answer.body)

    def _verified(self) -> None:
        connections.mark(self.request, connections.VERIFIED)

    async def _payload(self) -> dict[str, Any]:
        """The verified body parsed: in a child process when it was spooled to a file.

        Raises:
            DeliveryError: not UTF-8 JSON or form-encoded JSON (400, 415).
        """
        content_type = self.request.headers.get("Content-Type")
        if self.body.file is not None:
            return await parse_in_child(content_type, self.body.file)
        return parse_body(content_type, self.body.data)

    async def _refuse(self, answer: Answer) -> None:
        """Send ``answer`` before (or without) the rest of the body: the body is never
        read on (Tornado closes the connection once the answer is out); a sender refused
        often waits ``answer.delay`` first."""
        self.refused = True
        self.body.release()
        if answer.delay:
            await asyncio.sleep(answer.delay)
        if not self._finished:
            self.reply(answer.status, answer.body)

    def on_finish(self) -> None:
        self._release()

    def on_connection_close(self) -> None:
        super().on_connection_close()
        self._release()

    def _release(self) -> None:
        self.refused = True  # a data_received waiting for room stops there
        self.body.release()
        connections.mark(self.request, connections.IDLE)
        if self.pending is not None:
            self.intake.done(self.pending)

    def get(self, *names: str) -> None:
        if names and not self.intake.has_target(names[0]):
            raise tornado.web.HTTPError(404, reason="no such target: the URL is "
                                        "/hooks/<target name>")
        self.reply(200, {"result": "ok", "reason": "deployhook is listening; "
                         "forges deliver webhooks here with POST"})
