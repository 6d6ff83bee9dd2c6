"""The fleet's state in Redis: its keys, what they hold, and what it means.

No Redis client here (so no ``redis`` import): the daemon's agent
(:mod:`deployhook.fleet.agent`, redis.asyncio) and ``deployhook fleet`` /
``deployhook deploy`` (the blocking client) queue the same commands on their
pipelines with the ``queue_*`` functions and read the replies with ``parse_*``.

Keys (``deployhook:`` first):

- ``desired:<target>`` (hash): the commit every node should have: ``sha``, ``ref``,
  ``delivery``, ``time``, ``by`` (node, and who), ``kind`` (push, deploy, rollback) and
  ``generation``, bumped by each new desired state (a new push, a redelivery after a
  failure, an explicit deploy): a node retries a commit that failed on it only for a
  new generation.  ``sig``: HMAC-SHA256 of every other field and the target's name
  with the fleet key (``fleet_key_file``, never in Redis).
- ``outcomes:<target>`` (hash): node -> JSON ``{node, generation, sha, head, ok, reason,
  time, sig}``, signed likewise (with the target's name).
- ``node:<node>`` (string, expires after :func:`heartbeat_ttl`): JSON ``{targets: {name:
  HEAD}, time}``; a node is live while it is there.  ``nodes:<target>`` (set): every
  node seen deploying the target.
- ``delivery:<target>:<id>`` (string, 7 days): the node that accepted the delivery
  first (``SET NX``): a redelivery to any node does not deploy the fleet again.
- ``ready:<target>`` (hash): node -> JSON as an outcome's (signed as a readiness), in
  releases mode with ``fleet_switch = "together"``: the node has built the release of
  that generation and waits to switch ``current``.
- ``switch:<target>`` (hash): ``generation``, ``sha``, ``by``, ``time``, ``sig``: every
  live node reported ready for that generation, so every node switches (a node that
  builds it later, back from an absence, switches at once).
- channel ``desired``: the target's name, published with each new desired state;
  ``progress``: the target's name, with each outcome or readiness written (what an
  answer waiting on the fleet wakes on); ``switch``: the switch's JSON (its fields and
  ``target``), with each switch decided.

Redis is an input, not the operator: whoever can write it may stop the fleet, never
choose what it runs.  Every entry read is checked as a delivery is (a 40- or 64-hex
SHA, a safe ref, integer generations, bounded strings, node names as the ``node``
setting) and desired states and outcomes must carry the signature of the fleet key;
an entry that fails is skipped and logged once (:class:`Refusals`).  Heartbeats are
not signed (they only say who is live): they are checked strictly.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import math
import os
import re
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from deployhook.errors import ConfigError
from deployhook.forges.events import safe_ref, valid_sha
from deployhook.redact import redact
from deployhook.secret import parse_secrets
from deployhook.settings import NODE_NAME

log = logging.getLogger("deployhook.fleet")
PREFIX = "deployhook:"
CHANNEL = PREFIX + "desired"
PROGRESS = PREFIX + "progress"
SWITCH = PREFIX + "switch"
NOT_SWITCHED = "not switched: "  # the reason of a node whose fleet did not switch
HEARTBEAT_EVERY = 5.0  # seconds between heartbeats (reconcile_interval when shorter)
MISSED_BEATS = 3  # a node stays live for this many heartbeat periods after its last one
HEARTBEAT_TTL = round(MISSED_BEATS * HEARTBEAT_EVERY)  # 15 s, unless reconcile_interval < 5
DELIVERY_TTL = 7 * 86400  # seconds a delivery ID is remembered fleet-wide
KINDS = ("push", "deploy", "rollback")
MAX_GENERATION = 2 ** 53  # JSON numbers stay exact below it
LIMITS = {"ref": 255, "delivery": 100, "by": 200, "reason": 300}  # characters, at most
MAX_ENTRY = 64 * 1024  # bytes of one outcome's or heartbeat's JSON, at most
MIN_KEY = 32  # characters of the fleet key, at least ('deployhook init' writes 64)
_PASSWORD = re.compile(r"(rediss?://)([^@/]*@)")


def heartbeat_every(reconcile_interval: float) -> float:
    """Seconds between a node's heartbeats: :data:`HEARTBEAT_EVERY`, or
    ``reconcile_interval`` when that is shorter (its beat loop reconciles too)."""
    return min(HEARTBEAT_EVERY, reconcile_interval)


def heartbeat_ttl(reconcile_interval: float) -> int:
    """Seconds a node stays live after its last heartbeat: :data:`MISSED_BEATS` heartbeat
    periods (:data:`HEARTBEAT_TTL`, 15, by default), at least 1."""
    return max(1, math.ceil(MISSED_BEATS * heartbeat_every(reconcile_interval)))


def desired_key(target: str) -> str:
    return f"{PREFIX}desired:{target}"


def outcomes_key(target: str) -> str:
    return f"{PREFIX}outcomes:{target}"


def heartbeat_key(node: str) -> str:
    return f"{PREFIX}node:{node}"


def nodes_key(target: str) -> str:
    return f"{PREFIX}nodes:{target}"


def ready_key(target: str) -> str:
    return f"{PREFIX}ready:{target}"


def switch_key(target: str) -> str:
    return f"{PREFIX}switch:{target}"


def delivery_key(target: str, delivery_id: str) -> str:
    return f"{PREFIX}delivery:{target}:{delivery_id[:100]}"


def masked(url: str | None) -> str:
    """``redis_url`` safe to log or answer: its user and password replaced by ``***``."""
    return redact(_PASSWORD.sub(r"\1***@", url or ""))


def password(path: str | None) -> str | None:
    """The Redis password in ``path`` (``redis_password_file``; its first line), or None
    when no file is set.

    Raises:
        ConfigError: the file is set but missing, unreadable or empty (naming the file).
    """
    if path is None:
        return None
    try:
        lines = [line.strip() for line in Path(path).read_text().splitlines() if line.strip()]
    except OSError as exc:
        raise ConfigError(f"redis_password_file {path} cannot be read: {exc.strerror}") \
            from None
    if not lines:
        raise ConfigError(f"redis_password_file {path} is empty")
    return lines[0]


def tls(url: str | None, ca_file: str | None) -> dict[str, Any]:
    """The TLS options of a Redis client of ``url``: with ``rediss://`` and
    ``redis_ca_file`` set, that CA (and only it) must have signed Redis's certificate,
    whose name must be ``url``'s host; without a CA file, the system's CAs.

    Raises:
        ConfigError: ``ca_file`` is set but missing or unreadable (naming it).
    """
    if ca_file is None or not (url or "").startswith("rediss://"):
        return {}
    try:
        with open(ca_file, "rb"):
            pass
    except OSError as exc:
        raise ConfigError(f"redis_ca_file {ca_file} cannot be read: {exc.strerror}") \
            from None
    return {"ssl_ca_certs": ca_file, "ssl_cert_reqs": "required", "ssl_check_hostname": True}


def fleet_key(path: str | None) -> bytes:
    """The fleet key in ``path`` (``fleet_key_file``; its first line that is not a
    comment), which signs desired states and outcomes.

    Raises:
        ConfigError: no file is set, or it is missing, unreadable, empty or shorter than
            :data:`MIN_KEY` characters (naming the file, never showing the key).
    """
    hint = ("'deployhook init' writes one; every node needs the same file "
            "(docs/fleet.rst)")
    if path is None:
        raise ConfigError(f"redis_url needs fleet_key_file: {hint}")
    try:
        keys = parse_secrets(Path(path).read_bytes())
    except OSError as exc:
        raise ConfigError(f"fleet_key_file {path} cannot be read: {exc.strerror}; {hint}") \
            from None
    if not keys or len(keys[0]) < MIN_KEY:
        raise ConfigError(f"fleet_key_file {path} holds no key of {MIN_KEY} characters or "
                          f"more; {hint}")
    return keys[0]


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


@dataclass(frozen=True)
class NodeState:
    """One node's state for one target's desired generation, as shown and answered:
    ``deployed``, ``failed``, ``deploying`` (live, no outcome yet) or ``absent`` (no
    heartbeat for :func:`heartbeat_ttl` seconds)."""

    node: str
    state: str
    head: str | None = None
    reason: str = ""
    time: float | None = None


def next_desired(desired: Desired, current: Any) -> Desired:
    """``desired`` as the next generation after ``current`` (the ``generation`` field in
    Redis, read under ``WATCH``; one that is not a valid generation counts as 0): the
    generation is signed, so the publisher chooses it before writing."""
    try:
        before = _generation(_text(current)) if current is not None else 0
    except BadEntry:
        before = 0
    return replace(desired, generation=before + 1)


def queue_publish(pipe: Any, desired: Desired, key: bytes) -> None:
    """Queue ``desired`` (its generation from :func:`next_desired`) on ``pipe``, a
    transaction after ``WATCH desired:<target>``: the hash replaced by its signed
    fields, the notification."""
    pipe.delete(desired_key(desired.target))
    pipe.hset(desired_key(desired.target), mapping=desired.fields(key))
    pipe.publish(CHANNEL, desired.target)


def queue_report(pipe: Any, target: str, outcome: Outcome, key: bytes) -> None:
    """Queue ``outcome`` as its node's outcome for ``target``, signed with ``key``, and
    the notification of progress."""
    pipe.hset(outcomes_key(target), outcome.node, outcome.dumps(key, target))
    pipe.publish(PROGRESS, target)


def queue_ready(pipe: Any, target: str, ready: Outcome, key: bytes) -> None:
    """Queue ``ready`` (a node built the release of a generation) for ``target``."""
    pipe.hset(ready_key(target), ready.node, ready.dumps(key, target, READY))
    pipe.publish(PROGRESS, target)


def queue_switch(pipe: Any, switch: Switch, key: bytes) -> None:
    """Queue the switch decided for ``switch.target`` and its message."""
    values = switch.fields(key)
    pipe.delete(switch_key(switch.target))
    pipe.hset(switch_key(switch.target), mapping=values)
    pipe.publish(SWITCH, json.dumps({**values, "target": switch.target}))


def parse_switch(target: str, raw: dict[Any, Any] | None, key: bytes,
                 refusals: Refusals) -> Switch | None:
    """A ``switch:<target>`` hash (or a message's fields): None when there is none or it
    fails its checks or its signature (noted in ``refusals``)."""
    if not raw:
        return None
    values = {_text(k): _text(v) for k, v in raw.items()}
    try:
        if not valid_sha(values.get("sha", "")):
            raise BadEntry("its sha is not a 40- or 64-hex commit SHA")
        switch = Switch(target, _generation(values.get("generation")), values["sha"],
                        _bounded(values, "by"), _when(values.get("time")))
        if not _signed(key, "deployhook-switch/1", [
                target, switch.generation, switch.sha, switch.by, switch.time],
                values.get("sig")):
            raise BadEntry("it is not signed with this fleet's key (fleet_key_file)")
    except BadEntry as exc:
        refusals.note(switch_key(target), str(exc))
        return None
    return switch


def decide(target: str, desired: Desired, ready: dict[str, Outcome],
           outcomes: dict[str, Outcome], beats: dict[str, dict[str, Any]]
           ) -> tuple[str, str]:
    """Whether the fleet switches to ``desired``'s release: ("switch", "") once every
    live node of ``target`` built it (or reported it deployed), ("abort", why) once one
    failed its generation (naming the nodes and their reasons; those that failed for
    another's sake last), else ("wait", the nodes waited for)."""
    live = sorted(n for n, beat in beats.items() if target in (beat.get("targets") or {}))
    failed, waiting = [], []
    for node in live:
        outcome, built = outcomes.get(node), ready.get(node)
        if outcome is not None and outcome.generation == desired.generation:
            if not outcome.ok:
                failed.append(outcome)
        elif not (built is not None and built.generation == desired.generation
                  and built.sha == desired.sha and built.ok):
            waiting.append(node)
    if failed:
        first = [o for o in failed if not o.reason.startswith(NOT_SWITCHED)] or failed
        return "abort", NOT_SWITCHED + "; ".join(
            f"{o.node} failed ({o.reason})" for o in first)[:280]
    if waiting:
        return "wait", ", ".join(waiting)
    return "switch", ""


def queue_beat(pipe: Any, node: str, heads: dict[str, str | None], ttl: int) -> None:
    """Queue this node's heartbeat: live for ``ttl`` seconds; and its membership of each
    target's nodes."""
    pipe.set(heartbeat_key(node), json.dumps({"targets": heads, "time": time.time()}),
             ex=ttl)
    for target in heads:
        pipe.sadd(nodes_key(target), node)


def queue_read(pipe: Any, targets: list[str]) -> None:
    """Queue the reads of every target's desired state, outcomes and nodes."""
    for target in targets:
        pipe.hgetall(desired_key(target))
        pipe.hgetall(outcomes_key(target))
        pipe.smembers(nodes_key(target))


def parse_read(targets: list[str], replies: list[Any], key: bytes, refusals: Refusals
               ) -> tuple[dict[str, Desired | None], dict[str, dict[str, Outcome]], list[str]]:
    """The replies of :func:`queue_read` (a pipeline run with ``raise_on_error=False``: a
    key of the wrong type is a refused entry): desired state and outcomes per target (a
    node that deploys the target and never reported has an empty outcome), and every
    node; what fails its checks is left out and noted in ``refusals``."""
    desired, outcomes, members = {}, {}, {}
    for i, target in enumerate(targets):
        raw_desired, raw_outcomes, raw_members = checked_replies(
            refusals, replies[3 * i:3 * i + 3],
            (desired_key(target), outcomes_key(target), nodes_key(target)))
        desired[target] = parse_desired(target, raw_desired, key, refusals)
        outcomes[target] = parse_outcomes(target, raw_outcomes, key, refusals)
        members[target] = set(_nodes(target, raw_members, refusals))
    for target, names in members.items():
        for node in names - set(outcomes[target]):
            outcomes[target][node] = Outcome(node, 0, "", None, False, "no outcome yet", 0.0)
    return desired, outcomes, sorted(set().union(*members.values()) if members else ())


def checked_replies(refusals: Refusals, replies: list[Any], keys: tuple[str, ...]) -> list[Any]:
    """``replies`` with each error reply (WRONGTYPE) noted and read as empty."""
    found = []
    for reply, where in zip(replies, keys, strict=True):
        if isinstance(reply, Exception):
            refusals.note(where, f"Redis answered {type(reply).__name__}: "
                          f"{_text(str(reply))[:100]}")
            reply = None
        found.append(reply)
    return found


def _nodes(target: str, raw: Any, refusals: Refusals) -> list[str]:
    """The members of ``nodes:<target>`` that are node names (``node``'s rule)."""
    names = []
    for member in raw or ():
        name = _text(member)
        if NODE_NAME.fullmatch(name):
            names.append(name)
        else:
            refusals.note(f"{nodes_key(target)}[{name[:64]!r}]",
                          f"not a node name (must match {NODE_NAME.pattern})")
    return names


def parse_desired(target: str, raw: dict[Any, Any] | None, key: bytes,
                  refusals: Refusals) -> Desired | None:
    """A ``desired:<target>`` hash: None when there is none, or when it fails
    :func:`check_desired` (noted in ``refusals``)."""
    if not raw:
        return None
    try:
        return check_desired(target, {_text(k): _text(v) for k, v in raw.items()}, key)
    except BadEntry as exc:
        refusals.note(desired_key(target), str(exc))
        return None


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


def parse_outcomes(target: str, raw: dict[Any, Any] | None, key: bytes,
                   refusals: Refusals, label: str = "deployhook-outcome/1"
                   ) -> dict[str, Outcome]:
    """An ``outcomes:<target>`` hash (``label`` :data:`READY`: a ``ready:<target>``
    one): node -> outcome; entries that fail :func:`check_outcome` are left out (noted
    in ``refusals``)."""
    found = {}
    where = ready_key(target) if label == READY else outcomes_key(target)
    for field_name, value in (raw or {}).items():
        node = _text(field_name)
        try:
            found[node] = check_outcome(target, node, _text(value), key, label)
        except BadEntry as exc:
            refusals.note(f"{where}[{node[:64]}]", str(exc))
    return found


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
    if len(text) > MAX_ENTRY:
        raise BadEntry(f"longer than {MAX_ENTRY} characters")
    try:
        value = json.loads(text)
    except ValueError:
        raise BadEntry("not JSON") from None
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


def parse_beats(nodes: list[str], replies: list[Any],
                refusals: Refusals) -> dict[str, dict[str, Any]]:
    """The live nodes among ``nodes`` from an ``MGET`` of their heartbeat keys: a
    heartbeat that is not JSON ``{targets: {name: HEAD or null}, time}`` with commit
    SHAs is noted in ``refusals`` and its node counted as absent."""
    beats = {}
    for node, value in zip(nodes, replies, strict=True):
        if value is None:
            continue
        try:
            beats[node] = _beat(_text(value))
        except BadEntry as exc:
            refusals.note(heartbeat_key(node), str(exc))
    return beats


def _beat(text: str) -> dict[str, Any]:
    """A heartbeat's JSON ``text``, checked.

    Raises:
        BadEntry: not what :func:`queue_beat` writes.
    """
    if len(text) > MAX_ENTRY:
        raise BadEntry(f"longer than {MAX_ENTRY} characters")
    try:
        beat = json.loads(text)
    except ValueError:
        raise BadEntry("not JSON") from None
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


def states(target: str, desired: Desired | None, outcomes: dict[str, Outcome],
           beats: dict[str, dict[str, Any]], ttl: int) -> list[NodeState]:
    """Every node's state for ``target`` against ``desired``'s generation: the live nodes
    that deploy it and the absent ones that reported on it (no heartbeat for ``ttl``
    seconds), by name."""
    names = {n for n, beat in beats.items() if target in (beat.get("targets") or {})}
    names |= set(outcomes)
    found = []
    for node in sorted(names):
        outcome = outcomes.get(node)
        beat = beats.get(node)
        head = (beat.get("targets") or {}).get(target) if beat else None
        head = head or (outcome.head if outcome else None)
        when = outcome.time if outcome is not None and outcome.time else None
        if beat is None or target not in (beat.get("targets") or {}):
            found.append(NodeState(node, "absent", head, f"no heartbeat for {ttl} s", when))
        elif desired is None or outcome is None or outcome.generation < desired.generation:
            state = "deploying" if desired is not None else "idle"
            found.append(NodeState(node, state, head, "", when))
        else:
            found.append(NodeState(node, "deployed" if outcome.ok else "failed",
                                   outcome.head, outcome.reason, when))
    return found


def summary(found: list[NodeState]) -> tuple[int, str]:
    """The HTTP status and reason for a delivery's fleet: 200 when every live node
    deployed it, 500 naming the failed nodes, 202 naming those still deploying; absent
    nodes are named and not counted."""
    live = [s for s in found if s.state != "absent"]
    done = [s for s in live if s.state == "deployed"]
    failed = [s for s in live if s.state == "failed"]
    waiting = [s for s in live if s.state not in ("deployed", "failed")]
    reason = f"deployed on {len(done)}/{len(live)} nodes"
    if failed:
        reason += "; failed on " + ", ".join(f"{s.node} ({s.reason})" for s in failed)
    if waiting:
        reason += ("; still deploying on " + ", ".join(s.node for s in waiting)
                   + ": see /deployments or 'deployhook fleet'")
    absent = [s for s in found if s.state == "absent"]
    if absent:
        reason += f"; absent ({absent[0].reason}, not counted): " + \
            ", ".join(s.node for s in absent)
    status = 500 if failed else 202 if waiting else 200
    return status, reason


def view(target: str, desired: Desired | None, found: list[NodeState]) -> dict[str, Any]:
    """One target's fleet as JSON (``/health``, ``/deployments``, ``deployhook fleet``)."""
    return {
        "desired": None if desired is None else {
            "sha": desired.sha, "ref": desired.ref, "delivery": desired.delivery,
            "by": desired.by, "kind": desired.kind, "time": desired.time,
            "generation": desired.generation},
        "nodes": {s.node: {"state": s.state, "head": s.head, "reason": s.reason,
                           "time": s.time} for s in found},
    }


def save_pending(path: Path, pending: dict[str, Desired]) -> None:
    """Keep the desired states not published yet in ``path`` (removed when none);
    blocking.  A failure is logged: they still wait in memory."""
    try:
        if not pending:
            path.unlink(missing_ok=True)
            return
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps({t: asdict(d) for t, d in pending.items()}))
        os.replace(tmp, path)
    except OSError as exc:
        log.error("cannot keep the fleet's pending desired state in %s: %s", path, exc)


def load_pending(path: Path) -> dict[str, Desired]:
    """What :func:`save_pending` kept (nothing when the file is missing or damaged)."""
    try:
        return {t: Desired(**d) for t, d in json.loads(path.read_text()).items()}
    except (OSError, ValueError, TypeError, AttributeError):
        return {}


def _text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)
