"""What the fleet's entries mean: each node's state for a target's desired generation,
the answer a delivery gets from them, and whether the fleet switches together.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from deployhook.fleet.entries import Desired, Outcome
from deployhook.fleet.keys import NOT_SWITCHED


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
