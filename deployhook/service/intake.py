"""The one intake: everything a stranger sends to a webhook route goes through here.

No Tornado.  :meth:`Intake.begin` takes what is known before any byte of the body:
the route (a target's name for ``/hooks/<name>``, None for ``webhook_path``), the
headers, the client and the announced length.  From those alone it chooses the
target(s), applies the allow-list and the size limit, detects the forge, checks the
authentication headers and sets up one running HMAC per distinct candidate secret:
a :class:`Pending` delivery.  The web handler feeds each chunk of the body to
:meth:`Pending.update` as it arrives (and keeps the bytes, which it never looks at),
then awaits :meth:`Intake.finish`: verify, and only then parse, route by the
repository the payload names, decide per target, deploy or answer (the
:class:`~deployhook.service.deliveries.Deliveries` policy: replays, record, log) and
combine the targets' answers.

A request refused before it is verified is never parsed, logged on its own, stored
or echoed: it is counted in aggregate (:class:`~deployhook.service.rejections.
Rejections`), its sender waits ``refused_delay`` when refused often, and its answer
holds only our own words.  At ``webhook_path`` the body is hashed once per distinct
secret of the targets that may take it, and at most :data:`MAX_SHARED_SECRETS` of
them: with more, that path refuses every delivery (each target still has its own
``/hooks/<name>``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from deployhook import forges
from deployhook.errors import DeliveryError, SignatureError, WrongRepository
from deployhook.forges import mac
from deployhook.forges.delivery import check_size
from deployhook.network import allowed, client_address
from deployhook.service.current import Current
from deployhook.service.deliveries import Answer, Deliveries, Facts, combine
from deployhook.service.events import InFlight
from deployhook.service.rules import decide_event
from deployhook.service.target import Target
from deployhook.settings import Config

# Distinct secrets a body at webhook_path is hashed with: each costs a pass of HMAC over
# every byte a stranger sends, so the work per unverified byte stays bounded.
MAX_SHARED_SECRETS = 32
Candidates = list[tuple[bytes, list[tuple[Target, int]]]]


@dataclass
class Pending:
    """A delivery whose headers have arrived: who sent it, where, the forge, the
    candidate secrets and the body's running HMACs.  Nothing here has been verified
    until :attr:`signature` is ``valid``."""

    route: str | None  # the target named by the URL; None at webhook_path
    headers: Mapping[str, str]
    client: str
    limit: int  # bytes the body may have
    forge: str = "github"
    target: Target | None = None
    candidates: Candidates = field(default_factory=list, repr=False)
    hashed: mac.Hashed = field(default_factory=lambda: mac.Hashed(()), repr=False)
    signature: str = "unchecked"  # valid, invalid, unchecked
    positions: tuple[tuple[str, int], ...] = ()  # which secret verified, per target
    open: bool = True  # counted in the answers in flight

    def update(self, chunk: bytes | memoryview) -> None:
        """Feed the next chunk of the body to every running HMAC (hashlib drops the GIL:
        callable from a thread)."""
        self.hashed.update(chunk)

    def facts(self, delivery_id: str | None = None) -> Facts:
        """What the record, the log and the metrics may know of this request: the
        delivery id and event as the forge's headers name them only once verified."""
        labelled_id, event = forges.labels(self.forge, self.headers) \
            if self.signature == "valid" else ("-", "-")
        return Facts(delivery_id=delivery_id or labelled_id, event=event, client=self.client,
                     forge=self.forge, signature=self.signature, secrets=self.positions)


class Intake:
    """Turns requests at the webhook routes into answers (see the module)."""

    def __init__(self, current: Current, targets: Mapping[str, Target], flight: InFlight,
                 deliveries: Deliveries) -> None:
        """``current``: the settings in force; ``targets``: every target by name (read,
        never changed); ``flight``: where each answer counts until it is sent."""
        self.current, self.targets, self.flight = current, targets, flight
        self.deliveries = deliveries

    @property
    def config(self) -> Config:
        """The daemon's settings now (a SIGHUP may replace them)."""
        return self.current.config

    def has_target(self, name: str) -> bool:
        """True when ``name`` is one of the daemon's targets."""
        return name in self.targets

    def begin(self, route: str | None, headers: Mapping[str, str], remote_ip: str | None,
              length: int | None) -> tuple[Pending, Answer | None]:
        """A :class:`Pending` delivery for a request whose headers have arrived, and the
        answer to send now when it cannot be taken (None: read the body).

        ``route`` is the URL's target name (None at ``webhook_path``); ``length`` the
        announced Content-Length (None when chunked).  The checks, in order: the
        target exists (404), the client is allowed (403), the size (413), the forge's
        authentication headers (401), a readable secret (500), at ``webhook_path`` at
        most :data:`MAX_SHARED_SECRETS` distinct secrets (404).  Never raises.
        """
        current = self.current
        client = client_address(remote_ip, headers.get("X-Forwarded-For"), current.trusted)
        pending = Pending(route, headers, str(client) if client is not None else "unknown",
                          current.config.max_body_size)
        self.flight.opened()  # a reload waits until this answer has been sent
        try:
            self._choose(pending, client, length)
        except DeliveryError as exc:
            return pending, self.refuse(pending, exc)
        return pending, None

    def _choose(self, pending: Pending, client: Any, length: int | None) -> None:
        """Fill in ``pending``'s target, forge, candidate secrets and hashers.

        Raises:
            DeliveryError: as :meth:`begin` lists.
        """
        if pending.route is not None:
            pending.target = self.targets.get(pending.route)
            if pending.target is None:
                raise DeliveryError("no such target: the URL is /hooks/<target name>", 404)
        if not allowed(client, self.current.allowed):
            raise DeliveryError(f"address {pending.client} is not in allowed_networks", 403)
        if length is not None:
            check_size(length, pending.limit)
        pinned = pending.target.config.forge if pending.target is not None else None
        pending.forge = pinned or forges.detect(pending.headers)
        forges.check_headers(pending.forge, pending.headers)
        targets = [pending.target] if pending.target is not None else [
            t for t in self.targets.values() if t.config.forge in (None, pending.forge)]
        pending.candidates = candidate_secrets(targets)
        if pending.route is None and len(pending.candidates) > MAX_SHARED_SECRETS:
            raise DeliveryError(
                f"{self.config.webhook_path} takes deliveries for at most "
                f"{MAX_SHARED_SECRETS} distinct secrets and this server has "
                f"{len(pending.candidates)}: point each webhook at /hooks/<target name>", 404)
        secrets = [secret for secret, _ in pending.candidates]
        pending.hashed = mac.Hashed(forges.hash_keys(pending.forge, secrets, pending.headers))

    async def finish(self, pending: Pending, size: int,
                     parse: Callable[[], Awaitable[dict[str, Any]]],
                     verified: Callable[[], None] | None = None) -> Answer:
        """The answer to ``pending`` once its ``size`` bytes have all been fed.

        Verifies the signature first; only a verified body is parsed (``parse`` is
        called then, and only then), routed by the repository it names, decided per
        target and deployed or answered; ``verified`` is called as soon as the sender
        is known.  Never raises a :class:`DeliveryError`: refusals are answers.
        """
        try:
            check_size(size, pending.limit)
            secrets = [secret for secret, _ in pending.candidates]
            index = forges.verify(pending.forge, secrets, pending.headers, pending.hashed)
        except DeliveryError as exc:
            return self.refuse(pending, exc)
        matched = pending.candidates[index][1]
        pending.signature = "valid"
        pending.positions = tuple((target.name, position) for target, position in matched)
        if verified is not None:
            verified()
        with self.flight.decision():  # a stop or a reload waits for it, as for a deploy
            try:
                event = forges.parse(pending.forge, pending.headers, await parse())
            except DeliveryError as exc:
                return self.refuse(pending, exc)
            facts = pending.facts(event.delivery_id)
            try:
                return await self._answer(pending, event, [t for t, _ in matched], facts)
            except DeliveryError as exc:  # another repository (403)
                return self.refuse(pending, exc, facts)

    async def _answer(self, pending: Pending, event: forges.Event, targets: list[Target],
                      facts: Facts) -> Answer:
        """Each target's answer, combined when several targets took the delivery.

        Raises:
            WrongRepository: the one target (``/hooks/<name>``, or the only target)
                deploys another repository, or at ``webhook_path`` the repository is
                deployed by a target whose secret did not sign the delivery (403).
        """
        deliveries = self.deliveries
        if pending.target is not None or len(self.targets) == 1:
            target = targets[0]
            return await deliveries.handle(target, _decide(target, event), facts)
        chosen = [t for t in targets if deploys(t, event.repository)]
        if not chosen and any(deploys(t, event.repository) for t in self.targets.values()):
            raise WrongRepository(
                f"{event.repository} is deployed by a target with another secret; this "
                f"delivery is signed for {', '.join(t.name for t in targets)}: check the "
                "webhook's secret")
        if not chosen:
            return deliveries.handle_ignored(
                f"no target deploys {event.repository or 'this repository'}", facts)
        answers = await asyncio.gather(*(
            deliveries.handle(t, _decide(t, event), facts) for t in chosen))
        return combine({t.name: a for t, a in zip(chosen, answers, strict=True)})

    def refuse(self, pending: Pending, exc: DeliveryError, facts: Facts | None = None) -> Answer:
        """The answer to ``pending`` refused for ``exc``: recorded when its sender was
        verified, else counted in aggregate (and maybe delayed: ``Answer.delay``)."""
        if pending.signature != "valid":
            pending.signature = _signature_result(exc)
        name = pending.target.name if pending.target is not None else ""
        return self.deliveries.refuse(exc, facts or pending.facts(), name)

    def done(self, pending: Pending) -> None:
        """The answer to ``pending`` was sent, or its connection closed (idempotent)."""
        if pending.open:
            pending.open = False
            self.flight.closed()


def candidate_secrets(targets: list[Target]) -> Candidates:
    """The distinct secrets of ``targets`` (every line of each secret file), each with
    the targets it belongs to and its position (1-based) among that target's secrets.

    Raises:
        DeliveryError: no target's secret can be read (500, naming the files).
    """
    found: dict[bytes, list[tuple[Target, int]]] = {}
    missing: list[DeliveryError] = []
    for target in targets:
        try:
            values = target.secret.all()
        except DeliveryError as exc:
            missing.append(exc)
            continue
        for position, value in enumerate(values, 1):
            found.setdefault(value, []).append((target, position))
    if not found and missing:
        raise missing[0]
    return list(found.items())


def deploys(target: Target, repository: str | None) -> bool:
    """True when ``target`` takes deliveries naming ``repository`` (a target without
    ``repository`` takes any; a delivery naming none goes to every target)."""
    return not target.repository or not repository or \
        target.repository.lower() == repository.lower()


def _decide(target: Target, event: forges.Event) -> Any:
    return decide_event(event, target.repository, target.branch, target.config.tags)


def _signature_result(exc: DeliveryError) -> str:
    """How far a request refused for ``exc`` got: a signature found wrong or missing is
    ``invalid``; refused before the signature could be checked, ``unchecked``."""
    if isinstance(exc, SignatureError):
        return "invalid"
    return "unchecked"
