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

from deployhook import forges
from deployhook.errors import BodyTooLarge, DeliveryError, SecretMissing, SignatureError
from deployhook.forges import mac
from deployhook.forges.delivery import check_size, parse_body
from deployhook.network import allowed, client_address
from deployhook.service.deliveries import Answer, Deliveries, Facts, combine
from deployhook.service.hub import Hub
from deployhook.service.rules import decide_event
from deployhook.service.target import Target
from deployhook.web import connections, spool
from deployhook.web.bigparse import parse_in_child

if TYPE_CHECKING:
    from deployhook.web.access import Access

log = logging.getLogger("deployhook.http")
UNBOUNDED = 1 << 62
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
READ_BACK = 1024 * 1024  # bytes per read when a spooled body is hashed after the fact
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

    At ``/hooks/<name>`` the delivery is for that target; at ``webhook_path`` it goes to
    every target whose secret verifies it and whose repository it names.  The body is
    hashed as it arrives and parsed only once verified; what happens next is the
    :class:`~deployhook.service.deliveries.Deliveries` service's business.
    """

    def initialize(self, hub: Hub, deliveries: Deliveries, routed: bool = False) -> None:
        """``routed``: this is ``webhook_path``, routing by repository (else the URL names
        the target)."""
        self.hub, self.deliveries, self.routed = hub, deliveries, routed
        self.limit = hub.config.max_body_size
        self.body = spool.Body(closer=BODY_THREAD)
        self.hashed: mac.Hashed | None = None
        self.too_large = False
        self.counted = False
        self.forge = "github"
        self.candidates: list[tuple[bytes, list[tuple[Target, int]]]] = []
        self.positions: tuple[tuple[str, int], ...] = ()  # which secret verified, per target
        self.signature = "unchecked"
        self.client = self.request.remote_ip or "unknown"
        self.target: Target | None = None
        # webhook_path with several targets: the body is hashed once the repository it
        # names says whose secrets to check (so only theirs are ever computed)
        self.deferred = False
        self.named: str | None = None

    def prepare(self) -> None:
        if self.request.method != "POST":
            return
        self.hub.in_flight += 1  # a reload waits until this answer has been sent
        self.counted = True
        hub = self.hub
        client = client_address(self.request.remote_ip, self.request.headers.get(
            "X-Forwarded-For"), hub.trusted)
        self.client = str(client) if client is not None else "unknown"
        if not self.routed:
            self.target = hub.targets.get(self.path_args[0]) if self.path_args else None
            if self.target is None:
                self.refuse(DeliveryError("no such target: the URL is /hooks/<target name>",
                                          status=404))
                return
        if not allowed(client, hub.allowed):
            self.refuse(DeliveryError(f"address {self.client} is not in allowed_networks",
                                      status=403))
            return
        length = self.request.headers.get("Content-Length", "")
        if length.isascii() and length.isdigit() and len(length) <= 18:
            self._check_size(int(length))
        else:
            # Chunked: let every byte reach data_received, which answers 413 past the
            # limit and so closes the connection; only the limit is ever buffered.
            self.request.connection.set_max_body_size(UNBOUNDED)  # type: ignore[union-attr]
        if not self._finished:
            self._start_hashing()

    def _start_hashing(self) -> None:
        """Choose the forge and the candidate secrets, and set up the incremental HMACs;
        answer now when the request cannot be verified at all."""
        connections.mark(self.request, connections.UNVERIFIED)
        config, headers = self.hub.config, self.request.headers
        spool.MEMORY.limit, spool.DISK.limit = config.unverified_memory, config.unverified_disk
        pinned = self.target.config.forge if self.target is not None else None
        self.forge = pinned or forges.detect(headers)
        if self.target is not None:
            targets = [self.target]
        else:  # webhook_path: every target that does not pin another forge
            targets = [t for t in self.hub.targets.values()
                       if t.config.forge in (None, self.forge)]
        try:
            forges.check_headers(self.forge, headers)
            self.candidates = self.hub.secrets(targets)
        except DeliveryError as exc:
            self.signature = _signature_result(exc)
            self.refuse(exc)
            return
        self.deferred = self.target is None and len(self.hub.targets) > 1
        secrets = [] if self.deferred else [secret for secret, _ in self.candidates]
        self.hashed = mac.Hashed(forges.hash_keys(self.forge, secrets, headers))

    def data_received(self, chunk: bytes) -> Awaitable[None] | None:
        """Hash ``chunk`` for every candidate secret and keep it until the body is verified.

        A small chunk of a body kept in memory is hashed here and None returned; else the
        awaitable Tornado waits for (so it stops reading): room in a budget, then the
        hashing and spooling on the body thread."""
        if self.too_large or self._finished or self.hashed is None:
            return None
        self._check_size(self.body.size + len(chunk))
        if self.too_large:
            return None
        room = self.body.add(chunk)
        if room is None and len(chunk) < HASH_IN_THREAD and self.body.file is None:
            self.hashed.update(chunk)
            return None
        return self._keep(chunk, room)

    async def _keep(self, chunk: bytes, room: asyncio.Future[None] | None) -> None:
        """Wait for ``room`` (adding ``chunk`` again each time), then hash and spool it."""
        while room is not None:
            await room
            if self._finished or self.hashed is None:
                return
            room = self.body.add(chunk)
        if len(chunk) < HASH_IN_THREAD and self.body.file is None:
            self.hashed.update(chunk)
            return
        try:
            await asyncio.get_running_loop().run_in_executor(BODY_THREAD, self._consume, chunk)
        except OSError as exc:
            log.error("cannot spool a request body to a temporary file: %s", exc)
            self.body.release()
            self.refuse(DeliveryError("no room on the server to hold the body", 503))

    def _consume(self, chunk: bytes) -> None:
        """In a thread: hash ``chunk`` (hashlib drops the GIL) and write spooled chunks."""
        hashed = self.hashed
        if hashed is not None:
            hashed.update(chunk)
        self.body.write_pending()

    def _check_size(self, length: int) -> None:
        try:
            check_size(length, self.limit)
        except DeliveryError as exc:
            self.too_large = True
            self.body.release()
            self.refuse(exc)

    def on_finish(self) -> None:
        self._release()

    def on_connection_close(self) -> None:
        super().on_connection_close()
        self._release()

    def _release(self) -> None:
        self.hashed = None  # a data_received waiting for room stops there
        self.body.release()
        connections.mark(self.request, connections.IDLE)
        if self.counted:
            self.counted = False
            self.hub.answered()

    def get(self, *names: str) -> None:
        if names and names[0] not in self.hub.targets:
            raise tornado.web.HTTPError(404, reason="no such target: the URL is "
                                        "/hooks/<target name>")
        self.reply(200, {"result": "ok", "reason": "deployhook is listening; "
                         "forges deliver webhooks here with POST"})

    async def post(self, *_: str) -> None:
        if self._finished:
            return
        try:
            verified = await self._verified_event()
        except DeliveryError as exc:
            self.body.release()  # before any wait
            self.signature = _signature_result(exc)
            answer = self.deliveries.refuse(exc, self._facts(), self._target_name())
            if answer.delay:  # a sender refused often waits (see Rejections)
                await asyncio.sleep(answer.delay)
            self.reply(answer.status, answer.body)
            return
        finally:
            self.body.release()
        if verified is None:  # webhook_path: the repository it names is no target's
            reason = f"no target deploys {self.named or 'this repository'}"
            answer = self.deliveries.handle_ignored(reason, self._facts())
            self.reply(answer.status, answer.body)
            return
        event, targets = verified
        facts = self._facts(event.delivery_id)
        try:
            answer = await self._answer(event, targets, facts)
        except DeliveryError as exc:  # a wrong repository (403)
            answer = self.deliveries.refuse(exc, facts, self.target.name if self.target else "")
        self.reply(answer.status, answer.body)

    async def _verified_event(self) -> tuple[forges.Event, list[Target]] | None:
        """Verify what was hashed, then parse (a large body in a child process); the event
        and the targets whose secret verified it.  At ``webhook_path`` with several
        targets, the repository the body names comes first: it is verified against the
        secrets of the targets that deploy that repository (None when there are none).

        Raises:
            DeliveryError: wrong signature, no event header, or a malformed body.
        """
        assert self.hashed is not None  # prepare() answered otherwise
        headers = self.request.headers
        check_size(self.body.size, self.limit)
        candidates = self.candidates
        if self.deferred:
            payload = await self._payload()
            self.named = forges.repository(self.forge, payload)
            candidates = [(secret, named) for secret, targets in candidates
                          if (named := [(t, n) for t, n in targets if _deploys(t, self.named)])]
            if not candidates:
                return None
            self.hashed = await self._hash([secret for secret, _ in candidates])
        secrets = [secret for secret, _ in candidates]
        index = forges.verify(self.forge, secrets, headers, self.hashed)
        self.signature = "valid"
        matched = candidates[index][1]
        self.positions = tuple((target.name, position) for target, position in matched)
        connections.mark(self.request, connections.VERIFIED)
        if not self.deferred:
            payload = await self._payload()
        return forges.parse(self.forge, headers, payload), [target for target, _ in matched]

    async def _payload(self) -> dict[str, Any]:
        """The body parsed: in a child process when it was spooled to a file.

        Raises:
            DeliveryError: not UTF-8 JSON or form-encoded JSON (400, 415).
        """
        content_type = self.request.headers.get("Content-Type")
        if self.body.file is not None:
            return await parse_in_child(content_type, self.body.file)
        return parse_body(content_type, self.body.data)

    async def _hash(self, secrets: list[bytes]) -> mac.Hashed:
        """The whole stored body hashed for ``secrets`` (in a thread: it may be 25 MB)."""
        hashed = mac.Hashed(forges.hash_keys(self.forge, secrets, self.request.headers))
        body = self.body

        def feed() -> None:
            if body.file is None:
                hashed.update(body.data)
                return
            body.file.seek(0)
            for chunk in iter(lambda: body.file.read(READ_BACK), b""):  # type: ignore[union-attr]
                hashed.update(chunk)

        await asyncio.get_running_loop().run_in_executor(BODY_THREAD, feed)
        return hashed

    async def _answer(self, event: forges.Event, targets: list[Target],
                      facts: Facts) -> Answer:
        """Each target's answer, combined when several targets took the delivery.

        Raises:
            WrongRepository: the one target (``/hooks/<name>``, or the only target) deploys
                another repository (403).
        """
        if self.target is not None or len(self.hub.targets) == 1:
            target = targets[0]
            decision = decide_event(event, target.repository, target.branch, target.config.tags)
            return await self.deliveries.handle(target, decision, facts)
        chosen = [t for t in targets if _deploys(t, event.repository)]
        if not chosen:
            return self.deliveries.handle_ignored(
                f"no target deploys {event.repository or 'this repository'}", facts)
        answers = await asyncio.gather(*(self.deliveries.handle(
            t, decide_event(event, t.repository, t.branch, t.config.tags), facts)
            for t in chosen))
        return combine({t.name: a for t, a in zip(chosen, answers, strict=True)})

    def _facts(self, delivery_id: str | None = None) -> Facts:
        labelled_id, event = forges.labels(self.forge, self.request.headers)
        return Facts(delivery_id=delivery_id or labelled_id, event=event, client=self.client,
                     forge=self.forge, signature=self.signature, secrets=self.positions)

    def refuse(self, exc: DeliveryError) -> None:
        """Answer (and record) a delivery refused before any target decided."""
        answer = self.deliveries.refuse(exc, self._facts(), self._target_name())
        self.reply(answer.status, answer.body)

    def _target_name(self) -> str:
        return self.target.name if self.target is not None else ""


def _deploys(target: Target, repository: str | None) -> bool:
    """True when ``target`` takes deliveries naming ``repository`` (a target without
    ``repository`` takes any; a delivery naming none goes to every target)."""
    return not target.repository or not repository or \
        target.repository.lower() == repository.lower()


def _signature_result(exc: DeliveryError) -> str:
    if isinstance(exc, SignatureError):
        return "invalid"
    return "unchecked" if isinstance(exc, (BodyTooLarge, SecretMissing)) else "valid"
