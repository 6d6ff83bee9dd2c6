"""Decide what a verified delivery asks for: answer a ping, deploy, or ignore.

Pure: a :class:`Delivery` and the deploy target's facts in, a decision out.
"""

from __future__ import annotations

from dataclasses import dataclass

from .delivery import Delivery, Push, parse_push
from .errors import WrongRepository


@dataclass(frozen=True)
class Ping:
    """A ``ping`` event: answer 200 with GitHub's zen."""

    zen: str


@dataclass(frozen=True)
class Ignore:
    """A delivery that is valid but asks for no deploy: answer 202 with ``reason``."""

    reason: str


@dataclass(frozen=True)
class Deploy:
    """A push to the deployed branch."""

    push: Push


Decision = Ping | Ignore | Deploy


def decide(delivery: Delivery, repository: str | None, branch: str | None) -> Decision:
    """Classify ``delivery`` for a target that deploys ``branch`` of ``repository``.

    ``repository`` None accepts any repository; ``branch`` None means "the
    repository's default branch" (a checkout that is not cloned yet).

    Raises:
        WrongRepository: the delivery names another repository (403).
        MalformedDelivery: a push whose payload is incomplete (400).
    """
    named = delivery.repository
    if repository and named is not None and named.lower() != repository.lower():
        raise WrongRepository(f"this hook deploys {repository}, not {named}")
    if delivery.event == "ping":
        zen = delivery.payload.get("zen")
        return Ping(zen if isinstance(zen, str) else "")
    if delivery.event != "push":
        return Ignore(f"event '{delivery.event}' is not deployed; only push is")
    push = parse_push(delivery)
    wanted = branch or push.default_branch or "the default branch"
    if push.branch is None:
        return Ignore(f"{push.ref} is not a branch; only {wanted} is deployed")
    if push.branch != wanted:
        return Ignore(f"push to {push.branch} ignored; only {wanted} is deployed")
    if push.deleted:
        return Ignore(f"branch {push.branch} was deleted; the checkout is kept as it is")
    return Deploy(push)
