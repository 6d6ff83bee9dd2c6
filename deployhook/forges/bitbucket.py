"""Bitbucket Cloud (``repo:push``) and Bitbucket Data Center (``repo:refs_changed``).

Both sign the body with ``X-Hub-Signature: sha256=<hex>`` (HMAC-SHA256) when
the hook has a secret, and name the event in ``X-Event-Key``.  Cloud sends
``X-Request-UUID`` and ``X-Hook-UUID``; Data Center sends ``X-Request-Id`` and
answers its "Test connection" button with ``diagnostics:ping``.  Either may
change several refs in one delivery: one :class:`Push` per change.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from deployhook.errors import MalformedDelivery
from deployhook.forges import mac
from deployhook.forges.delivery import ZERO_SHA
from deployhook.forges.events import (
    BRANCH_PREFIX,
    TAG_PREFIX,
    Event,
    Other,
    Ping,
    Push,
    Pushes,
    field,
    header,
    make_push,
)

CLOUD, SERVER = "bitbucket", "bitbucket-server"
SIGNATURE_HEADER = "X-Hub-Signature"
EVENT_HEADER = "X-Event-Key"
DELIVERY_HEADERS = {CLOUD: "X-Request-UUID", SERVER: "X-Request-Id"}
_CLOUD_REF_TYPES = {"branch": BRANCH_PREFIX, "tag": TAG_PREFIX, "annotated_tag": TAG_PREFIX}


def is_cloud(headers: Mapping[str, str]) -> bool:
    """True when Bitbucket Cloud's own headers are present (else Data Center)."""
    return bool(header(headers, "X-Hook-UUID") or header(headers, "X-Request-UUID"))


def verify(secrets: Sequence[bytes], headers: Mapping[str, str], body: mac.Body) -> int:
    """Index of the secret whose HMAC-SHA256 of ``body`` is ``X-Hub-Signature``.

    Raises:
        SignatureError: no signature (the hook has no secret), not
            ``sha256=<64 hex>``, or no secret that matches (401).
    """
    value = header(headers, SIGNATURE_HEADER)
    if value is not None:
        prefix, _, value = value.partition("=")
        value = value if prefix == "sha256" else ""
    return mac.verify_hex_sha256(SIGNATURE_HEADER, value, "'sha256=<hex>'", secrets, body)


def parse(forge: str, headers: Mapping[str, str], payload: dict[str, Any]) -> Event:
    """Classify a verified Cloud (``forge`` "bitbucket") or Data Center delivery.

    Raises:
        MalformedDelivery: no ``X-Event-Key``, or a push whose changes, refs,
            hashes or repository name are missing or ill-formed (400).
    """
    event = header(headers, EVENT_HEADER)
    if event is None:
        raise MalformedDelivery(f"missing {EVENT_HEADER} header")
    delivery_id = header(headers, DELIVERY_HEADERS[forge]) or "-"
    repository = repository_name(forge, payload)
    if forge == SERVER and event == "diagnostics:ping":
        return Ping(forge, delivery_id, repository)
    wanted = "repo:push" if forge == CLOUD else "repo:refs_changed"
    if event != wanted:
        return Other(forge, delivery_id, repository, event,
                     f"event '{event}' is not deployed; only {wanted} is")
    changes = field(payload, "push", "changes") if forge == CLOUD else payload.get("changes")
    if not isinstance(changes, list):
        raise MalformedDelivery(f"{forge} push has no list of changes")
    if not changes:
        return Other(forge, delivery_id, repository, event, "push changed no ref")
    common = {"forge": forge, "delivery_id": delivery_id, "repository": repository,
              "pusher": _pusher(forge, payload)}
    convert = _cloud_change if forge == CLOUD else _server_change
    pushes = tuple(convert(change, common) for change in changes)
    return Pushes(forge, delivery_id, pushes[0].repository, pushes)


def repository_name(forge: str, payload: dict[str, Any]) -> str | None:
    """Cloud's ``repository.full_name``; Data Center's ``KEY/slug``; None if absent."""
    if not isinstance(payload, dict):
        return None
    if forge == CLOUD:
        name = field(payload, "repository", "full_name")
        return name if isinstance(name, str) else None
    key, slug = field(payload, "repository", "project", "key"), field(payload, "repository", "slug")
    return f"{key}/{slug}" if isinstance(key, str) and isinstance(slug, str) else None


def _pusher(forge: str, payload: dict[str, Any]) -> str | None:
    names = ("nickname", "display_name") if forge == CLOUD else ("name", "displayName")
    return next((v for n in names if isinstance(v := field(payload, "actor", n), str)), None)


def _cloud_change(change: Any, common: dict[str, Any]) -> Push:
    """One ``push.changes[]`` entry: ``new`` is null for a deletion, ``old`` for a creation."""
    new, old = field(change, "new"), field(change, "old")
    named = new if isinstance(new, dict) else old
    kind, name = field(named, "type"), field(named, "name")
    prefix = _CLOUD_REF_TYPES.get(kind) if isinstance(kind, str) else None
    if prefix is None or not isinstance(name, str):
        raise MalformedDelivery("bitbucket change has no branch or tag name")
    return make_push(ref=prefix + name, before=_hash(old), after=_hash(new),
                     deleted=new is None, **common)


def _hash(state: Any) -> Any:
    """The commit hash of a change's ``old``/``new`` side; all zeros when the side is null."""
    return ZERO_SHA if state is None else field(state, "target", "hash")


def _server_change(change: Any, common: dict[str, Any]) -> Push:
    """One ``changes[]`` entry: ``ref.id``, ``fromHash``, ``toHash``, ``type``."""
    ref = field(change, "ref", "id") or field(change, "refId")
    return make_push(ref=ref, before=field(change, "fromHash"), after=field(change, "toHash"),
                     deleted=field(change, "type") == "DELETE", **common)


def sign_headers(forge: str, secret: bytes, body: bytes, event: str,
                 delivery_id: str | None = None) -> dict[str, str]:
    """The headers Bitbucket Cloud or Data Center sends with ``body`` signed with ``secret``."""
    import uuid  # signing is for ``send`` and tests: the daemon never imports it

    delivery_id = delivery_id or str(uuid.uuid4())
    headers = {EVENT_HEADER: event, DELIVERY_HEADERS[forge]: delivery_id,
               SIGNATURE_HEADER: "sha256=" + mac.hmac_sha256(secret, body).hex()}
    if forge == CLOUD:
        headers.update({"Content-Type": "application/json",
                        "User-Agent": "Bitbucket-Webhooks/2.0",
                        "X-Hook-UUID": str(uuid.uuid4()), "X-Attempt-Number": "1"})
    else:
        headers.update({"Content-Type": "application/json; charset=UTF-8",
                        "User-Agent": "Atlassian HttpClient"})
    return headers
