"""rules.decide_event: what a verified event of any forge asks of one target.

Payloads are the real fixtures in tests/fixtures/<forge>/ (go-playground/webhooks
testdata, MIT, and octokit/webhooks, MIT; see test_forges.py), parsed by
deployhook.forges.parse; header facts from ../shared/fixtures/FORGES.md.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from deployhook import forges
from deployhook.errors import WrongRepository
from deployhook.service.rules import Deploy, Ignore, Ping, decide_event

FIXTURES = Path(__file__).parent / "fixtures"


def event(forge: str, name: str, event_name: str, **changes: object) -> forges.Event:
    payload = json.loads((FIXTURES / name).read_text())
    payload.update(changes)
    headers = forges.sign_headers(forge, b"s", b"{}", event_name)
    return forges.parse(forge, headers, payload)


GITLAB_PUSH = ("gitlab", "gitlab/push-event.json", "push")  # refs/heads/master
GITLAB_TAG = ("gitlab", "gitlab/tag-event.json", "tag")    # refs/tags/v1.0.0


@pytest.mark.parametrize(("case", "branch", "tags", "kind", "words"), [
    (GITLAB_PUSH, "master", None, Deploy, []),
    (GITLAB_PUSH, "main", None, Ignore, ["master ignored", "only main"]),
    (GITLAB_PUSH, None, "v*", Ignore, ["not a tag matching 'v*'"]),
    (GITLAB_TAG, "master", None, Ignore, ["refs/tags/v1.0.0 is not a branch"]),
    (GITLAB_TAG, None, "v*", Deploy, []),
    (GITLAB_TAG, None, "release-*", Ignore, ["not a tag matching"]),
    (("github", "github/ping_payload.json", "ping"), "main", None, Ping, []),
    (("bitbucket-server", "bitbucket-server/repo-refs-changed.json", "push"), "feature/wip", None,
     Ignore, ["deleted"]),
])
def test_decide_event(case: tuple[str, str, str], branch: str | None, tags: str | None,
                      kind: type, words: list[str]) -> None:
    decision = decide_event(event(*case), None, branch, tags)
    assert isinstance(decision, kind)
    for word in words:
        assert word in decision.reason  # type: ignore[union-attr]


def test_gitlab_push_names_its_project_and_another_is_refused() -> None:
    push = event(*GITLAB_PUSH)
    assert isinstance(decide_event(push, push.repository.upper(), "master"), Deploy)
    with pytest.raises(WrongRepository):
        decide_event(push, "someone/else", "master")
