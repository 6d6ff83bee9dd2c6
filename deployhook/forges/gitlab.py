"""GitLab: the secret token in clear (``X-Gitlab-Token``) or a signing token.

A secret starting with ``whsec_`` is a signing token (Standard Webhooks, behind
GitLab's ``webhook_signing_token`` flag): ``webhook-signature: v1,<base64>``
holds the HMAC-SHA256, keyed with the base64-decoded rest of the secret, of
``{webhook-id}.{webhook-timestamp}.{body}``; a timestamp more than
:data:`TOLERANCE` seconds from the clock is refused as stale.  Any other secret
is compared (as a SHA-256, in constant time) with ``X-Gitlab-Token``.

``Push Hook`` and ``Tag Push Hook`` (and a system hook's push) are pushes; the
delivery id is the signed ``webhook-id`` of a signed delivery, else
``Idempotency-Key`` (GitLab 17.4+, kept across retries) or ``webhook-id`` (see
:func:`delivery_id_of`).  GitLab has no ping: its "Test" button sends a push.
"""

from __future__ import annotations

import base64
import binascii
import time
from collections.abc import Mapping, Sequence
from typing import Any

from deployhook.errors import MalformedDelivery, Mismatch, SignatureError
from deployhook.forges import mac
from deployhook.forges.events import Event, Other, Pushes, field, header, make_push, wire_bytes

FORGE = "gitlab"
TOKEN_HEADER = "X-Gitlab-Token"
EVENT_HEADER = "X-Gitlab-Event"
SIGNING_PREFIX = b"whsec_"
TOLERANCE = 300
_PUSH_KINDS = {"Push Hook": "push", "Tag Push Hook": "tag_push"}


def signing_key(secret: bytes) -> bytes | None:
    """The HMAC key of a ``whsec_<base64>`` secret, or None for a plain token or bad base64."""
    if not secret.startswith(SIGNING_PREFIX):
        return None
    try:
        return base64.b64decode(secret[len(SIGNING_PREFIX):], validate=True) or None
    except (binascii.Error, ValueError):
        return None


def verify(secrets: Sequence[bytes], headers: Mapping[str, str], body: mac.Body,
           now: float | None = None) -> int:
    """Index of the secret that authenticates the delivery (token or signature).

    Every secret is checked, each in constant time: a ``whsec_`` one against
    ``webhook-signature``, any other against ``X-Gitlab-Token``.

    Raises:
        SignatureError: neither header sent, a signature without
            ``webhook-id``/``webhook-timestamp``, no secret that matches, or a
            matching signature whose timestamp is stale (401).
    """
    token, signature = header(headers, TOKEN_HEADER), header(headers, "webhook-signature")
    if token is None and signature is None:
        raise SignatureError(f"missing {TOKEN_HEADER} header: set a secret token on the webhook")
    tokens = [mac.token_digest(wire_bytes(token))] if token is not None else []
    message = _signed_message(headers, body, required=token is None) if signature else None
    signatures = _signatures(signature) if message is not None and signature else []
    if token is None and not signatures:
        raise SignatureError("malformed webhook-signature header: expected 'v1,<base64>'")
    by_token = mac.first_match(secrets, _token_digest, tokens)
    by_signature = mac.first_match(
        secrets, lambda secret: _signature_digest(secret, message), signatures)
    index = min((i for i in (by_token, by_signature) if i is not None), default=None)
    if index is None:
        what = TOKEN_HEADER if token is not None else "webhook-signature"
        raise Mismatch(f"{what} does not match: check the webhook's secret token")
    if signing_key(secrets[index]) is not None:
        _check_fresh(header(headers, "webhook-timestamp") or "", now)
    return index


def _token_digest(secret: bytes) -> bytes | None:
    """What ``X-Gitlab-Token`` hashes to for a plain secret; None for a signing token."""
    return None if signing_key(secret) is not None else mac.token_digest(secret)


def _signature_digest(secret: bytes, message: mac.Body | None) -> bytes | None:
    """The v1 signature a signing token gives ``message``; None for a plain secret."""
    key = signing_key(secret)
    return mac.hmac_sha256(key, message) if key is not None and message is not None else None


def _signed_message(headers: Mapping[str, str], body: mac.Body,
                    required: bool) -> mac.Body | None:
    """``{webhook-id}.{webhook-timestamp}.{body}``, the bytes a signing token signs.

    Raises:
        SignatureError: a header is missing and ``required`` (no token came either).
    """
    webhook_id, stamp = header(headers, "webhook-id"), header(headers, "webhook-timestamp")
    if webhook_id is None or stamp is None:
        if required:
            raise SignatureError(
                "webhook-signature needs webhook-id and webhook-timestamp headers")
        return None
    return mac.prefixed(signed_prefix(headers) or b"", body)


def signed_prefix(headers: Mapping[str, str]) -> bytes | None:
    """``{webhook-id}.{webhook-timestamp}.``: what a signing token signs before the body;
    None without those headers."""
    webhook_id, stamp = header(headers, "webhook-id"), header(headers, "webhook-timestamp")
    if webhook_id is None or stamp is None:
        return None
    return wire_bytes(f"{webhook_id}.{stamp}.")


def _signatures(value: str) -> list[bytes]:
    """The digests of every well-formed ``v1,<base64>`` in a space-separated list."""
    found = []
    for item in value.split():
        version, _, encoded = item.partition(",")
        try:
            digest = base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError):
            continue
        if version == "v1" and len(digest) == 32:
            found.append(digest)
    return found


def _check_fresh(stamp: str, now: float | None) -> None:
    """Raise SignatureError unless ``stamp`` is Unix seconds within TOLERANCE of ``now``."""
    if not stamp.isascii() or not stamp.isdigit() or len(stamp) > 12:
        raise SignatureError("malformed webhook-timestamp header: expected Unix seconds")
    skew = int(stamp) - (time.time() if now is None else now)
    if abs(skew) > TOLERANCE:
        raise SignatureError(f"webhook-timestamp is {abs(skew):.0f} s from this server's "
                             f"clock (over {TOLERANCE} s): stale or replayed delivery")


def delivery_id_of(headers: Mapping[str, str]) -> str | None:
    """The id that tells a delivery from a replay of it (None: no such header).

    With a ``webhook-signature`` header, ``webhook-id``: a signing token signs it (it
    is part of ``{webhook-id}.{webhook-timestamp}.{body}``) but not ``Idempotency-Key``,
    so anyone holding a captured delivery could otherwise replay it, within the
    timestamp's :data:`TOLERANCE`, as a new delivery under a new key.  Which secret
    verified is not known here, and need not be: a delivery that carries a signature
    yet was verified by a clear ``X-Gitlab-Token`` has nothing signed, so its id may
    be any header.  Without a signature, ``Idempotency-Key`` (GitLab keeps it across
    retries), else ``webhook-id``.
    """
    names = ("webhook-id", "Idempotency-Key") if header(headers, "webhook-signature") \
        else ("Idempotency-Key", "webhook-id")
    return next((value for value in map(lambda name: header(headers, name), names) if value),
                None)


def parse(headers: Mapping[str, str], payload: dict[str, Any]) -> Event:
    """Classify a verified GitLab delivery: a push (branch or tag) or another event.

    Raises:
        MalformedDelivery: no ``X-Gitlab-Event``, an ``object_kind`` that
            contradicts it, or a push whose ref, SHAs or
            ``project.path_with_namespace`` are missing or ill-formed (400).
    """
    event = header(headers, EVENT_HEADER)
    if event is None:
        raise MalformedDelivery(f"missing {EVENT_HEADER} header")
    delivery_id = delivery_id_of(headers) or "-"
    repository = field(payload, "project", "path_with_namespace")
    kind = payload.get("object_kind")
    wanted = _PUSH_KINDS.get(event)
    if wanted is not None and kind != wanted:
        raise MalformedDelivery(f"{event} whose object_kind is not '{wanted}'")
    if wanted is None and not (event == "System Hook" and kind in _PUSH_KINDS.values()):
        return Other(FORGE, delivery_id, repository if isinstance(repository, str) else None,
                     event, f"event '{event}' is not deployed; only Push Hook is")
    pusher = payload.get("user_username") or payload.get("user_name")
    push = make_push(forge=FORGE, delivery_id=delivery_id, ref=payload.get("ref"),
                     before=payload.get("before"), after=payload.get("after"),
                     repository=repository, pusher=pusher,
                     default_branch=field(payload, "project", "default_branch"))
    return Pushes(FORGE, delivery_id, push.repository, (push,))


def sign_headers(secret: bytes, body: bytes, event: str = "Push Hook",
                 delivery_id: str | None = None, now: float | None = None) -> dict[str, str]:
    """The headers GitLab sends: the token, or the signature for a ``whsec_`` secret."""
    import uuid  # signing is for ``send`` and tests: the daemon never imports it

    delivery_id = delivery_id or str(uuid.uuid4())
    headers = {"Content-Type": "application/json", "User-Agent": "GitLab/17.5.0",
               EVENT_HEADER: event, "X-Gitlab-Webhook-UUID": str(uuid.uuid4()),
               "X-Gitlab-Event-UUID": str(uuid.uuid4()), "Idempotency-Key": delivery_id}
    key = signing_key(secret)
    if key is None:
        headers[TOKEN_HEADER] = secret.decode("latin-1")
        return headers
    stamp = str(int(time.time() if now is None else now))
    digest = mac.hmac_sha256(key, f"{delivery_id}.{stamp}.".encode() + body)
    headers.update({"webhook-id": delivery_id, "webhook-timestamp": stamp,
                    "webhook-signature": "v1," + base64.b64encode(digest).decode()})
    return headers
