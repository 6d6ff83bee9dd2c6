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

from deployhook.errors import BodyTooLarge, DeliveryError, SecretMissing, SignatureError
from deployhook.forges.delivery import Delivery, Push, check_size, event_of, parse_body
from deployhook.forges.signature import Verifier
from deployhook.git.checkout import RunResult
from deployhook.network import allowed, client_address
from deployhook.record.store import DeliveryRecord
from deployhook.service.rules import Deploy, Ignore, Ping, decide
from deployhook.web import connections, spool
from deployhook.web.bigparse import parse_in_child

if TYPE_CHECKING:
    from deployhook.service.hook import DeployHook

log = logging.getLogger("deployhook.http")
UNBOUNDED = 1 << 62
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
        self.reply(status_code, {"result": "error", "reason": reason or self._reason})


class HealthHandler(JSONHandler):
    """``GET /health``: 200 and whether the daemon is healthy; never touches git.

    Anyone gets ``{"status": ...}`` alone (what a monitor needs); a request the
    record's access check lets in (the status password, or ``status_access =
    "loopback"`` from this machine) gets the hook's whole status.  A wrong password
    counts as a failed login, and while its client is throttled no password is
    checked: /health is no way around the throttle.
    """

    def initialize(self, hook: DeployHook) -> None:
        self.hook = hook

    def get(self) -> None:
        status = self.hook.status()
        if not self.hook.access.allows(self.request):
            status = {"status": status["status"]}
        self.reply(200, status)


@tornado.web.stream_request_body
class WebhookHandler(JSONHandler):
    """``POST`` a GitHub delivery to deploy; ``GET`` answers 200 (reachability check)."""

    def initialize(self, hook: DeployHook) -> None:
        self.hook = hook
        self.limit = hook.config.max_body_size
        self.body = spool.Body()
        self.verifier: Verifier | None = None
        self.too_large = False
        self.counted = False
        self.push: Push | None = None
        self.row: int | None = None
        self.signature = "unchecked"
        self.client = self.request.remote_ip or "unknown"

    def prepare(self) -> None:
        if self.request.method != "POST":
            return
        self.hook.in_flight += 1  # a reload waits until this answer has been sent
        self.counted = True
        hook = self.hook
        client = client_address(self.request.remote_ip, self.request.headers.get(
            "X-Forwarded-For"), hook.trusted)
        self.client = str(client) if client is not None else "unknown"
        if not allowed(client, hook.allowed):
            self.answer_error(DeliveryError(
                f"address {self.client} is not in allowed_networks", status=403))
            return
        length = self.request.headers.get("Content-Length", "")
        if length.isascii() and length.isdigit() and len(length) <= 18:
            self._check_size(int(length))
        else:
            # Chunked: let every byte reach data_received, which answers 413 past the
            # limit and so closes the connection; only the limit is ever buffered.
            self.request.connection.set_max_body_size(UNBOUNDED)  # type: ignore[union-attr]
        if not self._finished:
            self._start_verifier()

    def _start_verifier(self) -> None:
        """Set up the incremental HMAC, or answer now when the request cannot be verified."""
        connections.mark(self.request, connections.UNVERIFIED)
        config = self.hook.config
        spool.MEMORY.limit, spool.DISK.limit = config.unverified_memory, config.unverified_disk
        try:
            self.verifier = Verifier([self.hook.secret.get()], self.request.headers)
        except DeliveryError as exc:
            self.signature = _signature_result(exc)
            self.answer_error(exc)

    async def data_received(self, chunk: bytes) -> None:
        """Hash ``chunk`` for every candidate secret and keep it until the body is verified;
        wait (so Tornado stops reading) while no budget has room for it."""
        if self.too_large or self._finished or self.verifier is None:
            return
        self._check_size(self.body.size + len(chunk))
        if self.too_large:
            return
        while (room := self.body.add(chunk)) is not None:
            await room
            if self._finished or self.verifier is None:
                return
        if len(chunk) < HASH_IN_THREAD and self.body.file is None:
            self.verifier.update(chunk)
            return
        try:
            await asyncio.get_running_loop().run_in_executor(None, self._consume, chunk)
        except OSError as exc:
            log.error("cannot spool a request body to a temporary file: %s", exc)
            self.body.release()
            self.answer_error(DeliveryError("no room on the server to hold the body", 503))

    def _consume(self, chunk: bytes) -> None:
        """In a thread: hash ``chunk`` (hashlib drops the GIL) and write spooled chunks."""
        verifier = self.verifier
        if verifier is not None:
            verifier.update(chunk)
        self.body.write_pending()

    def _check_size(self, length: int) -> None:
        try:
            check_size(length, self.limit)
        except DeliveryError as exc:
            self.too_large = True
            self.body.release()
            self.answer_error(exc)

    def on_finish(self) -> None:
        self._release()

    def on_connection_close(self) -> None:
        super().on_connection_close()
        self._release()

    def _release(self) -> None:
        self.verifier = None  # a data_received waiting for room stops there
        self.body.release()
        connections.mark(self.request, connections.IDLE)
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
            delivery = await self._read_delivery()
            decision = decide(delivery, hook.repository, hook.branch)
        except DeliveryError as exc:
            self.signature = _signature_result(exc)
            self.answer_error(exc)
            return
        finally:
            self.body.release()
        self.signature = "valid"
        if isinstance(decision, Ping):
            self.answer(200, delivery.delivery_id, {"result": "pong", "zen": decision.zen,
                                                    "reason": "ping received"})
        elif isinstance(decision, Ignore):
            self.answer(202, delivery.delivery_id, {"result": "ignored",
                                                    "reason": decision.reason})
        elif isinstance(decision, Deploy):
            await self.deploy(decision.push)

    async def _read_delivery(self) -> Delivery:
        """Check the signature hashed so far, then parse: a large body in a child process.

        Raises:
            DeliveryError: wrong signature, no event header, or a malformed body.
        """
        assert self.verifier is not None  # prepare() answered otherwise
        headers, body = self.request.headers, self.body
        check_size(body.size, self.limit)
        algorithm = self.verifier.finish()
        connections.mark(self.request, connections.VERIFIED)
        event = event_of(headers)
        content_type = headers.get("Content-Type")
        if body.file is not None:
            payload = await parse_in_child(content_type, body.file)
        else:
            payload = parse_body(content_type, body.data)
        return Delivery(event=event, delivery_id=headers.get("X-GitHub-Delivery") or "-",
                        payload=payload, algorithm=algorithm)

    async def deploy(self, push: Push) -> None:
        """Deploy ``push`` (or answer a replayed delivery ID from the record)."""
        self.push = push
        record = self.hook.record
        if push.delivery_id != "-":
            earlier = await record.try_run(lambda s: s.earlier_deploy(push.delivery_id, push.after))
            if earlier is not None and earlier["run_outcome"] == "ok":
                self.answer(*replayed(push, earlier))
                return
        accepted = self.delivery_record(accepted=True)
        self.row = await record.try_run(lambda s: s.add_delivery(accepted))
        future = self.hook.worker.submit(push, self.row)
        try:
            result = await asyncio.wait_for(asyncio.shield(future),
                                            self.hook.config.response_timeout)
        except TimeoutError:
            future.add_done_callback(lambda f: _log_late(push, f))
            self.answer(202, push.delivery_id, {
                "result": "deploying", "after": push.after, "see": "/deployments",
                "reason": "the deploy is still running; its outcome will be at /deployments "
                          "and /health",
            })
            return
        self.answer(*outcome(push, result))

    def delivery_record(self, accepted: bool = False) -> DeliveryRecord:
        """This request as the record keeps it."""
        push, headers = self.push, self.request.headers
        return DeliveryRecord(
            delivery_id=headers.get("X-GitHub-Delivery", "-")[:100],
            event=headers.get("X-GitHub-Event", "-")[:100], remote_addr=self.client,
            signature=self.signature, ref=push.ref if push else None,
            before=push.before if push else None, after=push.after if push else None,
            pusher=push.pusher if push else None, accepted=accepted)

    def answer(self, status: int, delivery_id: str, body: dict[str, Any]) -> None:
        """Send ``body``, record it, and log one line: delivery, event, ref, SHAs, outcome."""
        ref = self.push.ref if self.push else "-"
        shas = f"{self.push.before[:12]}..{self.push.after[:12]}" if self.push else "-"
        result, reason = str(body.get("result")), str(body.get("reason", ""))
        log.log(logging.WARNING if status >= 400 else logging.INFO,
                "delivery %s from %s event=%s ref=%s %s -> %d %s: %s", delivery_id[:100],
                self.client, self.request.headers.get("X-GitHub-Event", "-")[:100], ref,
                shas, status, result, reason)
        row, run_id = self.row, body.get("run")
        if row is None:
            record = self.delivery_record()
            self.hook.record.log(record, status, result, reason)
        else:
            self.hook.record.submit(lambda s: s.answer_delivery(row, status, result, reason,
                                                                run_id))
        self.reply(status, body)

    def answer_error(self, exc: DeliveryError) -> None:
        delivery_id = self.request.headers.get("X-GitHub-Delivery", "-")
        self.answer(exc.status, delivery_id, {"result": "rejected", "reason": exc.reason})


def outcome(push: Push, result: RunResult) -> tuple[int, str, dict[str, Any]]:
    """The status and body answering ``push`` once ``result``'s run has ended."""
    body: dict[str, Any] = {
        "before": push.before, "after": push.after, "head": result.head_after,
        "duration": round(result.duration, 3), "run": result.run_id,
    }
    if not result.ok:
        return 500, push.delivery_id, {"result": "failed", "reason": result.reason, **body}
    if not result.contains.get(push.after):
        reason = (f"{push.after} is not in {push.ref} after fetching: "
                  "it was force-pushed away or not pushed to this remote")
        return 409, push.delivery_id, {"result": "not deployed", "reason": reason, **body}
    moved = "deployed" if result.deployed else "already deployed"
    return 200, push.delivery_id, {"result": "deployed", "reason": f"{moved} {push.after[:12]}",
                                   **body}


def replayed(push: Push, earlier: dict[str, Any]) -> tuple[int, str, dict[str, Any]]:
    """The answer to a delivery ID whose earlier deploy succeeded: its outcome, no new deploy."""
    status = earlier["status"] if earlier["status"] not in (None, 202) else 200
    reason = (f"delivery {push.delivery_id} was already handled by run {earlier['run']}"
              f" ({earlier['reason'] or 'deployed'}); not deployed again")
    return status, push.delivery_id, {
        "result": earlier["result"] if status != 200 else "deployed", "reason": reason,
        "run": earlier["run"], "head": earlier["run_head"], "after": push.after,
        "replayed": True}


def _signature_result(exc: DeliveryError) -> str:
    if isinstance(exc, SignatureError):
        return "invalid"
    return "unchecked" if isinstance(exc, (BodyTooLarge, SecretMissing)) else "valid"


def _log_late(push: Push, future: asyncio.Future[RunResult]) -> None:
    if future.cancelled() or future.exception() is not None:
        return
    status, delivery_id, body = outcome(push, future.result())
    log.info("delivery %s (answered 202 earlier) -> %d %s: %s", delivery_id, status,
             body["result"], body["reason"])
