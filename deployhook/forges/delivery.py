"""Turn a verified request (headers and raw bytes) into a typed delivery.

Pure functions, no I/O: :func:`read_delivery` checks the size, the signature
and only then parses, in that order, raising a :class:`DeliveryError` subclass
that carries the HTTP status to answer with.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs

from deployhook.errors import BodyTooLarge, MalformedDelivery, UnsupportedMediaType
from deployhook.forges import signature

ZERO_SHA = "0" * 40
_SHA = re.compile(r"(?:[0-9a-f]{40}|[0-9a-f]{64})")
_BAD_REF_CHARS = re.compile(r"[\x00-\x20\x7f~^:?*\[\\]")
JSON_TYPE = "application/json"
FORM_TYPE = "application/x-www-form-urlencoded"


@dataclass(frozen=True)
class Delivery:
    """A signed, parsed webhook delivery."""

    event: str
    delivery_id: str
    payload: dict[str, Any]
    algorithm: str = "sha256"

    @property
    def repository(self) -> str | None:
        """The ``owner/name`` of the delivery's repository, if it names one."""
        repo = self.payload.get("repository")
        name = repo.get("full_name") if isinstance(repo, dict) else None
        return name if isinstance(name, str) else None


@dataclass(frozen=True)
class Push:
    """The facts of a ``push`` event that a deploy needs."""

    ref: str
    before: str
    after: str
    deleted: bool
    repository: str
    default_branch: str | None
    pusher: str
    delivery_id: str = "-"

    @property
    def branch(self) -> str | None:
        """The branch name for ``refs/heads/<branch>``, else None (a tag)."""
        prefix = "refs/heads/"
        return self.ref[len(prefix):] if self.ref.startswith(prefix) else None


def check_size(length: int, limit: int) -> None:
    """Raise BodyTooLarge when ``length`` bytes exceed ``limit``."""
    if length > limit:
        raise BodyTooLarge(f"body of {length} bytes is over the limit of {limit} bytes")


def read_delivery(
    headers: Mapping[str, str], body: bytes, secret: bytes, max_body_size: int
) -> Delivery:
    """Verify and parse one delivery.

    Raises:
        BodyTooLarge: body over ``max_body_size`` (413).
        SignatureError: missing, malformed or wrong signature (401).
        UnsupportedMediaType: neither JSON nor form-encoded (415).
        MalformedDelivery: missing event header or unparseable payload (400).
    """
    check_size(len(body), max_body_size)
    algorithm = signature.verify(secret, body, headers)
    event = event_of(headers)
    payload = parse_body(headers.get("Content-Type"), body)
    delivery_id = headers.get("X-GitHub-Delivery") or "-"
    return Delivery(event=event, delivery_id=delivery_id, payload=payload, algorithm=algorithm)


def event_of(headers: Mapping[str, str]) -> str:
    """The delivery's event name.

    Raises:
        MalformedDelivery: no ``X-GitHub-Event`` header.
    """
    event = headers.get("X-GitHub-Event")
    if not event:
        raise MalformedDelivery("missing X-GitHub-Event header")
    return event


def essentials(payload: dict[str, Any]) -> dict[str, Any]:
    """The part of ``payload`` that deciding and deploying read, nothing else, for every
    forge: refs, SHAs, the repository's and project's names, the pusher, and the changed
    refs of a Bitbucket push without their commit lists.

    Each field only when present; values are kept as they are (validation is the
    parsers' job).
    """
    small: dict[str, Any] = {key: payload[key] for key in _TOP_FIELDS if key in payload}
    for key, fields in _NESTED_FIELDS.items():
        inner = payload.get(key)
        if key in payload:
            small[key] = ({name: inner[name] for name in fields if name in inner}
                          if isinstance(inner, dict) else inner)
    push = payload.get("push")
    if isinstance(push, dict) and isinstance(push.get("changes"), list):
        small["push"] = {"changes": [
            {k: v for k, v in change.items() if k not in ("commits", "links")}
            if isinstance(change, dict) else change for change in push["changes"]]}
    return small


# Read by the forges' parsers (deployhook.forges): GitHub, GitLab, Gitea/Forgejo/Gogs,
# Bitbucket Cloud (push.changes, actor) and Data Center (changes, repository.project).
_TOP_FIELDS = ("ref", "before", "after", "deleted", "zen", "object_kind", "user_name",
               "user_username", "ref_type", "changes", "actor")
_NESTED_FIELDS = {"repository": ("full_name", "default_branch", "slug", "project"),
                  "pusher": ("name", "login", "username"), "sender": ("login", "username"),
                  "project": ("path_with_namespace", "default_branch")}


def parse_body(content_type: str | None, body: bytes | bytearray) -> dict[str, Any]:
    """Decode a JSON or form-encoded (``payload=<json>``) body into a dict.

    Raises:
        UnsupportedMediaType: any other Content-Type.
        MalformedDelivery: not UTF-8, not JSON, not an object, or no single payload.
    """
    media = (content_type or JSON_TYPE).split(";")[0].strip().lower()
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise MalformedDelivery("body is not UTF-8") from exc
    del body  # a body passed as a temporary (the parsing child's) is freed before the parse
    if media == FORM_TYPE:
        text = _form_payload(text)
    elif media != JSON_TYPE:
        raise UnsupportedMediaType(
            f"unsupported Content-Type {media!r}: use {JSON_TYPE} or {FORM_TYPE}"
        )
    try:
        payload = json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise MalformedDelivery("payload is not valid JSON") from exc
    if not isinstance(payload, dict):
        raise MalformedDelivery("payload is not a JSON object")
    return payload


def _form_payload(text: str) -> str:
    try:
        fields = parse_qs(text, keep_blank_values=True, strict_parsing=bool(text))
    except ValueError as exc:
        raise MalformedDelivery("form body cannot be parsed") from exc
    values = fields.get("payload", [])
    if len(values) != 1:
        raise MalformedDelivery("form body needs exactly one 'payload' field")
    return values[0]


def parse_push(delivery: Delivery) -> Push:
    """Validate a ``push`` payload and return its facts.

    Raises:
        MalformedDelivery: a missing or ill-typed ``ref``, ``before``, ``after``
            or ``repository.full_name``, a SHA that is not hex, or an unsafe ref.
    """
    p = delivery.payload
    ref = _field(p, "ref", str)
    if not ref.startswith("refs/") or ".." in ref or _BAD_REF_CHARS.search(ref):
        raise MalformedDelivery("push 'ref' is not a valid git ref")
    before, after = _field(p, "before", str), _field(p, "after", str)
    for name, sha in (("before", before), ("after", after)):
        if not _SHA.fullmatch(sha):
            raise MalformedDelivery(f"push '{name}' is not a hex commit SHA")
    repo = _field(p, "repository", dict)
    full_name = _field(repo, "full_name", str, "repository.full_name")
    default_branch = repo.get("default_branch")
    pusher = p.get("pusher")
    pusher_name = pusher.get("name") if isinstance(pusher, dict) else None
    return Push(
        ref=ref,
        before=before,
        after=after,
        deleted=p.get("deleted") is True or after == ZERO_SHA,
        repository=full_name,
        default_branch=default_branch if isinstance(default_branch, str) else None,
        pusher=pusher_name if isinstance(pusher_name, str) else "unknown",
        delivery_id=delivery.delivery_id,
    )


def _field(obj: dict[str, Any], key: str, kind: type, label: str | None = None) -> Any:
    value = obj.get(key)
    if not isinstance(value, kind):
        what = "an object" if kind is dict else "a string"
        raise MalformedDelivery(f"push '{label or key}' is missing or not {what}")
    return value
