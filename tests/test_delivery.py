"""A GitHub delivery through the forge path, as the daemon reads it: the size check,
``forges.verify``, ``parse_body``, ``forges.parse`` and ``rules.decide_event``.

Real payloads come from tests/fixtures/github (octokit/webhooks, MIT).  They are
pretty-printed there; each test re-serialises them compactly, as GitHub sends
them, and signs the exact bytes it passes in.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import pytest
from tornado.httputil import HTTPHeaders

from deployhook import forges
from deployhook.errors import (
    BodyTooLarge,
    DeliveryError,
    MalformedDelivery,
    Mismatch,
    SignatureError,
    UnsupportedMediaType,
    WrongRepository,
)
from deployhook.forges import github
from deployhook.forges.delivery import FORM_TYPE, JSON_TYPE, parse_body
from deployhook.forges.events import Push
from deployhook.service.rules import Decision, Deploy, Ignore, Ping, decide_event
from tests.helpers import (
    FIXTURES,
    REPOSITORY,
    SECRET,
    ZERO,
    push_payload,
    read_github,
    signed,
)

LIMIT = 26 * 1024 * 1024
SHA_A = "6113728f27ae82c7b1a177c8d03f9e96e0adf246"
SHA_B = "a10867b14bb761a232cd80139fbd4c0d33264240"
FIXTURE_REPOSITORY = "Codertocat/Hello-World"

# Both "ping_payload.json" and "ping_with-app_id.payload.json" spellings exist.
FIXTURE_FILES = sorted(FIXTURES.glob("*payload.json"))
PING_FILES = [p for p in FIXTURE_FILES if p.name.startswith("ping")]
PUSH_FILES = [p for p in FIXTURE_FILES if p.name.startswith("push")]


def load(path: Path) -> dict[str, Any]:
    """A fixture payload as a dict."""
    return json.loads(path.read_text(encoding="utf-8"))


def is_tag_deletion(payload: dict[str, Any]) -> bool:
    return payload["ref"].startswith("refs/tags/") and payload["after"] == ZERO


def is_master_creation(payload: dict[str, Any]) -> bool:
    return payload["ref"] == "refs/heads/master" and payload["before"] == ZERO


TAG_DELETIONS = [p for p in PUSH_FILES if is_tag_deletion(load(p))]
MASTER_CREATIONS = [p for p in PUSH_FILES if is_master_creation(load(p))]
NAMES_A_REPOSITORY = [p for p in FIXTURE_FILES if "repository" in load(p)]


def ids(paths: list[Path]) -> list[str]:
    return [p.name for p in paths]


def deliver(
    payload: dict[str, Any] | bytes, event: str = "push", form: bool = False
) -> forges.Event:
    """Sign ``payload`` compactly and read it back through Tornado's header type."""
    body, headers = signed(payload, event=event, form=form)
    return read_github(HTTPHeaders(headers), body, SECRET, LIMIT)


def raw_request(
    body: bytes, event: str | None = "push", content_type: str | None = JSON_TYPE
) -> tuple[bytes, HTTPHeaders]:
    """Headers with a correct signature for arbitrary ``body`` bytes."""
    headers = HTTPHeaders()
    if event is not None:
        headers["X-GitHub-Event"] = event
    if content_type is not None:
        headers["Content-Type"] = content_type
    headers["X-GitHub-Delivery"] = "d-1"
    headers["X-Hub-Signature-256"] = github.sign(SECRET, body)
    return body, headers


# --- the fixture set itself -------------------------------------------------------------------


def test_fixture_set_is_as_documented() -> None:
    """Every push example is a tag deletion or a creation of master (REFERENCE.md)."""
    assert PING_FILES and PUSH_FILES
    assert len(PING_FILES) + len(PUSH_FILES) == len(FIXTURE_FILES)
    assert TAG_DELETIONS and MASTER_CREATIONS
    assert sorted(TAG_DELETIONS + MASTER_CREATIONS) == PUSH_FILES
    for path in PUSH_FILES:
        assert load(path)["repository"]["full_name"] == FIXTURE_REPOSITORY


# --- real payloads: ping ----------------------------------------------------------------------


@pytest.mark.parametrize("form", [False, True], ids=["json", "form"])
@pytest.mark.parametrize("path", PING_FILES, ids=ids(PING_FILES))
def test_ping_fixture_answers_zen(path: Path, form: bool) -> None:
    """Each ping example is a Ping carrying GitHub's zen, in both content types."""
    payload = load(path)
    body, headers = signed(payload, event="ping", form=form)
    assert parse_body(headers["Content-Type"], body) == payload
    assert github.signature_header(HTTPHeaders(headers)) == github.SHA256_HEADER
    event = read_github(HTTPHeaders(headers), body)
    assert isinstance(event, forges.Ping)
    assert event.repository == payload.get("repository", {}).get("full_name")
    decision = decide_event(event, None, None)
    assert decision == Ping(payload["zen"])
    assert decision.zen == "Anything added dilutes everything else."


@pytest.mark.parametrize("path", PING_FILES, ids=ids(PING_FILES))
def test_ping_fixture_for_its_own_repository(path: Path) -> None:
    """A ping for the configured repository (any case) or for an org hook is a Ping."""
    payload = load(path)
    named = payload.get("repository", {}).get("full_name")
    configured = named.upper() if named else REPOSITORY
    decision = decide_event(deliver(payload, event="ping"), configured, "main")
    assert decision == Ping(payload["zen"])


# --- real payloads: push ----------------------------------------------------------------------


@pytest.mark.parametrize("form", [False, True], ids=["json", "form"])
@pytest.mark.parametrize("branch", ["master", "main", None])
@pytest.mark.parametrize("path", TAG_DELETIONS, ids=ids(TAG_DELETIONS))
def test_tag_deletion_fixture_is_ignored(path: Path, branch: str | None, form: bool) -> None:
    """Deleting a tag never deploys: Ignore (answered 202) with a reason."""
    decision = decide_event(deliver(load(path), form=form), FIXTURE_REPOSITORY, branch)
    assert isinstance(decision, Ignore)
    assert "refs/tags/simple-tag" in decision.reason


@pytest.mark.parametrize("form", [False, True], ids=["json", "form"])
@pytest.mark.parametrize(
    ("repository", "branch"),
    [
        (FIXTURE_REPOSITORY, "master"),
        ("codertocat/hello-world", "master"),
        ("CODERTOCAT/HELLO-WORLD", "master"),
        (None, "master"),
        (FIXTURE_REPOSITORY, None),  # None: the payload's default_branch, "master"
    ],
)
@pytest.mark.parametrize("path", MASTER_CREATIONS, ids=ids(MASTER_CREATIONS))
def test_master_creation_fixture_deploys(
    path: Path, repository: str | None, branch: str | None, form: bool
) -> None:
    """Creating refs/heads/master deploys master of Codertocat/Hello-World."""
    payload = load(path)
    decision = decide_event(deliver(payload, form=form), repository, branch)
    assert isinstance(decision, Deploy)
    push = decision.push
    assert push.ref == "refs/heads/master"
    assert push.branch == "master"
    assert push.before == ZERO
    assert push.after == payload["after"] == SHA_A
    assert push.repository == FIXTURE_REPOSITORY
    assert push.default_branch == "master"
    assert push.pusher == payload["pusher"]["name"]
    assert push.deleted is False
    assert push.delivery_id == "72d3162e-cc78-11e3-81ab-4c9367dc0958"
    assert push.forge == "github"


@pytest.mark.parametrize("branch", ["main", "develop"])
@pytest.mark.parametrize("path", MASTER_CREATIONS, ids=ids(MASTER_CREATIONS))
def test_master_creation_fixture_ignored_for_other_branch(path: Path, branch: str) -> None:
    """A push to master is ignored by a target that deploys another branch."""
    decision = decide_event(deliver(load(path)), FIXTURE_REPOSITORY, branch)
    assert isinstance(decision, Ignore)
    assert "master" in decision.reason


# Every fixture as a ping or an issues event, and the push fixtures as pushes (a ping's
# payload sent as a push is a 400 before any repository is compared).
OTHER_REPOSITORY = [(path, event) for path in NAMES_A_REPOSITORY for event in
                    ("push", "ping", "issues") if event != "push" or path in PUSH_FILES]


@pytest.mark.parametrize(("path", "event"), OTHER_REPOSITORY,
                         ids=[f"{path.name}-{event}" for path, event in OTHER_REPOSITORY])
def test_fixture_for_another_repository_is_403(path: Path, event: str) -> None:
    """A delivery naming a repository other than the configured one is refused (403)."""
    with pytest.raises(WrongRepository) as info:
        decide_event(deliver(load(path), event=event), "octo-org/blog", "master")
    assert info.value.status == 403
    assert "octo-org/blog" in info.value.reason


# --- content types ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "content_type",
    [None, "", JSON_TYPE, "application/json; charset=utf-8", "Application/JSON",
     " application/json "],
)
def test_json_content_types(content_type: str | None) -> None:
    """JSON is read with or without parameters, in any case; no Content-Type means JSON."""
    payload = push_payload(SHA_B)
    body = json.dumps(payload, separators=(",", ":")).encode()
    assert parse_body(content_type, body) == payload


@pytest.mark.parametrize(
    "content_type", [FORM_TYPE, f"{FORM_TYPE}; charset=utf-8", FORM_TYPE.upper()]
)
def test_form_content_types(content_type: str) -> None:
    """Form bodies carry the JSON in their single ``payload`` field."""
    payload = push_payload(SHA_B)
    body = urlencode({"payload": json.dumps(payload, separators=(",", ":"))}).encode()
    assert parse_body(content_type, body) == payload


def test_form_payload_keeps_plus_and_unicode() -> None:
    """'+', '&', '=' and non-ASCII text survive form encoding."""
    payload = {"zen": "a+b & c=d \u00e9\u2603", "hook_id": 1}
    body, headers = signed(payload, event="ping", form=True)
    assert parse_body(headers["Content-Type"], body) == payload
    assert deliver(payload, event="ping", form=True) == forges.Ping(
        "github", "72d3162e-cc78-11e3-81ab-4c9367dc0958", None, payload["zen"])


def test_delivery_fields_from_http_headers() -> None:
    """The event and the delivery id come from case-insensitive headers."""
    body = json.dumps(push_payload(SHA_B), separators=(",", ":")).encode()
    headers = HTTPHeaders.parse(
        "content-type: application/json\r\n"
        "x-github-event: push\r\n"
        "x-github-delivery: 1234-abcd\r\n"
        f"x-hub-signature-256: {github.sign(SECRET, body)}\r\n"
    )
    event = read_github(headers, body, SECRET, LIMIT)
    assert isinstance(event, forges.Pushes)
    assert (event.forge, event.delivery_id, event.repository) == (
        "github", "1234-abcd", REPOSITORY)
    assert event.changes[0].delivery_id == "1234-abcd"


def test_missing_delivery_id_is_dash() -> None:
    body, headers = raw_request(b"{}", event="ping")
    del headers["X-GitHub-Delivery"]
    assert read_github(headers, body, SECRET, LIMIT).delivery_id == "-"


def test_sha1_only_delivery() -> None:
    """A delivery signed only with the legacy SHA-1 header is verified with SHA-1."""
    body, headers = signed(push_payload(SHA_B))
    del headers["X-Hub-Signature-256"]
    assert github.signature_header(headers) == github.SHA1_HEADER
    assert isinstance(read_github(headers, body, SECRET, LIMIT), forges.Pushes)


def test_body_at_the_limit_is_accepted() -> None:
    body, headers = signed(push_payload(SHA_B))
    assert isinstance(read_github(headers, body, SECRET, len(body)), forges.Pushes)


# --- errors of the forge path -----------------------------------------------------------------


def _form(text: str) -> tuple[bytes, HTTPHeaders]:
    return raw_request(text.encode(), content_type=FORM_TYPE)


def _compact(payload: Any) -> bytes:
    return json.dumps(payload, separators=(",", ":")).encode()


GOOD = _compact(push_payload(SHA_B))


def _too_large() -> tuple[bytes, HTTPHeaders, int]:
    body, headers = raw_request(GOOD)
    return body, headers, len(body) - 1


def _too_large_unsigned() -> tuple[bytes, HTTPHeaders, int]:
    body, headers = raw_request(GOOD)
    del headers["X-Hub-Signature-256"]
    return body, headers, 10


def _tampered() -> tuple[bytes, HTTPHeaders, int]:
    body, headers = raw_request(GOOD)
    return body.replace(b"octocat", b"mallory"), headers, LIMIT


def _unsigned() -> tuple[bytes, HTTPHeaders, int]:
    body, headers = raw_request(GOOD)
    del headers["X-Hub-Signature-256"]
    return body, headers, LIMIT


def _wrong_secret() -> tuple[bytes, HTTPHeaders, int]:
    body, headers = raw_request(GOOD)
    headers["X-Hub-Signature-256"] = github.sign(b"not the secret", body)
    return body, headers, LIMIT


def _unsigned_garbage() -> tuple[bytes, HTTPHeaders, int]:
    body, headers = raw_request(b"\xff\xfe[[[")
    headers["X-Hub-Signature-256"] = github.sign(SECRET, b"something else")
    return body, headers, LIMIT


def _with(body: bytes, **kwargs: Any) -> tuple[bytes, HTTPHeaders, int]:
    return (*raw_request(body, **kwargs), LIMIT)


def _with_form(text: str) -> tuple[bytes, HTTPHeaders, int]:
    return (*_form(text), LIMIT)


DEEP = "[" * 100_000
ERRORS: list[tuple[str, tuple[bytes, HTTPHeaders, int], type[DeliveryError], int]] = [
    ("body too large", _too_large(), BodyTooLarge, 413),
    ("too large is checked before the signature", _too_large_unsigned(), BodyTooLarge, 413),
    ("tampered body", _tampered(), Mismatch, 401),
    ("no signature", _unsigned(), SignatureError, 401),
    ("wrong secret", _wrong_secret(), Mismatch, 401),
    ("signature is checked before parsing", _unsigned_garbage(), Mismatch, 401),
    ("missing X-GitHub-Event", _with(GOOD, event=None), MalformedDelivery, 400),
    ("empty X-GitHub-Event", _with(GOOD, event=""), MalformedDelivery, 400),
    ("not UTF-8", _with(b'{"zen":"\xff\xfe"}'), MalformedDelivery, 400),
    ("latin-1 body", _with('{"zen":"caf\u00e9"}'.encode("latin-1")), MalformedDelivery, 400),
    ("empty body", _with(b""), MalformedDelivery, 400),
    ("truncated JSON", _with(GOOD[:-1]), MalformedDelivery, 400),
    ("half the JSON", _with(GOOD[: len(GOOD) // 2]), MalformedDelivery, 400),
    ("not JSON", _with(b"ref=refs/heads/main"), MalformedDelivery, 400),
    ("JSON array", _with(b"[]"), MalformedDelivery, 400),
    ("JSON array of an object", _with(b"[" + GOOD + b"]"), MalformedDelivery, 400),
    ("JSON null", _with(b"null"), MalformedDelivery, 400),
    ("JSON string", _with(b'"push"'), MalformedDelivery, 400),
    ("JSON number", _with(b"42"), MalformedDelivery, 400),
    ("two JSON objects", _with(GOOD + GOOD), MalformedDelivery, 400),
    ("integer over the int digit limit", _with(b'{"hook_id":' + b"9" * 5000 + b"}"),
     MalformedDelivery, 400),
    ("deeply nested arrays", _with(DEEP.encode()), MalformedDelivery, 400),
    ("deeply nested objects", _with(('{"a":' * 100_000).encode()), MalformedDelivery, 400),
    ("deeply nested but closed", _with(b"[" * 50_000 + b"]" * 50_000), MalformedDelivery, 400),
    ("deeply nested in a form", _with_form("payload=" + quote(DEEP)), MalformedDelivery, 400),
    ("form without payload", _with_form("foo=bar"), MalformedDelivery, 400),
    ("empty form", _with_form(""), MalformedDelivery, 400),
    ("form field without '='", _with_form("payload"), MalformedDelivery, 400),
    ("duplicate payload fields",
     _with_form("payload=" + quote(GOOD.decode()) + "&payload=" + quote(GOOD.decode())),
     MalformedDelivery, 400),
    ("duplicate payload, second empty", _with_form("payload=" + quote(GOOD.decode()) + "&payload="),
     MalformedDelivery, 400),
    ("form payload not JSON", _with_form("payload=hello"), MalformedDelivery, 400),
    ("form payload empty", _with_form("payload="), MalformedDelivery, 400),
    ("form payload JSON array", _with_form("payload=%5B%5D"), MalformedDelivery, 400),
    ("JSON sent as form", _with(GOOD, content_type=FORM_TYPE), MalformedDelivery, 400),
    ("form sent as JSON",
     _with(("payload=" + quote(GOOD.decode())).encode(), content_type=JSON_TYPE),
     MalformedDelivery, 400),
    ("text/plain", _with(GOOD, content_type="text/plain"), UnsupportedMediaType, 415),
    ("multipart", _with(GOOD, content_type="multipart/form-data; boundary=x"),
     UnsupportedMediaType, 415),
    ("application/xml", _with(GOOD, content_type="application/xml"), UnsupportedMediaType, 415),
    ("json suffix type", _with(GOOD, content_type="application/vnd.github+json"),
     UnsupportedMediaType, 415),
]


@pytest.mark.parametrize(
    ("request_", "error", "status"),
    [case[1:] for case in ERRORS],
    ids=[case[0] for case in ERRORS],
)
def test_github_delivery_errors(
    request_: tuple[bytes, HTTPHeaders, int], error: type[DeliveryError], status: int
) -> None:
    """Each bad delivery raises its typed error carrying the HTTP status to answer."""
    body, headers, limit = request_
    with pytest.raises(DeliveryError) as info:
        read_github(headers, body, SECRET, limit)
    assert type(info.value) is error
    assert info.value.status == status
    assert info.value.reason
    assert SECRET.decode() not in info.value.reason


# --- push payloads ----------------------------------------------------------------------------


def _edit(path: str, value: Any) -> dict[str, Any]:
    """push_payload(SHA_B) with the dotted ``path`` set to ``value`` (or removed: ...)."""
    payload = copy.deepcopy(push_payload(SHA_B, before=SHA_A))
    *parents, last = path.split(".")
    target = payload
    for key in parents:
        target = target[key]
    if value is ...:
        del target[last]
    else:
        target[last] = value
    return payload


BAD_PUSHES: list[tuple[str, str, Any]] = [
    ("missing ref", "ref", ...),
    ("missing before", "before", ...),
    ("missing after", "after", ...),
    ("missing repository", "repository", ...),
    ("missing full_name", "repository.full_name", ...),
    ("ref null", "ref", None),
    ("ref number", "ref", 1),
    ("ref list", "ref", ["refs/heads/main"]),
    ("after number", "after", 0),
    ("after null", "after", None),
    ("before list", "before", [SHA_A]),
    ("repository string", "repository", REPOSITORY),
    ("repository list", "repository", [REPOSITORY]),
    ("full_name number", "repository.full_name", 42),
    ("full_name null", "repository.full_name", None),
    ("after short", "after", "abc123"),
    ("after 39 hex", "after", SHA_B[:-1]),
    ("after 41 hex", "after", SHA_B + "0"),
    ("after not hex", "after", "g" * 40),
    ("after empty", "after", ""),
    ("after with newline", "after", SHA_B + "\n"),
    ("after with spaces", "after", f" {SHA_B} "),
    ("after branch name", "after", "main"),
    ("before not hex", "before", "z" * 40),
    ("ref with ..", "ref", "refs/heads/../../etc/passwd"),
    ("ref with .. inside", "ref", "refs/heads/a..b"),
    ("ref with space", "ref", "refs/heads/my branch"),
    ("ref with tab", "ref", "refs/heads/my\tbranch"),
    ("ref with newline", "ref", "refs/heads/main\n"),
    ("ref with NUL", "ref", "refs/heads/ma\x00in"),
    ("ref with escape", "ref", "refs/heads/\x1b[31mmain"),
    ("ref with DEL", "ref", "refs/heads/main\x7f"),
    ("ref with tilde", "ref", "refs/heads/main~1"),
    ("ref with caret", "ref", "refs/heads/main^"),
    ("ref with colon", "ref", "refs/heads/a:b"),
    ("ref with glob", "ref", "refs/heads/*"),
    ("ref with backslash", "ref", "refs/heads\\main"),
    ("ref option-like", "ref", "--upload-pack=touch /tmp/x"),
    ("ref without refs/", "ref", "main"),
    ("ref heads/ only", "ref", "heads/main"),
    ("ref empty", "ref", ""),
]


@pytest.mark.parametrize(
    ("path", "value"), [case[1:] for case in BAD_PUSHES], ids=[case[0] for case in BAD_PUSHES]
)
def test_bad_push_is_400(path: str, value: Any) -> None:
    """A signed push with a missing, ill-typed or unsafe field is refused with 400."""
    with pytest.raises(MalformedDelivery) as info:
        deliver(_edit(path, value))
    assert info.value.status == 400
    assert info.value.reason.startswith("github push ")


def test_github_push_facts() -> None:
    """A push is parsed into the facts a deploy needs, from a real signed delivery."""
    delivery_id = "72d3162e-cc78-11e3-81ab-4c9367dc0958"
    push = Push(ref="refs/heads/main", before=SHA_A, after=SHA_B, deleted=False,
                repository=REPOSITORY, default_branch="main", pusher="hubot",
                delivery_id=delivery_id, forge="github")
    assert deliver(push_payload(SHA_B, before=SHA_A, pusher="hubot")) == forges.Pushes(
        "github", delivery_id, REPOSITORY, (push,))


@pytest.mark.parametrize(
    ("path", "value", "attribute", "expected"),
    [
        ("pusher", ..., "pusher", "unknown"),
        ("pusher", "octocat", "pusher", "unknown"),
        ("pusher.name", 7, "pusher", "unknown"),
        ("repository.default_branch", ..., "default_branch", None),
        ("repository.default_branch", 3, "default_branch", None),
        ("after", "a" * 64, "after", "a" * 64),  # SHA-256 repositories
        ("deleted", True, "deleted", True),
    ],
)
def test_github_push_optional_fields(path: str, value: Any, attribute: str,
                                    expected: Any) -> None:
    """Optional fields fall back to safe values instead of failing."""
    event = deliver(_edit(path, value))
    assert isinstance(event, forges.Pushes)
    assert getattr(event.changes[0], attribute) == expected


# --- decisions on pushes built from the schema ------------------------------------------------


def _payload(**changes: Any) -> dict[str, Any]:
    payload = push_payload(SHA_B, before=SHA_A)
    repo_changes = {k: changes.pop(k) for k in ("default_branch", "full_name") if k in changes}
    payload["repository"].update(repo_changes)
    payload.update(changes)
    return payload


DECISIONS: list[tuple[str, dict[str, Any], str, str | None, str | None, type]] = [
    ("update of the deployed branch", _payload(), "push", REPOSITORY, "main", Deploy),
    ("any repository when none configured", _payload(), "push", None, "main", Deploy),
    ("repository case-insensitive", _payload(), "push", "Octo-Org/Blog", "main", Deploy),
    ("branch None: default branch", _payload(), "push", REPOSITORY, None, Deploy),
    ("branch '' counts as None", _payload(), "push", REPOSITORY, "", Deploy),
    ("branch None, other default", _payload(default_branch="develop"), "push", REPOSITORY,
     None, Ignore),
    ("branch None, push to default", _payload(default_branch="develop", ref="refs/heads/develop"),
     "push", REPOSITORY, None, Deploy),
    ("push to another branch", _payload(ref="refs/heads/feature"), "push", REPOSITORY, "main",
     Ignore),
    ("branch names are case-sensitive", _payload(ref="refs/heads/Main"), "push", REPOSITORY,
     "main", Ignore),
    ("tag push", _payload(ref="refs/tags/v1.0"), "push", REPOSITORY, "main", Ignore),
    ("tag named like the branch", _payload(ref="refs/tags/main"), "push", REPOSITORY, "main",
     Ignore),
    ("branch deletion", _payload(after=ZERO, deleted=True), "push", REPOSITORY, "main", Ignore),
    ("branch deletion without 'deleted'", _payload(after=ZERO, deleted=False), "push", REPOSITORY,
     "main", Ignore),
    ("branch creation", _payload(before=ZERO, created=True), "push", REPOSITORY, "main", Deploy),
    ("issues event", _payload(), "issues", REPOSITORY, "main", Ignore),
    ("create event", _payload(), "create", REPOSITORY, "main", Ignore),
    ("issues event without repository", {"action": "opened"}, "issues", REPOSITORY, "main",
     Ignore),
    ("ping without zen", {"hook_id": 1}, "ping", REPOSITORY, "main", Ping),
]


@pytest.mark.parametrize(
    ("payload", "event", "repository", "branch", "kind"),
    [case[1:] for case in DECISIONS],
    ids=[case[0] for case in DECISIONS],
)
def test_decide_event(
    payload: dict[str, Any], event: str, repository: str | None, branch: str | None, kind: type
) -> None:
    """decide_event() deploys only pushes to the wanted branch; everything else is ignored."""
    decision: Decision = decide_event(deliver(payload, event=event), repository, branch)
    assert type(decision) is kind
    if isinstance(decision, Ignore):
        assert decision.reason
    if isinstance(decision, Deploy):
        assert decision.push.after == payload["after"]


def test_branch_none_uses_default_branch() -> None:
    """With branch None the repository's default_branch is the deployed one."""
    payload = _payload(default_branch="trunk", ref="refs/heads/trunk")
    decision = decide_event(deliver(payload), REPOSITORY, None)
    assert isinstance(decision, Deploy)
    assert decision.push.branch == "trunk"
    ignored = decide_event(deliver(_payload(default_branch="trunk")), REPOSITORY, None)
    assert isinstance(ignored, Ignore)
    assert "trunk" in ignored.reason


def test_branch_deletion_reason() -> None:
    """Deleting the deployed branch keeps the checkout and says so."""
    decision = decide_event(deliver(_payload(after=ZERO, deleted=True)), REPOSITORY, "main")
    assert isinstance(decision, Ignore)
    assert "deleted" in decision.reason


@pytest.mark.parametrize("event", ["push", "issues", "ping"])
def test_other_repository_is_403(event: str) -> None:
    """The repository check applies to every event that names a repository."""
    delivery = deliver(_payload(full_name="someone/else"), event=event)
    with pytest.raises(WrongRepository) as info:
        decide_event(delivery, REPOSITORY, "main")
    assert info.value.status == 403
    assert "someone/else" in info.value.reason


def test_other_event_reason_names_event() -> None:
    decision = decide_event(deliver(_payload(), event="issues"), REPOSITORY, "main")
    assert isinstance(decision, Ignore)
    assert "issues" in decision.reason
