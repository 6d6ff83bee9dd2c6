"""Whether a tag push is an old delivery replayed, which would move a target back.

Pure: a push and what the record says of it in, an answer body or None out.

A forge's delivery ID is not always signed (GitHub's ``X-GitHub-Delivery`` never is),
so whoever holds a captured signed delivery can send it again as a new one.  For a
branch that is harmless: the branch's tip is fetched and deployed, and it contains the
old commit (the answer says "already deployed").  In tags mode the pushed tag itself
is checked out, so a replayed push of ``v1`` after ``v2`` would move the checkout (and
in fleet mode, the fleet) back to ``v1``.
"""

from __future__ import annotations

from typing import Any

from deployhook.forges.delivery import Push
from deployhook.forges.events import TAG_PREFIX

STATUS = 409


def refusal(push: Push, deployed: dict[str, Any] | None) -> dict[str, Any] | None:
    """The answer body (status :data:`STATUS`) to a push of a tag that a target already
    deployed, while something else has been deployed since; None to go on with it.

    ``deployed`` is :meth:`~deployhook.record.store.Store.deployed_before` for ``push``
    (None: this exact ref and commit never ran, or the record could not say).  Go on
    when ``push`` is not a tag, when no successful run came after the one that handled
    it (retrying a failed deploy), or when the newest successful run is that run, or
    left HEAD where it did (deploying it again moves nothing).
    """
    if not push.ref.startswith(TAG_PREFIX) or deployed is None:
        return None
    live = deployed["live"]
    if live is None or live["run"] < deployed["run"]:
        return None
    if deployed["outcome"] == "ok" and deployed["branch"] == push.ref and \
            live["head"] == deployed["head"]:
        return None
    tag = push.ref[len(TAG_PREFIX):]
    done = "deployed" if deployed["outcome"] == "ok" else "tried (and failed)"
    since = _described(live)
    return {"result": "not deployed", "after": push.after, "head": live["head"],
            "replayed": True,
            "reason": f"tag {tag} at {push.after[:12]} was {done} before (run "
                      f"{deployed['run']}) and {since} since: a replayed delivery does not "
                      "move the checkout back; push a new tag to deploy it"}


def _described(run: dict[str, Any]) -> str:
    """What ``run`` deployed, for a reason: its tag (and run) or its commit."""
    head = (run["head"] or "?")[:12]
    branch = run["branch"] or ""
    if branch.startswith(TAG_PREFIX):
        return f"{branch[len(TAG_PREFIX):]} (run {run['run']}, {head})"
    return f"{head} (run {run['run']})"
