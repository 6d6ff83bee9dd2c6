"""GitHub: ``X-Hub-Signature-256`` (HMAC-SHA256 of the body), ``X-GitHub-Event``.

GitHub signs the raw request body with HMAC and the hook's secret and sends
``X-Hub-Signature-256: sha256=<hex>`` (and, for compatibility,
``X-Hub-Signature: sha1=<hex>``).  SHA-1 is accepted only when it is the only
signature sent.  Digests are compared in constant time and no error message
ever contains the expected MAC.  Push payloads are checked by
:func:`deployhook.forges.events.make_push`, as every forge's are.
"""

from __future__ import annotations

import hmac
from collections.abc import Mapping, Sequence
from typing import Any

from deployhook.errors import MalformedDelivery, Mismatch, SignatureError
from deployhook.forges import mac
from deployhook.forges.events import (
    Event,
    Other,
    Ping,
    Pushes,
    field,
    header,
    make_push,
    present,
)

FORGE = "github"
SHA256_HEADER = "X-Hub-Signature-256"
SHA1_HEADER = "X-Hub-Signature"
EVENT_HEADER = "X-GitHub-Event"
DELIVERY_HEADER = "X-GitHub-Delivery"
_ALGORITHMS = {SHA256_HEADER: ("sha256", mac.hmac_sha256, 64),
               SHA1_HEADER: ("sha1", mac.hmac_sha1, 40)}


def verify(secrets: Sequence[bytes], headers: Mapping[str, str], body: mac.Body) -> int:
    """Index of the secret whose HMAC of ``body`` matches the signature header.

    Raises:
        SignatureError: no signature header (the hook has no secret), a
            malformed one, or no secret that matches (401).
    """
    name = signature_header(headers)
    value = present(headers, name)
    if value is None:
        raise SignatureError(f"missing {SHA256_HEADER} header: set a secret on the webhook")
    received = parse_signature(name, value)
    _, digest, _ = _ALGORITHMS[name]
    index = mac.first_match(secrets, lambda secret: digest(secret, body), [received])
    if index is None:
        raise Mismatch(f"{name} does not match the body: check the webhook's secret")
    return index


def signature_header(headers: Mapping[str, str]) -> str:
    """The header to check: ``X-Hub-Signature-256`` whenever it is sent (even empty),
    else the SHA-1 ``X-Hub-Signature``."""
    return SHA256_HEADER if present(headers, SHA256_HEADER) is not None else SHA1_HEADER


def parse_signature(name: str, value: str) -> bytes:
    """The raw digest of signature header ``name``'s ``value``: ``sha256=<hex>`` (64 hex
    digits), or ``sha1=<hex>`` (40) for ``X-Hub-Signature``; whitespace around is ignored.

    Raises:
        SignatureError: any other form (401).
    """
    algorithm, sep, digest = value.strip().partition("=")
    wanted, _, length = _ALGORITHMS[name]
    if not sep or algorithm != wanted:
        raise SignatureError(f"malformed {name} header: expected '{wanted}=<hex digest>'")
    received = mac.from_hex(digest, length)
    if received is None:
        raise SignatureError(
            f"malformed {name} header: expected {length} hex digits after '{wanted}='"
        )
    return received


def sign(secret: bytes, body: bytes, algorithm: str = "sha256") -> str:
    """The signature header value GitHub sends for ``body``: ``sha256=<hex>``, or
    ``sha1=<hex>`` with ``algorithm`` ``sha1``."""
    return f"{algorithm}={hmac.new(secret, body, mac.ALGORITHMS[algorithm]).hexdigest()}"


def parse(headers: Mapping[str, str], payload: dict[str, Any]) -> Event:
    """Classify a verified GitHub delivery: push, ping, or another event.

    Raises:
        MalformedDelivery: no ``X-GitHub-Event`` header, or a push payload
            that :func:`deployhook.forges.events.make_push` refuses (400).
    """
    event = header(headers, EVENT_HEADER)
    if event is None:
        raise MalformedDelivery(f"missing {EVENT_HEADER} header")
    delivery_id = header(headers, DELIVERY_HEADER) or "-"
    repository = field(payload, "repository", "full_name")
    repository = repository if isinstance(repository, str) else None
    if event == "ping":
        zen = payload.get("zen")
        return Ping(FORGE, delivery_id, repository, zen if isinstance(zen, str) else "")
    if event != "push":
        return Other(FORGE, delivery_id, repository, event,
                     f"event '{event}' is not deployed; only push is")
    push = make_push(forge=FORGE, delivery_id=delivery_id, ref=payload.get("ref"),
                     before=payload.get("before"), after=payload.get("after"),
                     repository=repository, pusher=field(payload, "pusher", "name"),
                     default_branch=field(payload, "repository", "default_branch"),
                     deleted=payload.get("deleted") is True)
    return Pushes(FORGE, delivery_id, push.repository, (push,))


def sign_headers(secret: bytes, body: bytes, event: str = "push",
                 delivery_id: str | None = None) -> dict[str, str]:
    """The headers GitHub sends with ``body`` signed with ``secret``."""
    import uuid  # signing is for ``send`` and tests: the daemon never imports it

    delivery_id = delivery_id or str(uuid.uuid4())
    return {
        "Content-Type": "application/json",
        "User-Agent": "GitHub-Hookshot/deployhook",
        EVENT_HEADER: event,
        DELIVERY_HEADER: delivery_id,
        SHA1_HEADER: sign(secret, body, "sha1"),
        SHA256_HEADER: sign(secret, body),
    }
