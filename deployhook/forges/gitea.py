"""Gitea, Forgejo and Gogs: a bare hex HMAC-SHA256 of the body in their own header.

Each sends ``X-<Forge>-Signature``, ``X-<Forge>-Event`` and
``X-<Forge>-Delivery``; Gitea adds Gogs's and GitHub's headers, Forgejo adds
Gitea's too (go-gitea/gitea services/webhook/deliver.go), which is why the
forge is told by its own header and verified by its own signature only.

None of them has a ping: the "Test Delivery" button sends a push.  A branch or
tag deletion arrives as a ``delete`` event (``ref`` is the short name and
``ref_type`` says branch or tag), parsed as a deleted :class:`Push`.
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
    Pushes,
    field,
    header,
    make_push,
)

PREFIXES = {"gitea": "Gitea", "forgejo": "Forgejo", "gogs": "Gogs"}
# The headers each forge sends, besides its own (deliver.go): Forgejo is a Gitea fork.
_ALSO_SENT = {"forgejo": ("Gitea", "Gogs"), "gitea": ("Gogs",), "gogs": ()}


def event_header(forge: str) -> str:
    """``X-Gitea-Event``, ``X-Forgejo-Event`` or ``X-Gogs-Event``."""
    return f"X-{PREFIXES[forge]}-Event"


def verify(forge: str, secrets: Sequence[bytes], headers: Mapping[str, str],
           body: mac.Body) -> int:
    """Index of the secret whose HMAC-SHA256 of ``body`` is ``X-<Forge>-Signature``.

    Gitea sends the header empty when the hook has no secret: that counts as missing.

    Raises:
        SignatureError: the header missing or empty, not 64 hex digits, or no
            secret that matches (401).
    """
    name = f"X-{PREFIXES[forge]}-Signature"
    return mac.verify_hex_sha256(name, header(headers, name), "64 hex digits", secrets, body)


def parse(forge: str, headers: Mapping[str, str], payload: dict[str, Any]) -> Event:
    """Classify a verified delivery: a push, a deletion, or another event.

    Raises:
        MalformedDelivery: no event header, or a push or delete payload with a
            missing or ill-formed ref, SHA or ``repository.full_name`` (400).
    """
    prefix = PREFIXES[forge]
    event = header(headers, f"X-{prefix}-Event")
    if event is None:
        raise MalformedDelivery(f"missing X-{prefix}-Event header")
    delivery_id = header(headers, f"X-{prefix}-Delivery") or "-"
    repository = field(payload, "repository", "full_name")
    common = {"forge": forge, "delivery_id": delivery_id, "repository": repository,
              "default_branch": field(payload, "repository", "default_branch"),
              "pusher": _user(payload.get("pusher") or payload.get("sender"))}
    if event == "push":
        push = make_push(ref=payload.get("ref"), before=payload.get("before"),
                         after=payload.get("after"), **common)
    elif event == "delete":
        push = make_push(ref=_full_ref(forge, payload), before=ZERO_SHA, after=ZERO_SHA,
                         deleted=True, **common)
    else:
        return Other(forge, delivery_id, repository if isinstance(repository, str) else None,
                     event, f"event '{event}' is not deployed; only push is")
    return Pushes(forge, delivery_id, push.repository, (push,))


def _full_ref(forge: str, payload: dict[str, Any]) -> str:
    """``refs/heads/<ref>`` or ``refs/tags/<ref>`` from a delete event's short name."""
    ref, kind = payload.get("ref"), payload.get("ref_type")
    prefixes = {"branch": BRANCH_PREFIX, "tag": TAG_PREFIX}
    prefix = prefixes.get(kind) if isinstance(kind, str) else None
    if prefix is None or not isinstance(ref, str):
        raise MalformedDelivery(f"{forge} delete event needs 'ref' and 'ref_type' branch or tag")
    return ref if ref.startswith("refs/") else prefix + ref


def _user(user: Any) -> str | None:
    name = field(user, "login") or field(user, "username")
    return name if isinstance(name, str) and name else None


def sign_headers(forge: str, secret: bytes, body: bytes, event: str = "push",
                 delivery_id: str | None = None) -> dict[str, str]:
    """The headers ``forge`` sends with ``body`` signed with ``secret``."""
    import uuid  # signing is for ``send`` and tests: the daemon never imports it

    delivery_id = delivery_id or str(uuid.uuid4())
    sha256 = mac.hmac_sha256(secret, body).hex()
    headers = {"Content-Type": "application/json"}
    for prefix in (PREFIXES[forge], *_ALSO_SENT[forge]):
        headers.update({f"X-{prefix}-Delivery": delivery_id, f"X-{prefix}-Event": event,
                        f"X-{prefix}-Signature": sha256})
        if prefix != "Gogs":
            headers[f"X-{prefix}-Event-Type"] = event
    if forge != "gogs":
        headers.update({"X-GitHub-Delivery": delivery_id, "X-GitHub-Event": event,
                        "X-GitHub-Event-Type": event,
                        "X-Hub-Signature": "sha1=" + mac.hmac_sha1(secret, body).hex(),
                        "X-Hub-Signature-256": "sha256=" + sha256})
    return headers
