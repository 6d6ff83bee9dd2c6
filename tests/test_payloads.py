"""Round trips of deployhook.forges.payloads through each forge's signer and parser.

Every built payload (a table of cases, and any change hypothesis draws) is
signed with :func:`forges.sign_headers`, verified with :func:`forges.verify` and
parsed with :func:`forges.parse`: the parsed push must give back what went in.

Shape: each built payload has the top-level keys of the forge's real delivery in
tests/fixtures/ (github/: octokit/webhooks, MIT, see its README.md; gitlab/,
gitea/, gogs/, bitbucket/, bitbucket-server/: copied unchanged from
go-playground/webhooks testdata/, commit 02d182ac, MIT licence
LICENSE.go-playground-webhooks beside them; Forgejo sends Gitea's payload), plus
only the keys in ``NEWER_KEYS`` that newer forge versions send and the fixtures
predate (GitLab's webhooks.md push example, Gitea's api.PushPayload).
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from deployhook import forges
from deployhook.errors import SignatureError
from deployhook.forges import Ping, Pushes, payloads
from deployhook.forges.delivery import essentials

FIXTURES = Path(__file__).parent / "fixtures"
SECRET = b"It's a Secret to Everybody"
WHSEC = b"whsec_" + base64.b64encode(bytes(range(32)))
ZERO = "0" * 40
OLD = "95790bf891e76fee5e1747ab589903a6a1f80f22"
NEW = "da1560886d4f094c3e6c9ef40349f7d38b5d27d7"
NOW = 1_764_550_000.0
BRANCH, TAG = "refs/heads/", "refs/tags/"
PUSH_FIXTURES = {
    "github": "github/push_payload.json", "gitlab": "gitlab/push-event.json",
    "gitea": "gitea/push-event.json", "forgejo": "gitea/push-event.json",
    "gogs": "gogs/push-event.json", "bitbucket": "bitbucket/repo-push.json",
    "bitbucket-server": "bitbucket-server/repo-refs-changed.json",
}
NEWER_KEYS = {
    "gitlab": {"event_name", "ref_protected", "message", "user_username", "push_options"},
    "gitea": {"total_commits"}, "forgejo": {"total_commits"},
}
REPOSITORIES = {"gitlab": "group/sub/site", "bitbucket-server": "WEB/site"}
COMMITS = [{
    "id": NEW, "message": "Fix the header\n\nLonger text.",
    "timestamp": "2026-11-30T10:00:00+00:00",
    "author": {"name": "Ada", "email": "ada@example.org"},
    "committer": {"name": "Ada", "email": "ada@example.org"},
    "added": ["new.txt"], "removed": [], "modified": ["index.html"],
}]
# (case, ref, before, after, deleted)
CHANGES = [
    ("push", "refs/heads/main", OLD, NEW, False),
    ("created", "refs/heads/feature/x", ZERO, NEW, False),
    ("tag", "refs/tags/v1.2.0", ZERO, NEW, False),
    ("deleted branch", "refs/heads/old", OLD, ZERO, True),
    ("deleted tag", "refs/tags/v0.9", OLD, ZERO, True),
]


def fixture(name: str) -> dict[str, Any]:
    return json.loads((FIXTURES / name).read_text())


def build(forge: str, ref: str, before: str, after: str) -> dict[str, Any]:
    return payloads.push_payload(
        forge, repository=REPOSITORIES.get(forge, "octo-org/site"), ref=ref, before=before,
        after=after, pusher="ada", email="ada@example.org", default_branch="main",
        commits=COMMITS, now=NOW)


def round_trip(forge: str, payload: dict[str, Any], event: str, secret: bytes = SECRET
               ) -> tuple[forges.Event, dict[str, str]]:
    body = json.dumps(payload, separators=(",", ":")).encode()
    headers = forges.sign_headers(forge, secret, body, event, delivery_id="d-1", now=NOW)
    assert forges.detect(headers) == forge
    assert forges.verify(forge, [b"wrong", secret], headers, body, now=NOW) == 1
    return forges.parse(forge, headers, json.loads(body)), headers


@pytest.mark.parametrize("case,ref,before,after,deleted", CHANGES, ids=[c[0] for c in CHANGES])
@pytest.mark.parametrize("forge", forges.FORGES)
def test_push_round_trips_through_sign_verify_parse(forge: str, case: str, ref: str,
                                                    before: str, after: str,
                                                    deleted: bool) -> None:
    payload = build(forge, ref, before, after)
    event = payloads.event_name(forge, ref=ref, after=after)
    parsed, _ = round_trip(forge, payload, event)
    assert isinstance(parsed, Pushes)
    push = parsed.for_ref(ref)
    assert push is not None and parsed.refs == (ref,)
    assert (push.forge, push.delivery_id, push.deleted) == (forge, "d-1", deleted)
    assert parsed.repository == push.repository == REPOSITORIES.get(forge, "octo-org/site")
    assert forges.repository(forge, payload) == parsed.repository
    # Gitea/Forgejo/Gogs's delete event carries no SHAs: the parser gives zeros.
    gitea_delete = forge in ("gitea", "forgejo", "gogs") and deleted
    assert (push.before, push.after) == ((ZERO, ZERO) if gitea_delete else (before, after))
    assert push.pusher == "ada"
    if forge not in ("bitbucket", "bitbucket-server"):  # they name no default branch
        assert push.default_branch == "main"


@pytest.mark.parametrize("forge", forges.FORGES)
def test_push_has_the_real_deliverys_top_level_keys(forge: str) -> None:
    real = fixture(PUSH_FIXTURES[forge])
    built = build(forge, "refs/heads/main", OLD, NEW)
    assert set(built) == set(real) | NEWER_KEYS.get(forge, set())


def test_gitea_family_deletion_has_the_real_delete_events_keys() -> None:
    real = fixture("gitea/delete-event.json")
    for forge in ("gitea", "forgejo", "gogs"):
        built = build(forge, "refs/heads/old", OLD, ZERO)
        assert set(built) == set(real)
        assert (built["ref"], built["ref_type"]) == ("old", "branch")
        assert payloads.event_name(forge, ref="refs/heads/old", after=ZERO) == "delete"


def test_gitlab_fields_consumers_read() -> None:
    push = build("gitlab", "refs/heads/main", OLD, NEW)
    assert push["project"]["path_with_namespace"] == "group/sub/site"
    assert (push["checkout_sha"], push["total_commits_count"]) == (NEW, 1)
    assert (push["user_username"], push["object_kind"]) == ("ada", "push")
    assert set(push["project"]) >= set(fixture("gitlab/push-event.json")["project"])
    assert set(push["commits"][0]) >= set(fixture("gitlab/push-event.json")["commits"][0])
    tag = build("gitlab", "refs/tags/v1", ZERO, NEW)
    assert tag["object_kind"] == "tag_push"
    assert build("gitlab", "refs/heads/main", OLD, ZERO)["checkout_sha"] is None


def test_gitlab_signing_token_round_trip() -> None:
    parsed, headers = round_trip("gitlab", build("gitlab", "refs/heads/main", OLD, NEW),
                                 "push", WHSEC)
    assert "webhook-signature" in headers and "X-Gitlab-Token" not in headers
    assert isinstance(parsed, Pushes) and parsed.delivery_id == "d-1"


def test_gitea_and_gogs_name_the_pusher_both_ways() -> None:
    for forge in ("gitea", "forgejo", "gogs"):
        push = build(forge, "refs/heads/main", OLD, NEW)
        assert push["repository"]["full_name"] == "octo-org/site"
        assert (push["pusher"]["login"], push["pusher"]["username"]) == ("ada", "ada")
        real = fixture(PUSH_FIXTURES[forge])
        assert set(push["repository"]) >= set(real["repository"])
        assert set(push["commits"][0]) >= set(real["commits"][0])


@pytest.mark.parametrize("before,after,created,closed", [
    (OLD, NEW, False, False), (ZERO, NEW, True, False), (OLD, ZERO, False, True)])
def test_bitbucket_cloud_change(before: str, after: str, created: bool, closed: bool) -> None:
    change = build("bitbucket", "refs/heads/main", before, after)["push"]["changes"][0]
    real = fixture("bitbucket/repo-push.json")["push"]["changes"][0]
    assert set(change) >= set(real) - {"links"} | {"new", "old", "created", "closed", "forced"}
    assert (change["created"], change["closed"], change["forced"]) == (created, closed, False)
    for side, sha in (("old", before), ("new", after)):
        state = change[side]
        assert state is None if sha == ZERO else state["target"]["hash"] == sha
    tag = build("bitbucket", "refs/tags/v1", ZERO, NEW)["push"]["changes"][0]["new"]
    assert (tag["type"], tag["name"]) == ("tag", "v1")


@pytest.mark.parametrize("before,after,kind", [
    (OLD, NEW, "UPDATE"), (ZERO, NEW, "ADD"), (OLD, ZERO, "DELETE")])
def test_bitbucket_data_center_change(before: str, after: str, kind: str) -> None:
    payload = build("bitbucket-server", "refs/heads/main", before, after)
    (change,) = payload["changes"]
    assert change["ref"] == {"id": "refs/heads/main", "displayId": "main", "type": "BRANCH"}
    assert (change["fromHash"], change["toHash"], change["type"]) == (before, after, kind)
    assert (payload["repository"]["slug"], payload["repository"]["project"]["key"]) == \
        ("site", "WEB")
    real = fixture("bitbucket-server/repo-refs-changed.json")
    assert set(payload["repository"]) >= set(real["repository"])
    tag = build("bitbucket-server", "refs/tags/v1", ZERO, NEW)["changes"][0]["ref"]
    assert (tag["displayId"], tag["type"]) == ("v1", "TAG")


def test_github_push_is_the_shape_send_builds() -> None:
    push = build("github", "refs/heads/main", OLD, NEW)
    real = fixture("github/push_with-new-branch.payload.json")
    assert set(push["repository"]) >= {"id", "full_name", "default_branch", "html_url",
                                       "clone_url", "ssh_url", "owner", "pushed_at"}
    assert set(push["head_commit"]) == set(real["head_commit"])
    assert set(push["head_commit"]["author"]) <= set(real["head_commit"]["author"])
    assert (push["created"], push["deleted"], push["forced"]) == (False, False, False)
    assert push["compare"].endswith(f"/compare/{OLD[:12]}...{NEW[:12]}")
    gone = build("github", "refs/heads/main", OLD, ZERO)
    assert (gone["deleted"], gone["commits"], gone["head_commit"]) == (True, [], None)


@pytest.mark.parametrize("forge", forges.FORGES)
def test_ping_round_trips_where_the_forge_has_one(forge: str) -> None:
    ping = payloads.ping_payload(forge, repository="octo-org/site",
                                 url="https://user:token@example.org/hooks/default",
                                 default_branch="main", now=NOW)
    if forge not in ("github", "bitbucket-server"):
        assert ping is None  # these forges test a hook with a push
        return
    assert ping is not None
    parsed, _ = round_trip(forge, ping, "ping")
    assert isinstance(parsed, Ping) and parsed.delivery_id == "d-1"
    if forge == "github":
        assert set(ping) == set(fixture("github/ping_payload.json"))
        assert set(ping["hook"]) == set(fixture("github/ping_payload.json")["hook"])
        assert parsed.repository == "octo-org/site" and parsed.message in payloads.ZEN
        assert "token" not in json.dumps(ping)


@pytest.mark.parametrize("forge", forges.FORGES)
def test_a_wrong_secret_is_refused(forge: str) -> None:
    body = json.dumps(build(forge, "refs/heads/main", OLD, NEW)).encode()
    headers = forges.sign_headers(forge, b"not the secret", body)
    with pytest.raises(SignatureError):
        forges.verify(forge, [SECRET], headers, body, now=NOW)


def test_payloads_are_deterministic_and_refuse_bad_input() -> None:
    assert build("gitea", "refs/heads/main", OLD, NEW) == build("gitea", "refs/heads/main",
                                                                OLD, NEW)
    with pytest.raises(ValueError, match="unknown forge"):
        build("sourcehut", "refs/heads/main", OLD, NEW)
    with pytest.raises(ValueError, match="refs/heads/"):
        build("github", "main", OLD, NEW)
    with pytest.raises(ValueError, match="unknown forge"):
        payloads.ping_payload("svn", repository="a/b", url="http://x", default_branch="main")


names = st.text(st.sampled_from("abcdefghijklmnopqrstuvwxyz0123456789-_."), min_size=1,
                max_size=20).filter(lambda name: ".." not in name and not name.startswith(".")
                                    and not name.endswith((".", ".lock")))
shas = st.text(st.sampled_from("0123456789abcdef"), min_size=40, max_size=40)


@settings(max_examples=100, deadline=None, database=None)
@given(forge=st.sampled_from(forges.FORGES), kind=st.sampled_from((BRANCH, TAG)),
       short=names, before=shas | st.just(ZERO), after=shas | st.just(ZERO),
       owner=names, name=names)
def test_any_change_round_trips(forge: str, kind: str, short: str, before: str, after: str,
                                owner: str, name: str) -> None:
    assume(before != ZERO or after != ZERO)  # no forge sends a change from nothing to nothing
    ref, repository = kind + short, f"{owner}/{name}"
    payload = payloads.push_payload(forge, repository=repository, ref=ref, before=before,
                                    after=after, pusher="ada", email="ada@example.org",
                                    default_branch="main", now=NOW)
    parsed, _ = round_trip(forge, payload, payloads.event_name(forge, ref=ref, after=after))
    assert isinstance(parsed, Pushes) and parsed.repository == repository
    push = parsed.for_ref(ref)
    assert push is not None and push.deleted == (after == ZERO)
    if not (push.deleted and forge in ("gitea", "forgejo", "gogs")):
        assert (push.before, push.after) == (before, after)


@pytest.mark.parametrize("forge", forges.FORGES)
def test_the_essentials_of_a_payload_parse_like_the_whole(forge: str) -> None:
    """A large body is parsed in a child that sends back only delivery.essentials(): for
    every forge that part gives the same event as the whole payload."""
    for ref in ("refs/heads/main", "refs/tags/v1"):
        payload = payloads.push_payload(
            forge, repository="octo-org/blog", ref=ref, before="a" * 40, after="b" * 40,
            pusher="octocat", email="o@example.com", default_branch="main", now=0)
        event = payloads.event_name(forge, ref=ref, after="b" * 40)
        headers = forges.sign_headers(forge, b"s", b"{}", event)
        assert forges.parse(forge, headers, essentials(payload)) == forges.parse(
            forge, headers, payload)
