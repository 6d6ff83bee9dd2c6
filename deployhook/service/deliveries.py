"""What a verified delivery gets: the replay policy, the record, the answer.

No Tornado: the web handler streams and verifies the body, asks :mod:`rules` for a
decision per target, then calls :meth:`Deliveries.handle` and writes the
:class:`Answer` it gets.  :meth:`Deliveries.refuse` answers a delivery refused before
any target decided: one whose sender was verified (a malformed body, another
repository) is recorded and logged on its own; one nobody verified (a wrong or
missing signature, an unknown target, a body too large) only counts in aggregate
(:class:`~deployhook.service.rejections.Rejections`), so that a flood of them costs
little and cannot bury the record and the log.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from deployhook.errors import DeliveryError
from deployhook.fleet.decide import summary, view
from deployhook.fleet.entries import Told
from deployhook.forges.delivery import Push
from deployhook.forges.events import TAG_PREFIX
from deployhook.git import paused
from deployhook.git.checkout import RunResult
from deployhook.record.recorder import Recorder
from deployhook.record.store import DeliveryRecord
from deployhook.service import replay
from deployhook.service.current import Current
from deployhook.service.rejections import FREE_REFUSALS, Rejections
from deployhook.service.rules import Decision, Deploy, Ignore, Ping
from deployhook.service.target import Target

if TYPE_CHECKING:
    from deployhook.fleet.agent import Fleet

log = logging.getLogger("deployhook.http")
FLEET_REREAD = 1.0  # seconds an answer waits on the fleet without a notification, at most
RESULTS = {200: "deployed", 202: "deploying", 500: "failed"}


@dataclass(frozen=True)
class Facts:
    """What is known of a request before any target decided on it."""

    delivery_id: str
    event: str
    client: str
    forge: str = "github"
    signature: str = "unchecked"  # valid, invalid, unchecked
    # (target name, position 1-based of the secret that verified the delivery) per target
    secrets: tuple[tuple[str, int], ...] = ()

    def secret_index(self, target: str) -> int | None:
        """The position of the secret of ``target`` that verified the delivery (None:
        not verified, or not by a secret of ``target``; with no target named, the only
        position there is)."""
        positions = dict(self.secrets)
        if not target and len(positions) == 1:
            return next(iter(positions.values()))
        return positions.get(target)


@dataclass
class Answer:
    """The HTTP answer to one delivery for one target (or for no target)."""

    status: int
    body: dict[str, Any]
    push: Push | None = field(default=None, repr=False)
    delay: float = 0.0  # seconds to wait before sending it (a sender refused often)


class Deliveries:
    """The delivery policy: what each target answers, written to ``record``, told to the
    ``fleet`` (in fleet mode); ``current`` gives ``refused_delay`` and
    ``response_timeout`` as a reload leaves them."""

    def __init__(self, record: Recorder, current: Current, fleet: Fleet | None = None) -> None:
        self.record, self.current, self.fleet = record, current, fleet
        self.rejections = Rejections(record)
        # Called with (target name or "-", facts, answer) for each answer, as it is logged.
        self.answered: list[Callable[[str, Facts, Answer], None]] = []
        self.holding = 0  # answers waiting for a deploy's outcome (each holds a connection)

    def _hold_limit(self) -> int:
        """How many answers may wait for their deploy's outcome at once: half of
        ``max_connections``.  Past it, a delivery whose deploy has not started (every
        worker busy, or its target's run under way) is answered 202 ``queued`` at once
        rather than after ``response_timeout``: a push to many targets at once does not
        take every connection and leave none for the deliveries still arriving."""
        return max(1, self.current.config.max_connections // 2)

    async def handle(self, target: Target, decision: Decision, facts: Facts) -> Answer:
        """Answer ``decision`` for ``target``: pong, ignored, or the deploy's outcome
        (waiting at most ``response_timeout``); recorded and logged."""
        if isinstance(decision, Ping):
            answer = Answer(200, {"result": "pong", "zen": decision.zen,
                                  "reason": "ping received"})
        elif isinstance(decision, Ignore):
            answer = Answer(202, {"result": "ignored", "reason": decision.reason})
        else:
            assert isinstance(decision, Deploy)
            return await self._deploy(target, decision.push, facts)
        self._log(target.name, facts, answer)
        self.record.log(self._delivery(target.name, facts, None), answer.status,
                            answer.body["result"], answer.body["reason"])
        return answer

    def handle_ignored(self, reason: str, facts: Facts) -> Answer:
        """Answer (202, recorded, logged) a verified delivery that no target takes."""
        answer = Answer(202, {"result": "ignored", "reason": reason})
        self._log("-", facts, answer)
        self.record.log(self._delivery("", facts, None), 202, "ignored", reason)
        return answer

    def refuse(self, exc: DeliveryError, facts: Facts, target: str = "") -> Answer:
        """Answer a delivery refused before any target decided: recorded and logged when
        its signature was verified, else counted (see :class:`Rejections`)."""
        answer = Answer(exc.status, {"result": "rejected", "reason": exc.reason})
        if facts.signature != "valid":
            refusals = self.rejections.count(facts.client, target, exc.status, exc.reason)
            if refusals == 1:
                self._log(target or "-", facts, answer)
            else:
                self._tell(target or "-", facts, answer)
            if refusals > FREE_REFUSALS and facts.signature == "invalid":
                answer.delay = self.current.config.refused_delay
            return answer
        self._log(target or "-", facts, answer)
        self.record.log(self._delivery(target, facts, None), answer.status, "rejected",
                            exc.reason)
        return answer

    async def _deploy(self, target: Target, push: Push, facts: Facts) -> Answer:
        """Deploy ``push`` on ``target`` (or answer a replayed delivery from the record);
        in fleet mode, tell the fleet and answer for every node (see :meth:`_fleet`)."""
        record, timeout, fleet = self.record, self.current.config.response_timeout, self.fleet
        deadline = asyncio.get_running_loop().time() + timeout
        earlier = None
        if push.delivery_id != "-":
            earlier = await record.earlier_deploy(push.delivery_id, push.after, target.name)
        done = earlier is not None and earlier["run_outcome"] == "ok"
        back = None
        if push.ref.startswith(TAG_PREFIX):  # checked out as pushed: see service.replay
            back = replay.refusal(push, await record.deployed_before(push.ref, push.after,
                                                                     target.name))
        if back is not None:  # an old tag replayed: never moves the target (or fleet) back
            answer = replayed(push, earlier) if done and earlier is not None else \
                Answer(replay.STATUS, back, push)
            self._answered(target.name, facts, answer, None)
            return answer
        told = await fleet.accepted(target, push) if fleet is not None else None
        if done or (told is not None and not told.new):
            answer = replayed(push, earlier) if earlier is not None and done else \
                fleet_replayed(push, told)
            if told is not None:
                if told.new and fleet is not None:  # deployed here before the fleet
                    fleet.uncover(target.name)  # knew: the agent reports
                answer = await self._fleet(target, push, told, answer, deadline)
            self._answered(target.name, facts, answer, None)
            return answer
        accepted = self._delivery(target.name, facts, push, accepted=True)
        pause = paused.read(target.config.repo_path)  # a stat (and a few bytes) per push
        if pause is not None:
            target.pause_found(pause)  # its resume is then seen within a second
            return await self._paused(target, push, facts, accepted, pause)
        row = await record.add_delivery(accepted)
        future = target.worker.submit(push, row)
        if self.holding >= self._hold_limit() and target.worker.queued(future):
            timeout = 0  # connections are scarce and this deploy cannot start yet
        self.holding += 1
        try:
            result = await asyncio.wait_for(asyncio.shield(future), timeout)
        except TimeoutError:
            future.add_done_callback(lambda f: _log_late(target.name, push, f))
            answer = late(push, target.worker.queued(future))
        else:
            answer = outcome(push, result)
        finally:
            self.holding -= 1
        if told is not None:
            answer = await self._fleet(target, push, told, answer, deadline)
        self._answered(target.name, facts, answer, row)
        return answer

    async def _fleet(self, target: Target, push: Push, told: Told, local: Answer,
                     deadline: float) -> Answer:
        """The answer for the fleet: ``local`` (this node's) when the fleet could not be
        told, else every node's state for the generation ``told`` names, waiting until
        ``deadline`` (the loop's clock) while live nodes are still deploying: read again
        on each notification of the fleet's progress (and at least every
        :data:`FLEET_REREAD` seconds: a heartbeat expiring notifies nobody)."""
        fleet, loop = self.fleet, asyncio.get_running_loop()
        assert fleet is not None
        if told.desired is None:
            return fleet_untold(local, told.error)
        while True:
            since = fleet.version(target.name)
            try:
                found = await fleet.states(target.name, told.desired)
            except Exception as exc:  # Redis went away after it was told
                return fleet_untold(local, f"the fleet's state cannot be read: "
                                    f"{type(exc).__name__}", told=True)
            status, reason = summary(found)
            settled = all(s.state in ("deployed", "failed", "absent") for s in found)
            if settled or loop.time() >= deadline:
                break
            await fleet.changed(target.name, since,
                                min(FLEET_REREAD, deadline - loop.time()))
        return fleet_answer(local, status, reason, view(target.name, told.desired, found))

    async def _paused(self, target: Target, push: Push, facts: Facts,
                      accepted: DeliveryRecord, pause: paused.Pause) -> Answer:
        """Record ``push`` as accepted with result "paused" and answer 202: resuming
        deploys the newest push accepted meanwhile (see :meth:`Target.recover`)."""
        answer = Answer(202, {
            "result": "paused", "after": push.after,
            "reason": f"deploys of {target.name} are paused {pause.describe()}; the newest "
                      "push accepted meanwhile is deployed on 'deployhook resume'"}, push)
        row = await self.record.add_answered(accepted, 202, "paused", str(answer.body["reason"]))
        self._log(target.name, facts, answer)
        if row is not None and target.paused is None and paused.read(
                target.config.repo_path) is None:
            # resumed while this was being recorded, and the refresh has already seen it
            target.worker.submit(push, row, trigger="resume")
        return answer

    def _answered(self, target: str, facts: Facts, answer: Answer, row: int | None) -> None:
        """Log an accepted delivery's answer and store it on its row (or as a new one)."""
        self._log(target, facts, answer)
        status, result = answer.status, str(answer.body["result"])
        reason, run_id = str(answer.body.get("reason", "")), answer.body.get("run")
        if row is None:
            self.record.log(self._delivery(target, facts, answer.push), status, result,
                                reason)
        else:
            self.record.answer_delivery(row, status, result, reason, run_id)

    @staticmethod
    def _delivery(target: str, facts: Facts, push: Push | None,
                  accepted: bool = False) -> DeliveryRecord:
        """A request as the record keeps it."""
        return DeliveryRecord(
            delivery_id=facts.delivery_id[:100], event=facts.event[:100],
            remote_addr=facts.client, signature=facts.signature,
            ref=push.ref if push else None, before=push.before if push else None,
            after=push.after if push else None, pusher=push.pusher if push else None,
            accepted=accepted, target=target, secret_index=facts.secret_index(target))

    def _log(self, target: str, facts: Facts, answer: Answer) -> None:
        """One line per delivery and target: who, what, and the answer; then tell
        :attr:`answered`."""
        push = answer.push
        ref = push.ref if push else "-"
        shas = f"{push.before[:12]}..{push.after[:12]}" if push else "-"
        log.log(logging.WARNING if answer.status >= 400 else logging.INFO,
                "delivery %s from %s to %s forge=%s event=%s ref=%s %s -> %d %s: %s",
                facts.delivery_id[:100], facts.client, target, facts.forge,
                facts.event[:100], ref, shas, answer.status, answer.body.get("result"),
                answer.body.get("reason", ""))
        self._tell(target, facts, answer)

    def _tell(self, target: str, facts: Facts, answer: Answer) -> None:
        for listener in self.answered:
            listener(target, facts, answer)


def outcome(push: Push, result: RunResult) -> Answer:
    """The answer to ``push`` once ``result``'s run has ended."""
    body: dict[str, Any] = {
        "before": push.before, "after": push.after, "head": result.head_after,
        "duration": round(result.duration, 3), "run": result.run_id,
    }
    if not result.ok:
        return Answer(500, {"result": "failed", "reason": result.reason, **body}, push)
    if not result.contains.get(push.after):
        reason = (f"{push.after} is not in {push.ref} after fetching: "
                  "it was force-pushed away or not pushed to this remote")
        return Answer(409, {"result": "not deployed", "reason": reason, **body}, push)
    moved = "deployed" if result.deployed else "already deployed"
    return Answer(200, {"result": "deployed", "reason": f"{moved} {push.after[:12]}", **body},
                  push)


def late(push: Push, waits: str) -> Answer:
    """The 202 answer to ``push`` when its outcome is not known at ``response_timeout``:
    ``queued`` when its run has not started (``waits`` says why), else ``deploying``."""
    see = "its outcome will be at /deployments and /health"
    if waits:
        return Answer(202, {"result": "queued", "after": push.after, "see": "/deployments",
                            "reason": f"the deploy has not started: {waits}; {see}"}, push)
    return Answer(202, {"result": "deploying", "after": push.after, "see": "/deployments",
                        "reason": f"the deploy is still running; {see}"}, push)


def replayed(push: Push, earlier: dict[str, Any]) -> Answer:
    """The answer to a delivery ID whose earlier deploy succeeded: its outcome, no new deploy."""
    status = earlier["status"] if earlier["status"] not in (None, 202) else 200
    reason = (f"delivery {push.delivery_id} was already handled by run {earlier['run']}"
              f" ({earlier['reason'] or 'deployed'}); not deployed again")
    return Answer(status, {
        "result": earlier["result"] if status != 200 else "deployed", "reason": reason,
        "run": earlier["run"], "head": earlier["run_head"], "after": push.after,
        "replayed": True}, push)


def fleet_replayed(push: Push, told: Told | None) -> Answer:
    """The answer to a delivery another node accepted first: the fleet deploys it."""
    by = told.desired.by if told is not None and told.desired is not None else "another node"
    return Answer(200, {"result": "deployed", "after": push.after, "replayed": True,
                        "reason": f"delivery {push.delivery_id} was already accepted by the "
                                  f"fleet ({by}); not deployed again"}, push)


def fleet_answer(local: Answer, status: int, reason: str, fleet: dict[str, Any]) -> Answer:
    """``local`` (this node's answer) made the fleet's: ``status`` and ``reason`` from
    :func:`~deployhook.fleet.decide.summary`, every node under ``fleet``."""
    body = {**local.body, "result": RESULTS[status], "reason": reason, "fleet": fleet,
            "here": {"status": local.status, "result": local.body.get("result"),
                     "reason": local.body.get("reason", "")}}
    if status == 202:
        body["see"] = "/deployments"
    return Answer(status, body, local.push)


def fleet_untold(local: Answer, error: str, told: bool = False) -> Answer:
    """``local`` when the fleet could not be told (or read): 202 when this node deployed
    it, with the reason; the fleet is told (by this node's agent) once Redis is back."""
    if told:
        note = f"{error}; see 'deployhook fleet'"
    else:
        note = (f"the fleet could not be told: {error}; the other nodes get it once Redis "
                "is back")
    status = 202 if local.status == 200 else local.status
    return Answer(status, {**local.body, "reason": f"{local.body.get('reason', '')} on this "
                           f"node only; {note}", "fleet": {"told": told, "reason": error}},
                  local.push)


def combine(answers: dict[str, Answer]) -> Answer:
    """One answer for a delivery that went to several targets: the worst status, every
    target's answer under ``targets``."""
    worst = max(answers.values(), key=lambda a: _severity(a.status))
    reason = "; ".join(f"{name}: {a.body.get('reason', '')}" for name, a in answers.items())
    return Answer(worst.status, {
        "result": worst.body.get("result"), "reason": reason,
        "targets": {name: {"status": a.status, **a.body} for name, a in answers.items()}})


def _severity(status: int) -> int:
    """How bad an answer is: a failure, a refusal, accepted for later, done."""
    if status >= 500:
        return 4
    if status >= 400:
        return 3
    return 1 if status == 202 else 0


def _log_late(target: str, push: Push, future: asyncio.Future[RunResult]) -> None:
    if future.cancelled() or future.exception() is not None:
        return
    answer = outcome(push, future.result())
    log.info("delivery %s to %s (answered 202 earlier) -> %d %s: %s", push.delivery_id,
             target, answer.status, answer.body["result"], answer.body["reason"])
