"""``POST`` a delivery to a webhook route: stream the body to the one intake, write its
answer (see :mod:`deployhook.service.intake`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable
from typing import Any

import tornado.web

from deployhook.errors import DeliveryError
from deployhook.forges.delivery import check_size, parse_body
from deployhook.service.deliveries import Answer
from deployhook.service.intake import Intake, Pending
from deployhook.web import connections, spool
from deployhook.web.bigparse import parse_in_child
from deployhook.web.bodylimit import UNBOUNDED
from deployhook.web.handlers import JSONHandler

log = logging.getLogger("deployhook.http")


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
        self.body = spool.Body(closer=spool.BODY_THREAD)
        self.pending: Pending | None = None
        self.refused = False  # answered before the whole body was read
        self.announced: int | None = None  # Content-Length, when the sender gave one

    async def prepare(self) -> None:
        if self.request.method != "POST":
            return
        # Read no byte Tornado's own cap would refuse first: the intake checks the size.
        self.request.connection.set_max_body_size(UNBOUNDED)  # type: ignore[union-attr]
        connections.mark(self.request, connections.UNVERIFIED)
        config = self.intake.config
        spool.MEMORY.limit, spool.DISK.limit = config.unverified_memory, config.unverified_disk
        length = self.request.headers.get("Content-Length", "")
        self.announced = announced = int(length) if length.isascii() and length.isdigit() \
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
        try:
            check_size(self.body.size + len(chunk), pending.limit)
        except DeliveryError as exc:  # chunked, past max_body_size
            return self._refuse(self.intake.refuse(pending, exc))
        room = self.body.add(chunk)
        self._all_in()
        if room is None and len(chunk) < spool.HASH_IN_THREAD and self.body.file is None:
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
        self._all_in()
        pending = self.pending
        assert pending is not None
        if len(chunk) < spool.HASH_IN_THREAD and self.body.file is None:
            pending.update(chunk)
            return
        try:
            await asyncio.get_running_loop().run_in_executor(
                spool.BODY_THREAD, self._consume, pending, chunk)
        except OSError as exc:
            log.error("cannot spool a request body to a temporary file: %s", exc)
            self.body.release()
            await self._refuse(self.intake.refuse(
                pending, DeliveryError("no room on the server to hold the body", 503)))

    def _all_in(self) -> None:
        """Once the announced body is all in, its connection is kept at the cap: the
        signature is checked within moments (see connections)."""
        if self.body.size == self.announced:
            connections.mark(self.request, connections.COMPLETE)

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
        connections.mark(self.request, connections.UNVERIFIED)  # refused: evictable
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
