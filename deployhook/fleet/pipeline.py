"""What the fleet's nodes and commands queue on a Redis pipeline, and how they read the
replies.

No Redis client here (so no ``redis`` import): the daemon's agent
(:mod:`deployhook.fleet.agent`, redis.asyncio) and ``deployhook fleet`` /
``deployhook deploy`` (the blocking client) queue the same commands on their
pipelines with the ``queue_*`` functions and read the replies with ``parse_*``, which
keep what passes :mod:`~deployhook.fleet.checks` and note the rest.
"""

from __future__ import annotations

import json
import time
from dataclasses import replace
from typing import Any

from deployhook.fleet.checks import (
    BadEntry,
    Refusals,
    _beat,
    _bounded,
    _generation,
    _when,
    check_desired,
    check_outcome,
    text,
)
from deployhook.fleet.entries import READY, Desired, Outcome, Switch, _signed
from deployhook.fleet.keys import (
    CHANNEL,
    PROGRESS,
    SWITCH,
    desired_key,
    heartbeat_key,
    nodes_key,
    outcomes_key,
    ready_key,
    switch_key,
)
from deployhook.forges.events import valid_sha
from deployhook.settings import NODE_NAME


def next_desired(desired: Desired, current: Any) -> Desired:
    """``desired`` as the next generation after ``current`` (the ``generation`` field in
    Redis, read under ``WATCH``; one that is not a valid generation counts as 0): the
    generation is signed, so the publisher chooses it before writing."""
    try:
        before = _generation(text(current)) if current is not None else 0
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
    values = {text(k): text(v) for k, v in raw.items()}
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
                          f"{text(str(reply))[:100]}")
            reply = None
        found.append(reply)
    return found


def _nodes(target: str, raw: Any, refusals: Refusals) -> list[str]:
    """The members of ``nodes:<target>`` that are node names (``node``'s rule)."""
    names = []
    for member in raw or ():
        name = text(member)
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
        return check_desired(target, {text(k): text(v) for k, v in raw.items()}, key)
    except BadEntry as exc:
        refusals.note(desired_key(target), str(exc))
        return None


def parse_outcomes(target: str, raw: dict[Any, Any] | None, key: bytes,
                   refusals: Refusals, label: str = "deployhook-outcome/1"
                   ) -> dict[str, Outcome]:
    """An ``outcomes:<target>`` hash (``label`` :data:`READY`: a ``ready:<target>``
    one): node -> outcome; entries that fail :func:`check_outcome` are left out (noted
    in ``refusals``)."""
    found = {}
    where = ready_key(target) if label == READY else outcomes_key(target)
    for field_name, value in (raw or {}).items():
        node = text(field_name)
        try:
            found[node] = check_outcome(target, node, text(value), key, label)
        except BadEntry as exc:
            refusals.note(f"{where}[{node[:64]}]", str(exc))
    return found


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
            beats[node] = _beat(text(value))
        except BadEntry as exc:
            refusals.note(heartbeat_key(node), str(exc))
    return beats
