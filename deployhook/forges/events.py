"""The events every forge's delivery parses into, and the checks they share.

Pure data and validation, no I/O.  A push is :class:`Pushes`: one :class:`Push`
per changed ref (GitHub, GitLab, Gitea, Forgejo and Gogs send one ref per
delivery; Bitbucket may send several), so a caller matches its target's branch
with :meth:`Pushes.for_branch` whatever the forge.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from deployhook.errors import MalformedDelivery
from deployhook.forges import delivery
from deployhook.forges.delivery import ZERO_SHA

BRANCH_PREFIX = "refs/heads/"
TAG_PREFIX = "refs/tags/"
_SHA = re.compile(r"(?:[0-9a-f]{40}|[0-9a-f]{64})")
_BAD_REF_CHARS = re.compile(r"[\x00-\x20\x7f~^:?*\[\\]")


@dataclass(frozen=True)
class Push(delivery.Push):
    """One changed ref: :class:`deployhook.forges.delivery.Push` plus the forge that sent it.

    A tag push has ``ref`` ``refs/tags/<name>``; a deleted branch or tag has
    ``deleted`` True (and ``after`` all zeros).
    """

    forge: str = "github"

    @property
    def tag(self) -> str | None:
        """The tag name for ``refs/tags/<tag>``, else None (a branch)."""
        return self.ref[len(TAG_PREFIX):] if self.ref.startswith(TAG_PREFIX) else None


@dataclass(frozen=True)
class Pushes:
    """A push delivery: the refs it changed, in the forge's order (at least one)."""

    forge: str
    delivery_id: str
    repository: str
    changes: tuple[Push, ...]

    def for_ref(self, ref: str) -> Push | None:
        """The change to the full ref ``ref`` (``refs/heads/main``), or None."""
        return next((push for push in self.changes if push.ref == ref), None)

    def for_branch(self, branch: str) -> Push | None:
        """The change to branch ``branch``, or None when this push did not touch it."""
        return self.for_ref(BRANCH_PREFIX + branch)

    @property
    def refs(self) -> tuple[str, ...]:
        """Every changed ref, for an answer such as "push to X ignored"."""
        return tuple(push.ref for push in self.changes)


@dataclass(frozen=True)
class Ping:
    """A forge's "is this hook set up?" delivery: answer 200 with ``message``."""

    forge: str
    delivery_id: str
    repository: str | None
    message: str = ""


@dataclass(frozen=True)
class Other:
    """A valid delivery that asks for no deploy: answer 202 with ``reason``."""

    forge: str
    delivery_id: str
    repository: str | None
    event: str
    reason: str


Event = Pushes | Ping | Other


#: HTTP's optional whitespace around a field value (RFC 9110, 5.6.3)
OWS = " \t"


def header(headers: Mapping[str, str], name: str) -> str | None:
    """The value of header ``name`` in any spelling, or None when absent or empty.

    Tornado's ``HTTPHeaders`` is case-insensitive already; a plain dict is
    searched case-insensitively when the exact spelling misses.  Only HTTP's optional
    whitespace (space, tab) is stripped: a clear token may end in any other byte
    (``\xa0`` included), which ``str.strip()`` would have cut.
    """
    value = present(headers, name)
    return value.strip(OWS) or None if isinstance(value, str) else None


def present(headers: Mapping[str, str], name: str) -> str | None:
    """Header ``name`` as sent (an empty value included), or None when absent.

    Only a plain ``dict`` is searched for another spelling: any other mapping (Tornado's
    ``HTTPHeaders``) is taken to be case-insensitive, so a missing header costs one
    lookup, not a pass over every header.
    """
    value = headers.get(name)
    if value is None and type(headers) is dict:
        lower = name.lower()
        value = next((v for k, v in headers.items() if k.lower() == lower), None)
    return value if isinstance(value, str) else None


def wire_bytes(value: str) -> bytes:
    """The bytes a header value had on the wire: Tornado decodes headers as latin-1."""
    try:
        return value.encode("latin-1")
    except UnicodeEncodeError:
        return value.encode("utf-8", "surrogateescape")


def make_push(*, forge: str, delivery_id: str, ref: Any, before: Any, after: Any,
              repository: Any, default_branch: Any = None, pusher: Any = None,
              deleted: bool = False) -> Push:
    """Build a :class:`Push` from a payload's values after checking them, for every forge.

    ``deleted`` is also implied by an all-zero ``after``; a ``default_branch`` or
    ``pusher`` that is not a string is dropped (None, ``unknown``).

    Raises:
        MalformedDelivery: ``ref``, ``before`` or ``after`` missing or not a string,
            ``ref`` not a safe git ref, a SHA not 40 or 64 lowercase hex digits, or
            ``repository`` not a non-empty string (400).
    """
    if not isinstance(ref, str):
        raise MalformedDelivery(f"{forge} push 'ref' is missing or not a string")
    if not safe_ref(ref):
        raise MalformedDelivery(f"{forge} push 'ref' is not a valid git ref")
    for name, sha in (("before", before), ("after", after)):
        if not isinstance(sha, str):
            raise MalformedDelivery(f"{forge} push '{name}' is missing or not a string")
        if not valid_sha(sha):
            raise MalformedDelivery(f"{forge} push '{name}' is not a hex commit SHA")
    if not isinstance(repository, str) or not repository:
        raise MalformedDelivery(f"{forge} push names no repository")
    return Push(ref=ref, before=before, after=after, deleted=deleted or after == ZERO_SHA,
                repository=repository, pusher=pusher if isinstance(pusher, str) else "unknown",
                default_branch=default_branch if isinstance(default_branch, str) else None,
                delivery_id=delivery_id, forge=forge)


def valid_sha(text: str) -> bool:
    """True for a commit SHA as deliveries must carry it: 40 or 64 lowercase hex digits."""
    return bool(_SHA.fullmatch(text))


def safe_ref(ref: str) -> bool:
    """True for a full ref (``refs/...``) with no ``..`` and no character git forbids."""
    return ref.startswith("refs/") and ".." not in ref and not _BAD_REF_CHARS.search(ref)


def field(obj: Any, *path: str) -> Any:
    """``obj[path[0]][path[1]]...``, or None when any step is missing or not an object."""
    for key in path:
        if not isinstance(obj, dict):
            return None
        obj = obj.get(key)
    return obj
