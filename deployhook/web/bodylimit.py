"""Every route bounds its body before reading it.

Only the webhook routes take large bodies: they stream them (``stream_request_body``),
lift Tornado's cap for their own request and check the size themselves (see
:class:`~deployhook.web.webhook.WebhookHandler`).  Every other route (``/health``, the
record, the pages, an unknown path) takes at most :data:`SMALL_BODY` bytes: a larger
announced body is answered 413 as soon as its headers arrive, and a chunked one as soon
as it passes the cap, and no byte of it is kept; the connection closes once the answer
is out, so the rest of the body is never read.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

import tornado.web
from tornado import httputil

SMALL_BODY = 64 * 1024  # bytes a request to any route but a webhook may carry
UNBOUNDED = 1 << 62  # the connection's own cap, lifted where a delegate counts itself
Refused = Callable[[httputil.HTTPServerRequest, int], None]


class BoundedApplication(tornado.web.Application):
    """A Tornado application whose routes without ``stream_request_body`` refuse bodies
    over :data:`SMALL_BODY` with 413, unread (serve it with ``max_body_size`` at most
    :data:`SMALL_BODY`, as :func:`~deployhook.web.connections.make_server` does).

    The setting ``refused``, when given, is called with the request and the status of
    each such refusal (to count it with the other refused strangers)."""

    def get_handler_delegate(self, request: httputil.HTTPServerRequest,
                             target_class: type[tornado.web.RequestHandler],
                             target_kwargs: dict[str, Any] | None = None,
                             path_args: list[bytes] | None = None,
                             path_kwargs: dict[str, bytes] | None = None,
                             ) -> Any:
        delegate = super().get_handler_delegate(request, target_class, target_kwargs,
                                                path_args, path_kwargs)
        if delegate.stream_request_body:
            return delegate
        return _Bounded(delegate, request, self.settings.get("refused"))


class _Bounded(httputil.HTTPMessageDelegate):
    """A handler's delegate that answers 413 itself for a body over :data:`SMALL_BODY`."""

    def __init__(self, inner: httputil.HTTPMessageDelegate,
                 request: httputil.HTTPServerRequest,
                 refused: Refused | None = None) -> None:
        self.inner, self.request, self.refused_by = inner, request, refused
        self.size = 0
        self.refused = False

    def headers_received(self, start_line: Any, headers: httputil.HTTPHeaders,
                         ) -> Awaitable[None] | None:
        length = headers.get("Content-Length", "")
        if length.isascii() and length.isdigit():
            if len(length) > 18 or int(length) > SMALL_BODY:
                self._refuse(int(length) if len(length) <= 18 else None)
                return None
        elif "Transfer-Encoding" in headers:
            # counted here (Tornado would answer a bare 400 past its cap)
            self.request.connection.set_max_body_size(UNBOUNDED)  # type: ignore[union-attr]
        return self.inner.headers_received(start_line, headers)

    def data_received(self, chunk: bytes) -> Awaitable[None] | None:
        if self.refused:
            return None
        self.size += len(chunk)
        if self.size > SMALL_BODY:
            self._refuse(None)
            return None
        return self.inner.data_received(chunk)

    def finish(self) -> None:
        if not self.refused:
            self.inner.finish()

    def on_connection_close(self) -> None:
        if not self.refused:
            self.inner.on_connection_close()

    def _refuse(self, length: int | None) -> None:
        """Answer 413 now and close once it is out (the body is never read on)."""
        self.refused = True
        self.inner.on_connection_close()  # drop what a non-streaming delegate kept
        connection = self.request.connection
        assert connection is not None
        connection.set_max_body_size(UNBOUNDED)  # no bare 400 after our answer
        size = f"body of {length} bytes" if length is not None else "body"
        body = json.dumps({"result": "error", "reason": f"{size} is over the limit of "
                           f"{SMALL_BODY} bytes (only webhooks take large bodies)"}).encode()
        headers = httputil.HTTPHeaders({
            "Content-Type": "application/json; charset=utf-8", "Cache-Control": "no-store",
            "Content-Length": str(len(body) + 1), "Connection": "close"})
        connection.write_headers(
            httputil.ResponseStartLine("HTTP/1.1", 413, "Content Too Large"), headers,
            body + b"\n")
        connection.finish()
        if self.refused_by is not None:
            self.refused_by(self.request, 413)
