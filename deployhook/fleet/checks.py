"""What is read from the fleet's Redis, checked before it is believed.

Redis is an input, not the operator: whoever can write it may stop the fleet, never
choose what it runs.  Every entry read is checked as a delivery is (a 40- or 64-hex
SHA, a safe ref, integer generations, bounded strings, node names as the ``node``
setting) and desired states and outcomes must carry the signature of the fleet key;
an entry that fails is skipped and logged once (:class:`Refusals`).  Heartbeats are
not signed (they only say who is live): they are checked strictly.
"""

from __future__ import annotations

import json
import logging
import math
import re
from typing import Any

from deployhook.fleet.entries import Desired, Outcome, _signed
from deployhook.forges.events import safe_ref, valid_sha
from deployhook.settings import NODE_NAME

KINDS = ("push", "deploy", "rollback")
MAX_GENERATION = 2 ** 53  # JSON numbers stay exact below it
LIMITS = {"ref": 255, "delivery": 100, "by": 200, "reason": 300}  # characters, at most
MAX_ENTRY = 64 * 1024  # bytes of one outcome's or heartbeat's JSON, at most


class BadEntry(ValueError):
    """An entry of Redis this node refuses; the text says why (never the entry)."""


class Refusals:
    """Logs each refused entry once (not every loop), by where it is and why."""

    MAX_REMEMBERED = 1000

    def __init__(self, log: logging.Logger) -> None:
        self.log = log
        self.seen: set[tuple[str, str]] = set()

    def note(self, where: str, reason: str) -> None:
        """Entry ``where`` (``deployhook:desired:site``) was refused because ``reason``."""
        if (where, reason) in self.seen:
            return
        if len(self.seen) >= self.MAX_REMEMBERED:
            self.seen.clear()
        self.seen.add((where, reason))
        self.log.warning("fleet: refused %s in Redis: %s; skipped (logged once)",
                         where[:200], reason)


def check_desired(target: str, values: dict[str, str], key: bytes) -> Desired:
    """The desired state of ``target`` in ``values`` (its hash's fields), checked as a
    delivery is and against its signature with the fleet ``key``.

    Raises:
        BadEntry: a field is missing or invalid, or the signature is missing or not the
            fleet key's.
    """
    sha, ref, kind = values.get("sha", ""), values.get("ref", ""), values.get("kind", "")
    if not valid_sha(sha):
        raise BadEntry("its sha is not a 40- or 64-hex commit SHA")
    if kind not in KINDS:
        raise BadEntry(f"its kind is not one of {', '.join(KINDS)}")
    if len(ref) > LIMITS["ref"] or not (safe_ref(ref) or (kind == "rollback" and not ref)):
        raise BadEntry("its ref is not a safe git ref")  # a rollback's may be empty
    desired = Desired(target, sha, ref, _bounded(values, "delivery"), _bounded(values, "by"),
                      kind, _when(values.get("time")), _generation(values.get("generation")))
    if not _signed(key, "deployhook-desired/1", [
            target, sha, ref, desired.delivery, desired.by, kind, desired.time,
            desired.generation], values.get("sig")):
        raise BadEntry("it is not signed with this fleet's key (fleet_key_file)")
    return desired


def check_outcome(target: str, node: str, text: str, key: bytes,
                  label: str = "deployhook-outcome/1") -> Outcome:
    """Node ``node``'s outcome for ``target`` from its JSON ``text``, checked and
    against its signature with the fleet ``key``.

    Raises:
        BadEntry: not JSON of the outcome's fields with valid values, or not signed with
            the fleet key.
    """
    if not NODE_NAME.fullmatch(node):
        raise BadEntry(f"not a node name (must match {NODE_NAME.pattern})")
    value = _json(text)
    names = {f for f in Outcome.__dataclass_fields__} | {"sig"}
    if not isinstance(value, dict) or set(value) != names:
        raise BadEntry(f"not an object of exactly {', '.join(sorted(names))}")
    head, ok, reason = value["head"], value["ok"], value["reason"]
    if value["node"] != node:
        raise BadEntry("its node is not the field's name")
    if not isinstance(value["sha"], str) or not valid_sha(value["sha"]) or not (
            head is None or (isinstance(head, str) and valid_sha(head))):
        raise BadEntry("its sha or head is not a 40- or 64-hex commit SHA")
    if not isinstance(ok, bool) or not isinstance(reason, str) or len(reason) > LIMITS[
            "reason"]:
        raise BadEntry(f"ok is not true or false, or reason not a string of at most "
                       f"{LIMITS['reason']} characters")
    outcome = Outcome(node, _generation(value["generation"]), value["sha"], head, ok,
                      reason, _when(value["time"]))
    if not _signed(key, label, [
            target, node, outcome.generation, outcome.sha, head, ok, reason, outcome.time],
            value["sig"]):
        raise BadEntry("it is not signed with this fleet's key (fleet_key_file)")
    return outcome


def _beat(text: str) -> dict[str, Any]:
    """A heartbeat's JSON ``text``, checked.

    Raises:
        BadEntry: not what :func:`queue_beat` writes.
    """
    beat = _json(text)
    targets = beat.get("targets") if isinstance(beat, dict) else None
    if not isinstance(targets, dict) or not all(
            isinstance(name, str) and len(name) <= 64 and (
                head is None or (isinstance(head, str) and valid_sha(head)))
            for name, head in targets.items()):
        raise BadEntry("not an object of targets, each with a commit SHA or null")
    return {"targets": targets, "time": _when(beat.get("time"))}


def _bounded(values: dict[str, str], name: str) -> str:
    """Field ``name`` of ``values``, at most its :data:`LIMITS` characters.

    Raises:
        BadEntry: missing or longer.
    """
    text = values.get(name)
    if text is None or len(text) > LIMITS[name]:
        raise BadEntry(f"its {name} is missing or longer than {LIMITS[name]} characters")
    return text


def _generation(value: Any) -> int:
    """A generation: an integer 0..:data:`MAX_GENERATION` (as the hash keeps it, text).

    Raises:
        BadEntry: anything else (a bool, a float, "abc").
    """
    if isinstance(value, str) and re.fullmatch(r"[0-9]{1,16}", value):
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not (
            0 <= value <= MAX_GENERATION):
        raise BadEntry(f"its generation is not an integer from 0 to {MAX_GENERATION}")
    return value


def _when(value: Any) -> float:
    """A time in seconds since the epoch (a number, or its text), finite and not negative.

    Raises:
        BadEntry: anything else.
    """
    try:
        when = float(value) if isinstance(value, (int, float, str)) and not isinstance(
            value, bool) and len(str(value)) <= 32 else math.nan
    except ValueError:
        when = math.nan
    if not math.isfinite(when) or when < 0:
        raise BadEntry("its time is not a finite number of seconds")
    return when


def text(value: Any) -> str:
    """A value read from Redis (bytes, or str with decode_responses) as text."""
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def _json(text: str) -> Any:
    """An entry's JSON ``text``, parsed.

    Raises:
        BadEntry: longer than :data:`MAX_ENTRY` characters, or not JSON.
    """
    if len(text) > MAX_ENTRY:
        raise BadEntry(f"longer than {MAX_ENTRY} characters")
    try:
        return json.loads(text)
    except ValueError:
        raise BadEntry("not JSON") from None
