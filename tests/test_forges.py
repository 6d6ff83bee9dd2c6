"""Table-driven tests of deployhook.forges on real deliveries of seven forges.

Payloads: tests/fixtures/github/ (octokit/webhooks, MIT, see its README.md) and
tests/fixtures/{gitlab,gitea,gogs,bitbucket,bitbucket-server}/, copied unchanged
from the public go-playground/webhooks repository (testdata/, commit 02d182ac, MIT
licence: LICENSE.go-playground-webhooks beside them).  Forgejo sends Gitea's
payload, so it uses gitea/.  Where no fixture holds a case (a GitHub branch
deletion, a GitLab branch deletion, a Gitea or Gogs tag push, a Bitbucket Cloud tag
or deletion, a Bitbucket Data Center update), the case is the forge's real payload
with only the named fields changed, built by the ``derive`` functions below.

Header names and semantics: ../shared/fixtures/FORGES.md (each forge's source or
docs).  Every expected MAC in this file is computed with ``hmac`` directly, never
with the code under test; the Standard Webhooks layout follows standardwebhooks.com.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import hmac
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from tornado.httputil import HTTPHeaders

from deployhook import forges
from deployhook.errors import DeliveryError, MalformedDelivery, SignatureError
from deployhook.forges import Other, Ping, Pushes
from deployhook.forges.delivery import Push as CorePush

FIXTURES = Path(__file__).parent / "fixtures"
SECRET = b"It's a Secret to Everybody"
OTHER = b"another target's secret"
ZERO = "0" * 40
NEW = "1234567890abcdef1234567890abcdef12345678"
SIGNING_KEY = bytes(range(32))
WHSEC = b"whsec_" + base64.b64encode(SIGNING_KEY)


def fixture(name: str) -> dict[str, Any]:
    return json.loads((FIXTURES / name).read_text())


def derive(name: str, change: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
    """A copy of fixture ``name`` with ``change`` applied."""
    payload = copy.deepcopy(fixture(name))
    change(payload)
    return payload


def hmac_hex(body: bytes, algorithm: str = "sha256", key: bytes = SECRET) -> str:
    return hmac.new(key, body, getattr(hashlib, algorithm)).hexdigest()


# --- derived payloads (fields changed named in each function) --------------------------

def github_branch_deletion(p: dict[str, Any]) -> None:
    p["before"], p["after"], p["deleted"], p["created"] = p["after"], ZERO, True, False


def set_ref(ref: str) -> Callable[[dict[str, Any]], None]:
    return lambda p: p.update(ref=ref)


def gitlab_branch_deletion(p: dict[str, Any]) -> None:
    p["before"], p["after"], p["checkout_sha"] = p["after"], ZERO, None


def bitbucket_tag(p: dict[str, Any]) -> None:
    p["push"]["changes"][0]["new"].update(type="tag", name="v1.0")


def bitbucket_deletion(p: dict[str, Any]) -> None:
    change = p["push"]["changes"][0]
    change.update(new=None, closed=True, created=False)


def server_update(p: dict[str, Any]) -> None:
    p["changes"][0].update(toHash=NEW, type="UPDATE")


def server_tag(p: dict[str, Any]) -> None:
    p["changes"][0].update(ref={"id": "refs/tags/v1.0", "displayId": "v1.0", "type": "TAG"},
                           refId="refs/tags/v1.0", fromHash=ZERO, toHash=NEW, type="ADD")


@dataclass(frozen=True)
class Case:
    forge: str
    push: dict[str, Any]
    ref: str
    after: str
    repository: str
    id_header: str
    auth_headers: tuple[str, ...]
    tag: dict[str, Any]
    tag_name: str
    deletion: dict[str, Any]
    deleted_ref: str
    deletion_event: str = "push"
    ping_event: str | None = None
    ping: dict[str, Any] | None = None


GITEA_AUTH = ("X-Gitea-Signature", "X-Gogs-Signature", "X-Hub-Signature",
              "X-Hub-Signature-256")
CASES = [
    Case("github", fixture("github/push_with-new-branch.payload.json"), "refs/heads/master",
         "6113728f27ae82c7b1a177c8d03f9e96e0adf246", "Codertocat/Hello-World",
         "X-GitHub-Delivery", ("X-Hub-Signature", "X-Hub-Signature-256"),
         fixture("github/push_1.payload.json"), "simple-tag",
         derive("github/push_with-new-branch.payload.json", github_branch_deletion),
         "refs/heads/master", ping_event="ping", ping=fixture("github/ping_payload.json")),
    Case("gitlab", fixture("gitlab/push-event.json"), "refs/heads/master",
         "da1560886d4f094c3e6c9ef40349f7d38b5d27d7", "mike/diaspora", "Idempotency-Key",
         ("X-Gitlab-Token",), fixture("gitlab/tag-event.json"), "v1.0.0",
         derive("gitlab/push-event.json", gitlab_branch_deletion), "refs/heads/master"),
    Case("gitea", fixture("gitea/push-event.json"), "refs/heads/master",
         "67b56589a45103f891bdee7c0546e5d40bc02001", "example/example", "X-Gitea-Delivery",
         GITEA_AUTH, derive("gitea/push-event.json", set_ref("refs/tags/v1.0")), "v1.0",
         fixture("gitea/delete-event.json"), "refs/heads/example3", deletion_event="delete"),
    Case("forgejo", fixture("gitea/push-event.json"), "refs/heads/master",
         "67b56589a45103f891bdee7c0546e5d40bc02001", "example/example", "X-Forgejo-Delivery",
         ("X-Forgejo-Signature", *GITEA_AUTH),
         derive("gitea/push-event.json", set_ref("refs/tags/v1.0")), "v1.0",
         fixture("gitea/delete-event.json"), "refs/heads/example3", deletion_event="delete"),
    Case("gogs", fixture("gogs/push-event.json"), "refs/heads/develop",
         "bffeb74224043ba2feb48d137756c8a9331c449a", "unknwon/webhooks", "X-Gogs-Delivery",
         ("X-Gogs-Signature",), derive("gogs/push-event.json", set_ref("refs/tags/v1.0")),
         "v1.0", fixture("gitea/delete-event.json"), "refs/heads/example3",
         deletion_event="delete"),
    Case("bitbucket", fixture("bitbucket/repo-push.json"), "refs/heads/name-of-branch",
         "709d658dc5b6d6afcd46049c2f332ee3f515a67d", "team_name/repo_name", "X-Request-UUID",
         ("X-Hub-Signature",), derive("bitbucket/repo-push.json", bitbucket_tag), "v1.0",
         derive("bitbucket/repo-push.json", bitbucket_deletion), "refs/heads/name-of-branch"),
    Case("bitbucket-server", derive("bitbucket-server/repo-refs-changed.json", server_update),
         "refs/heads/feature/wip", NEW, "~gopher/webhook-test", "X-Request-Id",
         ("X-Hub-Signature",),
         derive("bitbucket-server/repo-refs-changed.json", server_tag), "v1.0",
         fixture("bitbucket-server/repo-refs-changed.json"), "refs/heads/feature/wip",
         ping_event="ping", ping={"test": True}),
]
BY_FORGE = pytest.mark.parametrize("case", CASES, ids=[c.forge for c in CASES])


def body_of(payload: dict[str, Any]) -> bytes:
    return json.dumps(payload, separators=(",", ":")).encode()


def deliver(case: Case, payload: dict[str, Any], event: str = "push",
            secret: bytes = SECRET, delivery_id: str = "d-42") -> tuple[HTTPHeaders, bytes]:
    """Headers as Tornado hands them to a handler, and the exact body signed."""
    body = body_of(payload)
    sent = forges.sign_headers(case.forge, secret, body, event, delivery_id=delivery_id)
    return HTTPHeaders(sent), body


def parsed(case: Case, payload: dict[str, Any], event: str = "push") -> forges.Event:
    headers, body = deliver(case, payload, event)
    assert forges.verify(case.forge, [SECRET], headers, body) == 0
    return forges.parse(case.forge, headers, json.loads(body))


# --- detection -------------------------------------------------------------------------

@BY_FORGE
def test_each_forge_is_detected_from_its_own_headers(case: Case) -> None:
    headers, _ = deliver(case, case.push)
    assert forges.detect(headers) == case.forge
    assert forges.detect({k.lower(): v for k, v in headers.get_all()}) == case.forge


def test_gitea_forgejo_and_gogs_are_not_taken_for_github_despite_its_headers() -> None:
    for forge in ("gitea", "forgejo"):
        sent = forges.sign_headers(forge, SECRET, b"{}")
        assert sent["X-GitHub-Event"] == "push" and "X-Hub-Signature-256" in sent
        assert forges.detect(sent) == forge


def test_a_request_naming_no_forge_is_treated_as_github_so_it_gets_401() -> None:
    assert forges.detect({"Content-Type": "application/json"}) == "github"
    with pytest.raises(SignatureError) as caught:
        forges.verify("github", [SECRET], {}, b"{}")
    assert caught.value.status == 401


# --- verification ----------------------------------------------------------------------

@BY_FORGE
def test_a_valid_signature_verifies(case: Case) -> None:
    headers, body = deliver(case, case.push)
    assert forges.verify(case.forge, [SECRET], headers, body) == 0


@BY_FORGE
def test_verify_returns_the_index_of_the_secret_that_matched(case: Case) -> None:
    headers, body = deliver(case, case.push)
    assert forges.verify(case.forge, [OTHER, SECRET, b"third"], headers, body) == 1
    assert forges.verify(case.forge, [SECRET, SECRET], headers, body) == 0


@BY_FORGE
def test_a_wrong_secret_is_401_and_shows_no_mac(case: Case) -> None:
    headers, body = deliver(case, case.push, secret=OTHER)
    with pytest.raises(SignatureError) as caught:
        forges.verify(case.forge, [SECRET], headers, body)
    assert caught.value.status == 401
    assert hmac_hex(body) not in caught.value.reason
    assert SECRET.decode() not in caught.value.reason


@BY_FORGE
def test_a_changed_body_is_401(case: Case) -> None:
    headers, body = deliver(case, case.push)
    if case.forge == "gitlab":  # a clear token signs nothing: see the whsec_ tests below
        assert forges.verify(case.forge, [SECRET], headers, body + b" ") == 0
        return
    with pytest.raises(SignatureError):
        forges.verify(case.forge, [SECRET], headers, body + b" ")


@BY_FORGE
def test_missing_authentication_is_401(case: Case) -> None:
    headers, body = deliver(case, case.push)
    for name in case.auth_headers:
        del headers[name]
    with pytest.raises(SignatureError) as caught:
        forges.verify(case.forge, [SECRET], headers, body)
    assert caught.value.status == 401 and "missing" in caught.value.reason


@BY_FORGE
def test_no_secret_at_all_matches_nothing(case: Case) -> None:
    headers, body = deliver(case, case.push)
    with pytest.raises(SignatureError):
        forges.verify(case.forge, [], headers, body)


def test_an_empty_gitea_signature_header_counts_as_missing() -> None:
    headers = {"X-Gitea-Event": "push", "X-Gitea-Signature": ""}
    with pytest.raises(SignatureError, match="missing X-Gitea-Signature"):
        forges.verify("gitea", [SECRET], headers, b"{}")


@pytest.mark.parametrize(("forge", "name", "value"), [
    ("github", "X-Hub-Signature-256", "sha256=abc"),
    ("github", "X-Hub-Signature-256", "sha1=" + "0" * 40),
    ("gitea", "X-Gitea-Signature", "sha256=" + "0" * 64),
    ("gogs", "X-Gogs-Signature", "g" * 64),
    ("bitbucket", "X-Hub-Signature", "0" * 64),
    ("bitbucket-server", "X-Hub-Signature", "sha1=" + "0" * 40),
])
def test_a_malformed_signature_is_401(forge: str, name: str, value: str) -> None:
    with pytest.raises(SignatureError, match="malformed"):
        forges.verify(forge, [SECRET], {name: value}, b"{}")


def test_github_prefers_sha256_and_takes_sha1_only_alone() -> None:
    body = b'{"zen": "x"}'
    sha1 = {"X-Hub-Signature": "sha1=" + hmac_hex(body, "sha1")}
    assert forges.verify("github", [SECRET], sha1, body) == 0
    wrong_256 = {**sha1, "X-Hub-Signature-256": "sha256=" + hmac_hex(body, key=OTHER)}
    with pytest.raises(SignatureError):
        forges.verify("github", [SECRET], wrong_256, body)


@pytest.mark.parametrize(("forge", "expected"), [
    ("github", {"X-Hub-Signature-256": "sha256={s256}", "X-Hub-Signature": "sha1={s1}"}),
    ("gitea", {"X-Gitea-Signature": "{s256}", "X-Gogs-Signature": "{s256}",
               "X-Hub-Signature-256": "sha256={s256}", "X-Hub-Signature": "sha1={s1}"}),
    ("forgejo", {"X-Forgejo-Signature": "{s256}", "X-Gitea-Signature": "{s256}"}),
    ("gogs", {"X-Gogs-Signature": "{s256}"}),
    ("bitbucket", {"X-Hub-Signature": "sha256={s256}", "X-Event-Key": "repo:push"}),
    ("bitbucket-server", {"X-Hub-Signature": "sha256={s256}",
                          "X-Event-Key": "repo:refs_changed"}),
    ("gitlab", {"X-Gitlab-Token": SECRET.decode(), "X-Gitlab-Event": "Push Hook"}),
])
def test_sign_headers_sends_what_the_forge_sends(forge: str, expected: dict[str, str]) -> None:
    body = b'{"ref": "refs/heads/main"}'
    sent = forges.sign_headers(forge, SECRET, body)
    macs = {"s256": hmac_hex(body), "s1": hmac_hex(body, "sha1")}
    for name, value in expected.items():
        assert sent[name] == value.format_map(macs), name


# --- GitLab signing tokens (Standard Webhooks) ------------------------------------------

def standard_webhook(body: bytes, stamp: int, webhook_id: str = "msg_1",
                     key: bytes = SIGNING_KEY) -> dict[str, str]:
    """The headers of a Standard Webhooks signature, computed here independently."""
    signed = f"{webhook_id}.{stamp}.".encode() + body
    digest = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
    return {"X-Gitlab-Event": "Push Hook", "webhook-id": webhook_id,
            "webhook-timestamp": str(stamp), "webhook-signature": f"v1,{digest}"}


def test_a_gitlab_signing_token_verifies_the_signature() -> None:
    body, now = body_of(fixture("gitlab/push-event.json")), 1_700_000_000
    headers = standard_webhook(body, now)
    assert forges.verify("gitlab", [SECRET, WHSEC], headers, body, now=now + 10) == 1
    assert forges.sign_headers("gitlab", WHSEC, body, delivery_id="msg_1",
                               now=now)["webhook-signature"] == headers["webhook-signature"]


def test_a_gitlab_signature_among_several_verifies() -> None:
    body, now = b"{}", 1_700_000_000
    headers = standard_webhook(body, now)
    other = base64.b64encode(b"\0" * 32).decode()
    headers["webhook-signature"] = f"v1,{other} v1a,xyz {headers['webhook-signature']}"
    assert forges.verify("gitlab", [WHSEC], headers, body, now=now) == 0


@pytest.mark.parametrize("skew", [-301, 301, 10**6])
def test_a_stale_gitlab_signature_timestamp_is_401(skew: int) -> None:
    body, now = b"{}", 1_700_000_000
    headers = standard_webhook(body, now + skew)
    with pytest.raises(SignatureError, match="stale") as caught:
        forges.verify("gitlab", [WHSEC], headers, body, now=now)
    assert caught.value.status == 401


def test_a_gitlab_signature_over_another_body_or_key_is_401() -> None:
    body, now = b"{}", int(time.time())
    with pytest.raises(SignatureError):
        forges.verify("gitlab", [WHSEC], standard_webhook(body, now), b"{ }")
    with pytest.raises(SignatureError):
        forges.verify("gitlab", [WHSEC], standard_webhook(body, now, key=b"k" * 32), body)


def test_a_gitlab_signing_token_is_never_accepted_as_a_clear_token() -> None:
    headers = {"X-Gitlab-Event": "Push Hook", "X-Gitlab-Token": WHSEC.decode()}
    with pytest.raises(SignatureError):
        forges.verify("gitlab", [WHSEC], headers, b"{}")


@pytest.mark.parametrize("drop", ["webhook-id", "webhook-timestamp"])
def test_a_gitlab_signature_without_its_id_or_timestamp_is_401(drop: str) -> None:
    headers = standard_webhook(b"{}", int(time.time()))
    del headers[drop]
    with pytest.raises(SignatureError):
        forges.verify("gitlab", [WHSEC], headers, b"{}")


SIGNED_ID = standard_webhook(b"{}", 1)  # webhook-id msg_1, signed with the body
PLAIN = {"X-Gitlab-Event": "Push Hook", "X-Gitlab-Token": SECRET.decode()}


@pytest.mark.parametrize("name", ["gitlab/push-event.json", "gitlab/tag-event.json"])
@pytest.mark.parametrize(("headers", "expected"), [
    # a signing token signs webhook-id, never Idempotency-Key: a replay under a new key
    # must keep the id it was signed with
    ({**SIGNED_ID, "Idempotency-Key": "new-key"}, "msg_1"),
    (SIGNED_ID, "msg_1"),
    ({**SIGNED_ID, **PLAIN, "Idempotency-Key": "new-key"}, "msg_1"),
    # a clear token signs nothing: Idempotency-Key (kept across GitLab's retries) first
    ({**PLAIN, "Idempotency-Key": "key-1"}, "key-1"),
    ({**PLAIN, "Idempotency-Key": "key-1", "webhook-id": "msg_1"}, "key-1"),
    ({**PLAIN, "webhook-id": "msg_1"}, "msg_1"),
    ({**PLAIN, "X-Gitlab-Webhook-UUID": "fresh-per-request"}, "-"),
], ids=["signed-new-key", "signed", "signed-and-token", "token", "token-webhook-id",
        "token-webhook-id-only", "none"])
def test_gitlab_delivery_id_is_the_signed_webhook_id_when_signed(
        name: str, headers: dict[str, str], expected: str) -> None:
    """parse() and labels() (the log's id) agree on a GitLab delivery's id."""
    payload = fixture(name)
    event = "Tag Push Hook" if payload["object_kind"] == "tag_push" else "Push Hook"
    sent = HTTPHeaders({**headers, "X-Gitlab-Event": event})
    parsed_event = forges.parse("gitlab", sent, payload)
    assert isinstance(parsed_event, Pushes)
    assert parsed_event.delivery_id == parsed_event.changes[0].delivery_id == expected
    assert forges.labels("gitlab", sent) == (expected, event)


# --- parsing ---------------------------------------------------------------------------

@BY_FORGE
def test_a_push_is_parsed(case: Case) -> None:
    event = parsed(case, case.push)
    assert isinstance(event, Pushes)
    assert (event.forge, event.repository, event.delivery_id) == (case.forge, case.repository,
                                                                 "d-42")
    push = event.for_ref(case.ref)
    assert push is not None and isinstance(push, CorePush)
    assert (push.after, push.deleted, push.forge) == (case.after, False, case.forge)
    assert (push.repository, push.delivery_id) == (case.repository, "d-42")
    assert event.for_branch(push.branch or "") == push and push.tag is None


@BY_FORGE
def test_the_delivery_id_comes_from_the_forges_stable_header(case: Case) -> None:
    headers, body = deliver(case, case.push, delivery_id="stable-7")
    assert headers[case.id_header] == "stable-7"
    event = forges.parse(case.forge, headers, json.loads(body))
    assert event.delivery_id == "stable-7"


@BY_FORGE
def test_a_tag_push_is_recognised(case: Case) -> None:
    event = parsed(case, case.tag, "tag")
    assert isinstance(event, Pushes)
    [push] = event.changes
    assert push.tag == case.tag_name and push.branch is None
    assert push.ref == "refs/tags/" + case.tag_name


@BY_FORGE
def test_a_branch_deletion_is_recognised(case: Case) -> None:
    event = parsed(case, case.deletion, case.deletion_event)
    assert isinstance(event, Pushes)
    push = event.for_ref(case.deleted_ref)
    assert push is not None and push.deleted and push.after == ZERO


@BY_FORGE
def test_a_ping_is_recognised_where_the_forge_has_one(case: Case) -> None:
    if case.ping_event is None:  # no ping: an event of that name is just another event
        assert isinstance(parsed(case, case.push, "ping"), Other)
        return
    event = parsed(case, case.ping or {}, case.ping_event)
    assert isinstance(event, Ping) and event.delivery_id == "d-42"
    if case.forge == "github":
        assert event.message == "Anything added dilutes everything else."


@pytest.mark.parametrize(("forge", "event"), [
    ("github", "issues"), ("gitlab", "Issue Hook"), ("gitea", "issues"), ("forgejo", "create"),
    ("gogs", "create"), ("bitbucket", "pullrequest:created"), ("bitbucket-server", "pr:opened"),
])
def test_other_events_are_ignored_with_a_reason(forge: str, event: str) -> None:
    case = next(c for c in CASES if c.forge == forge)
    result = parsed(case, case.push, event)
    assert isinstance(result, Other) and result.event == event and "not deployed" in result.reason


@BY_FORGE
def test_a_missing_event_header_is_400(case: Case) -> None:
    with pytest.raises(MalformedDelivery) as caught:
        forges.parse(case.forge, {}, case.push)
    assert caught.value.status == 400


def corrupt(case: Case, what: str) -> dict[str, Any]:
    """The push payload with its (first) ref or new SHA replaced by ``what``."""
    p = copy.deepcopy(case.push)
    if case.forge == "bitbucket":
        p["push"]["changes"][0]["new"]["target"]["hash"] = what
    elif case.forge == "bitbucket-server":
        p["changes"][0]["toHash"] = what
    else:
        p["after"] = what
    return p


@BY_FORGE
@pytest.mark.parametrize("sha", ["NOTHEX" * 7, "abc", "A" * 40, "", "0" * 41])
def test_a_non_hex_sha_is_400(case: Case, sha: str) -> None:
    with pytest.raises(MalformedDelivery):
        parsed(case, corrupt(case, sha))


@pytest.mark.parametrize("ref", ["refs/heads/../x", "main", "refs/heads/a b", "refs/heads/x~1",
                                 "refs/heads/a\x00"])
@pytest.mark.parametrize("forge", ["github", "gitlab", "gitea", "gogs", "bitbucket-server"])
def test_an_unsafe_ref_is_400(forge: str, ref: str) -> None:
    case = next(c for c in CASES if c.forge == forge)
    payload = copy.deepcopy(case.push)
    if forge == "bitbucket-server":
        payload["changes"][0]["ref"]["id"] = ref
    else:
        payload["ref"] = ref
    with pytest.raises(MalformedDelivery):
        parsed(case, payload)


def test_a_bitbucket_branch_name_that_makes_an_unsafe_ref_is_400() -> None:
    payload = copy.deepcopy(CASES[5].push)
    payload["push"]["changes"][0]["new"]["name"] = "../../etc"
    with pytest.raises(MalformedDelivery):
        parsed(CASES[5], payload)


def test_a_bitbucket_cloud_push_of_several_refs_gives_one_push_each() -> None:
    payload = fixture("bitbucket/repo-push.json")
    first = payload["push"]["changes"][0]
    tag = copy.deepcopy(first)
    tag["new"].update(type="tag", name="v2")
    tag["old"] = None
    payload["push"]["changes"].append(tag)
    event = parsed(CASES[5], payload)
    assert isinstance(event, Pushes)
    assert event.refs == ("refs/heads/name-of-branch", "refs/tags/v2")
    created = event.for_ref("refs/tags/v2")
    assert created is not None and created.before == ZERO and not created.deleted
    assert event.for_branch("name-of-branch") == event.changes[0]
    assert event.for_branch("main") is None


def test_a_bitbucket_push_that_changed_no_ref_is_ignored() -> None:
    payload = fixture("bitbucket/repo-push.json")
    payload["push"]["changes"] = []
    assert isinstance(parsed(CASES[5], payload), Other)


@pytest.mark.parametrize(("forge", "payload", "name"), [
    ("github", {"repository": {"full_name": "a/b"}}, "a/b"),
    ("gitlab", fixture("gitlab/push-event.json"), "mike/diaspora"),
    ("bitbucket-server", fixture("bitbucket-server/repo-refs-changed.json"),
     "~gopher/webhook-test"),
    ("gitea", {"repository": "a/b"}, None),
    ("bitbucket", [], None),
])
def test_repository_names_the_payloads_repository_for_routing(
        forge: str, payload: Any, name: str | None) -> None:
    assert forges.repository(forge, payload) == name


def test_an_unknown_forge_is_a_programming_error() -> None:
    for call in (lambda: forges.verify("svn", [SECRET], {}, b""),
                 lambda: forges.parse("svn", {}, {}),
                 lambda: forges.sign_headers("svn", SECRET, b"")):
        with pytest.raises(ValueError, match="unknown forge"):
            call()
    assert not issubclass(ValueError, DeliveryError)


@pytest.mark.parametrize("kind", [[], {}, None, 3, "named_branch"])
def test_a_bitbucket_change_of_an_unknown_ref_type_is_400(kind: Any) -> None:
    """Found by the property tests: a list as ``new.type`` raised TypeError."""
    payload = fixture("bitbucket/repo-push.json")
    payload["push"]["changes"][0]["new"]["type"] = kind
    with pytest.raises(MalformedDelivery):
        parsed(CASES[5], payload)


# --- bodies hashed as they arrive ---------------------------------------------------------


@pytest.mark.parametrize("forge", forges.FORGES)
@pytest.mark.parametrize("gitlab_secret", [SECRET, WHSEC])
def test_a_body_hashed_in_chunks_verifies_like_the_bytes(forge: str, gitlab_secret: bytes) -> None:
    """verify() over a mac.Hashed body fed in chunks (keys from hash_keys) gives the same
    secret index as over the bytes, and refuses a wrong secret the same way."""
    secret = gitlab_secret if forge == "gitlab" else SECRET
    body = json.dumps({"n": list(range(5000))}).encode()
    headers = forges.sign_headers(forge, secret, body)
    secrets = [OTHER, secret]
    hashed = forges.mac.Hashed(forges.hash_keys(forge, secrets, headers))
    for start in range(0, len(body), 4096):
        hashed.update(body[start:start + 4096])
    assert forges.verify(forge, secrets, headers, hashed) == forges.verify(
        forge, secrets, headers, body) == 1
    wrong = forges.mac.Hashed(forges.hash_keys(forge, [OTHER], headers))
    wrong.update(body)
    with pytest.raises(SignatureError):
        forges.verify(forge, [OTHER], headers, wrong)


@pytest.mark.parametrize("forge", forges.FORGES)
def test_check_headers_refuses_missing_authentication_before_the_body(forge: str) -> None:
    headers = forges.sign_headers(forge, SECRET, b"{}")
    forges.check_headers(forge, headers)  # well formed: the body decides
    bare = {k: v for k, v in headers.items()
            if "signature" not in k.lower() and "token" not in k.lower()}
    with pytest.raises(SignatureError) as info:
        forges.check_headers(forge, bare)
    assert info.value.status == 401 and "missing" in info.value.reason


def test_a_gitlab_secret_that_only_looks_like_a_signing_token_is_a_plain_token() -> None:
    """``whsec_`` followed by no valid base64 key is sent (and checked) as a clear token
    (found by test_forges_properties)."""
    secret = b"whsec_A"
    headers = forges.sign_headers("gitlab", secret, b"{}")
    assert headers["X-Gitlab-Token"] == "whsec_A"
    assert forges.verify("gitlab", [secret], headers, b"{}") == 0
