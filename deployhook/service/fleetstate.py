"""The fleet's state in Redis: its keys, what they hold, and what it means.

No Redis client here (so no ``redis`` import): the daemon's agent
(:mod:`deployhook.service.fleet`, redis.asyncio) and ``deployhook fleet`` /
``deployhook deploy`` (the blocking client) queue the same commands on their
pipelines with the ``queue_*`` functions and read the replies with ``parse_*``.

Keys (``deployhook:`` first):

- ``desired:<target>`` (hash): the commit every node should have: ``sha``, ``ref``,
  ``delivery``, ``time``, ``by`` (node, and who), ``kind`` (push, deploy, rollback) and
  ``generation``, bumped by each new desired state (a new push, a redelivery after a
  failure, an explicit deploy): a node retries a commit that failed on it only for a
  new generation.
- ``outcomes:<target>`` (hash): node -> JSON ``{generation, sha, head, ok, reason, time}``.
- ``node:<node>`` (string, expires after :func:`heartbeat_ttl`): JSON ``{targets: {name:
  HEAD}, time}``; a node is live while it is there.  ``nodes:<target>`` (set): every
  node seen deploying the target.
- ``delivery:<target>:<id>`` (string, 7 days): the node that accepted the delivery
  first (``SET NX``): a redelivery to any node does not deploy the fleet again.
- channel ``desired``: the target's name, published with each new desired state.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from deployhook.errors import ConfigError
from deployhook.redact import redact

log = logging.getLogger("deployhook.fleet")
PREFIX = "deployhook:"
CHANNEL = PREFIX + "desired"
HEARTBEAT_EVERY = 5.0  # seconds between heartbeats (reconcile_interval when shorter)
MISSED_BEATS = 3  # a node stays live for this many heartbeat periods after its last one
HEARTBEAT_TTL = round(MISSED_BEATS * HEARTBEAT_EVERY)  # 15 s, unless reconcile_interval < 5
DELIVERY_TTL = 7 * 86400  # seconds a delivery ID is remembered fleet-wide
KINDS = ("push", "deploy", "rollback")
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

    def fields(self) -> dict[str, str]:
        """The hash fields written (``generation`` is bumped on its own)."""
        return {"sha": self.sha, "ref": self.ref, "delivery": self.delivery, "by": self.by,
                "kind": self.kind, "time": repr(self.time)}


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

    def dumps(self) -> str:
        return json.dumps(asdict(self))


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


def queue_publish(pipe: Any, desired: Desired) -> None:
    """Queue a new desired state on ``pipe`` (a transaction): its fields, the generation
    bumped (reply 1: the new generation), the notification."""
    pipe.hset(desired_key(desired.target), mapping=desired.fields())
    pipe.hincrby(desired_key(desired.target), "generation", 1)
    pipe.publish(CHANNEL, desired.target)


def published(desired: Desired, replies: list[Any]) -> Desired:
    """``desired`` with the generation :func:`queue_publish`'s replies gave it."""
    return Desired(**{**asdict(desired), "generation": int(replies[1])})


def queue_report(pipe: Any, target: str, outcome: Outcome) -> None:
    """Queue ``outcome`` as its node's outcome for ``target``."""
    pipe.hset(outcomes_key(target), outcome.node, outcome.dumps())


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


def parse_read(targets: list[str], replies: list[Any]
               ) -> tuple[dict[str, Desired | None], dict[str, dict[str, Outcome]], list[str]]:
    """The replies of :func:`queue_read`: desired state and outcomes per target (a node
    that deploys the target and never reported has an empty outcome), and every node."""
    desired = {t: parse_desired(t, replies[3 * i]) for i, t in enumerate(targets)}
    outcomes = {t: parse_outcomes(replies[3 * i + 1]) for i, t in enumerate(targets)}
    members = {t: {_text(n) for n in replies[3 * i + 2]} for i, t in enumerate(targets)}
    for target, names in members.items():
        for node in names - set(outcomes[target]):
            outcomes[target][node] = Outcome(node, 0, "", None, False, "no outcome yet", 0.0)
    return desired, outcomes, sorted(set().union(*members.values()) if members else ())


def parse_desired(target: str, raw: dict[Any, Any]) -> Desired | None:
    """A ``desired:<target>`` hash (None when there is none or it is damaged)."""
    values = {_text(k): _text(v) for k, v in (raw or {}).items()}
    try:
        return Desired(target=target, sha=values["sha"], ref=values["ref"],
                       delivery=values.get("delivery", "-"), by=values.get("by", "?"),
                       kind=values.get("kind", "push"), time=float(values.get("time", 0)),
                       generation=int(values["generation"]))
    except (KeyError, ValueError):
        return None


def parse_outcomes(raw: dict[Any, Any]) -> dict[str, Outcome]:
    """An ``outcomes:<target>`` hash: node -> outcome (damaged entries left out)."""
    found = {}
    for node, value in (raw or {}).items():
        try:
            found[_text(node)] = Outcome(**json.loads(_text(value)))
        except (TypeError, ValueError):
            continue
    return found


def parse_beats(nodes: list[str], replies: list[Any]) -> dict[str, dict[str, Any]]:
    """The live nodes among ``nodes`` from an ``MGET`` of their heartbeat keys."""
    beats = {}
    for node, value in zip(nodes, replies, strict=True):
        try:
            beat = json.loads(_text(value)) if value is not None else None
        except ValueError:
            beat = None
        if isinstance(beat, dict):
            beats[node] = beat
    return beats


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
