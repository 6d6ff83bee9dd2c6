"""The fleet's keys in Redis, its channels, and how long a node's heartbeat lasts.

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

The records they hold are in :mod:`~deployhook.fleet.entries`, how they are checked
when read in :mod:`~deployhook.fleet.checks`.
"""

from __future__ import annotations

import math

PREFIX = "deployhook:"
CHANNEL = PREFIX + "desired"
PROGRESS = PREFIX + "progress"
SWITCH = PREFIX + "switch"
NOT_SWITCHED = "not switched: "  # the reason of a node whose fleet did not switch


SUPERSEDED = "not switched: superseded: "  # a release the fleet no longer wants


HEARTBEAT_EVERY = 5.0  # seconds between heartbeats (reconcile_interval when shorter)
MISSED_BEATS = 3  # a node stays live for this many heartbeat periods after its last one
HEARTBEAT_TTL = round(MISSED_BEATS * HEARTBEAT_EVERY)  # 15 s, unless reconcile_interval < 5
PUBLISH_TRIES = 10  # WATCH rounds lost to concurrent writers before giving up
DELIVERY_TTL = 7 * 86400  # seconds a delivery ID is remembered fleet-wide


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
