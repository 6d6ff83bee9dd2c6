"""What every forge's delivery path shares: the body's size check and parser, the
:class:`Push` a deploy acts on, and :func:`essentials`, the part of a payload kept.

Pure functions, no I/O; each refusal is a :class:`~deployhook.errors.DeliveryError`
carrying the HTTP status to answer with.  Verifying and classifying a delivery is
:mod:`deployhook.forges`' job (``verify``, then :func:`parse_body`, then ``parse``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs

from deployhook.errors import BodyTooLarge, MalformedDelivery, UnsupportedMediaType

ZERO_SHA = "0" * 40
JSON_TYPE = "application/json"
FORM_TYPE = "application/x-www-form-urlencoded"


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
