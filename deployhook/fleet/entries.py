"""The fleet's records, as written to Redis and read back: a target's desired state, a
node's outcome (or readiness), a switch; each signed with the fleet key, which Redis
never sees (:func:`~deployhook.fleet.credentials.fleet_key`).  And :class:`Told`,
what telling the fleet of a delivery gave.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from dataclasses import asdict, dataclass, field
from typing import Any


def _sign(key: bytes, kind: str, values: list[Any]) -> str:
    """HMAC-SHA256 with ``key`` of the canonical JSON of ``kind`` and ``values``."""
    text = json.dumps([kind, *values], separators=(",", ":"), ensure_ascii=True)
    return hmac.new(key, text.encode(), hashlib.sha256).hexdigest()


def _signed(key: bytes, kind: str, values: list[Any], signature: Any) -> bool:
    return isinstance(signature, str) and hmac.compare_digest(
        signature.encode(), _sign(key, kind, values).encode())


@dataclass(frozen=True)
class Desired:
    """The commit the fleet should have for one target, and its generation."""

    target: str
    sha: str
    ref: str
    delivery: str
    by: str
    kind: str = "push"
    time: float = field(default_factory=time.time)
    generation: int = 0

    def signature(self, key: bytes) -> str:
        """HMAC-SHA256 with the fleet ``key`` of every field, the target's name too."""
        return _sign(key, "deployhook-desired/1", [
            self.target, self.sha, self.ref, self.delivery, self.by, self.kind, self.time,
            self.generation])

    def fields(self, key: bytes) -> dict[str, str]:
        """The hash fields written, signed with ``key``."""
        return {"sha": self.sha, "ref": self.ref, "delivery": self.delivery, "by": self.by,
                "kind": self.kind, "time": repr(self.time),
                "generation": str(self.generation), "sig": self.signature(key)}


@dataclass(frozen=True)
class Outcome:
    """What one node made of one generation of a target's desired state."""

    node: str
    generation: int
    sha: str
    head: str | None
    ok: bool
    reason: str
    time: float = field(default_factory=time.time)

    def signature(self, key: bytes, target: str, label: str = "deployhook-outcome/1") -> str:
        """HMAC-SHA256 with the fleet ``key`` of every field and ``target``'s name
        (``label``: what it is, an outcome or a readiness)."""
        return _sign(key, label, [
            target, self.node, self.generation, self.sha, self.head, self.ok, self.reason,
            self.time])

    def dumps(self, key: bytes, target: str, label: str = "deployhook-outcome/1") -> str:
        """The JSON written for ``target``, signed with ``key``."""
        return json.dumps({**asdict(self), "sig": self.signature(key, target, label)})


READY = "deployhook-ready/1"  # the label a readiness is signed with (not an outcome's)


@dataclass(frozen=True)
class Switch:
    """Every live node has built the release of ``sha`` for ``generation``: switch."""

    target: str
    generation: int
    sha: str
    by: str
    time: float = field(default_factory=time.time)

    def signature(self, key: bytes) -> str:
        return _sign(key, "deployhook-switch/1", [self.target, self.generation, self.sha,
                                                  self.by, self.time])

    def fields(self, key: bytes) -> dict[str, str]:
        """The hash fields written (and, with ``target``, the message), signed."""
        return {"generation": str(self.generation), "sha": self.sha, "by": self.by,
                "time": repr(self.time), "sig": self.signature(key)}


@dataclass(frozen=True)
class Told:
    """What telling the fleet of a delivery gave: the desired state it set (or found),
    whether the delivery was new to the fleet, and why the fleet could not be told."""

    desired: Desired | None
    new: bool
    error: str = ""
