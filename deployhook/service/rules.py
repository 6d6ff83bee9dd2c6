"""Decide what a verified delivery asks for: answer a ping, deploy, or ignore.

Pure: a forge's parsed :class:`~deployhook.forges.events.Event` and the deploy
target's facts in, a decision out.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass

from deployhook import forges
from deployhook.errors import WrongRepository
from deployhook.forges.delivery import ZERO_SHA, Push
from deployhook.forges.events import TAG_PREFIX, Event, Pushes
from deployhook.forges.events import Push as RefChange


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


def decide_event(event: Event, repository: str | None, branch: str | None,
                 tags: str | None = None) -> Decision:
    """Classify a verified forge event for one target (any forge).

    The target deploys ``branch`` of ``repository`` (None: any repository; a branch of
    None means the repository's default branch), or, with ``tags`` (a glob such as
    ``v*``), the newest pushed tag matching it, ignoring branch pushes.  Of a push that
    changed several refs (Bitbucket), the change to the deployed branch (or the last
    matching tag) is taken.

    Raises:
        WrongRepository: the delivery names another repository (403).
    """
    named = event.repository
    if repository and named is not None and named.lower() != repository.lower():
        raise WrongRepository(f"this hook deploys {repository}, not {named}")
    if isinstance(event, forges.Ping):
        return Ping(event.message)
    if isinstance(event, forges.Other):
        return Ignore(event.reason)
    if tags is not None:
        return _decide_tags(event, tags)
    first = event.changes[0]
    wanted = branch or first.default_branch or "the default branch"
    push = event.for_branch(wanted)
    if push is None:
        refs = ", ".join(event.refs)
        what = f"{refs} is not a branch" if first.branch is None and len(event.changes) == 1 \
            else f"push to {refs.removeprefix('refs/heads/')} ignored"
        return Ignore(f"{what}; only {wanted} is deployed")
    if push.deleted:
        return Ignore(f"branch {push.branch} was deleted; the checkout is kept as it is")
    return Deploy(push)


def deploys(ref: str, sha: str, branch: str | None, tags: str | None) -> str:
    """Why a target deploying ``branch`` (or, with ``tags``, the tags matching it) would
    not deploy commit ``sha`` on ``ref``, "" when it would: :func:`decide_event`'s
    decision of a push of that ref (the fleet asks it of each desired state)."""
    change = RefChange(ref=ref, before=ZERO_SHA, after=sha, deleted=False, repository="",
                       default_branch=None, pusher="fleet", forge="fleet")
    decision = decide_event(Pushes("fleet", "-", "", (change,)), None, branch, tags)
    return "" if isinstance(decision, Deploy) else getattr(decision, "reason", "not a push")


def _decide_tags(event: Pushes, pattern: str) -> Decision:
    tagged = [p for p in event.changes if p.ref.startswith(TAG_PREFIX)
              and fnmatch.fnmatchcase(p.ref[len(TAG_PREFIX):], pattern)]
    live = [p for p in tagged if not p.deleted]
    if live:
        return Deploy(live[-1])
    if tagged:
        return Ignore(f"tag {tagged[-1].ref[len(TAG_PREFIX):]} was deleted; "
                      "the checkout is kept as it is")
    refs = ", ".join(event.refs)
    return Ignore(f"{refs} is not a tag matching {pattern!r}; only such tags are deployed")
