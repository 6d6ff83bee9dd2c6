"""What every forge module builds: one HTTP call to a forge's API, and the states."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

PENDING, SUCCESS, FAILURE = "pending", "success", "failure"  # our states, mapped per forge
DESCRIPTION_MAX = 140  # GitHub refuses longer descriptions (422)
USER_AGENT = "deployhook"


@dataclass(frozen=True)
class Call:
    """One request.  ``headers`` carry the token: never log them; ``what`` is safe."""

    method: str
    url: str
    body: dict[str, Any]
    headers: dict[str, str] = field(repr=False)

    @property
    def what(self) -> str:
        """``METHOD url``, for logs and the record (no token)."""
        return f"{self.method} {self.url}"

    def encoded(self) -> bytes:
        return json.dumps(self.body).encode()


@dataclass(frozen=True)
class Status:
    """A state to set on one commit of one repository."""

    repository: str  # owner/name, group/sub/name, workspace/slug or PROJECT/repo
    sha: str
    state: str  # PENDING, SUCCESS or FAILURE
    context: str  # deployhook/<target>
    description: str
    target_url: str | None = None

    @property
    def short(self) -> str:
        return short(self.description)


def short(text: str) -> str:
    """``text`` on one line, cut to :data:`DESCRIPTION_MAX` characters."""
    text = " ".join(text.split())
    return text if len(text) <= DESCRIPTION_MAX else text[:DESCRIPTION_MAX - 3] + "..."


def segment(value: str | int) -> str:
    """``value`` as one path segment of a forge's URL: quoted with no character safe
    (``/``, ``?``, ``#`` and ``%`` too), and a segment ``.`` or ``..`` as ``%2E``, so
    that no value climbs the path or starts a query."""
    text = quote(str(value), safe="")
    return text.replace(".", "%2E") if text in (".", "..") else text


def path(*values: str | int) -> str:
    """``values`` as path segments, each quoted by :func:`segment`, joined by ``/``."""
    return "/".join(segment(value) for value in values)


def repository_path(repository: str) -> str:
    """``owner/name`` (or ``group/sub/name``) as path segments, each quoted."""
    return path(*repository.split("/"))


def json_headers(auth: dict[str, str]) -> dict[str, str]:
    return {**auth, "Content-Type": "application/json", "Accept": "application/json",
            "User-Agent": USER_AGENT}
