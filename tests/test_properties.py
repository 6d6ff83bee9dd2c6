"""Property tests (hypothesis) of a GitHub delivery's path through the daemon's pure
functions: the size check, ``forges.verify``, ``parse_body``, ``forges.parse`` and
``rules.decide_event`` (chained as the daemon does by ``tests.helpers.read_github``).

- Arbitrary headers and bytes never raise anything but a DeliveryError subclass.
- A delivery is accepted if and only if its signature is the HMAC of the exact body
  with the secret (computed here with ``hmac`` directly, not with deployhook's ``sign``).
- ``forges.parse`` and ``decide_event`` never raise anything but a DeliveryError for
  any JSON object, and a Deploy decision only ever carries a safe ref and a hex SHA.

Each property is bounded (a few hundred examples, no deadline) so the file runs in
seconds; no example database is written (failures print their falsifying example).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from typing import Any
from urllib.parse import urlencode

from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from tornado.httputil import HTTPHeaders

from deployhook import forges
from deployhook.errors import DeliveryError, MalformedDelivery, SignatureError
from deployhook.forges.delivery import parse_body
from deployhook.service.rules import Deploy, Ignore, Ping, decide_event
from tests.helpers import REPOSITORY, push_payload, read_github

BOUNDED = settings(max_examples=200, deadline=None, database=None,
                   suppress_health_check=[HealthCheck.too_slow])
LIMIT = 1 << 20
H256, H1 = "X-Hub-Signature-256", "X-Hub-Signature"
HEADER_NAMES = [H256, H1, "X-GitHub-Event", "X-GitHub-Delivery", "Content-Type",
                "x-hub-signature-256", "CONTENT-TYPE", "X-Other"]
CONTENT_TYPES = ["application/json", "application/x-www-form-urlencoded", "text/plain",
                 "application/json; charset=utf-8", "APPLICATION/X-WWW-FORM-URLENCODED", "",
                 ";", "application/json;;;", "multipart/form-data; boundary=x"]
EVENTS = ["push", "ping", "issues", "PUSH", "", "create", "push\x00"]
SAFE_REF = re.compile(r"refs/heads/[^\x00-\x20\x7f~^:?*\[\\]+")
SHA = re.compile(r"[0-9a-f]{40}|[0-9a-f]{64}")


def mac(secret: bytes, body: bytes, algorithm: str = "sha256") -> str:
    """The header value GitHub sends, computed independently of deployhook."""
    digest = hmac.new(secret, body, getattr(hashlib, algorithm)).hexdigest()
    return f"{algorithm}={digest}"


# --- strategies ----------------------------------------------------------------------------

json_scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text()
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                max_size=4),
    max_leaves=12)
json_objects = st.dictionaries(st.text(max_size=12), json_values, max_size=6)

hexes = st.text(alphabet="0123456789abcdefABCDEF", min_size=0, max_size=70)
signature_values = st.one_of(
    st.text(max_size=80),
    st.builds(lambda algo, digest: f"{algo}={digest}",
              st.sampled_from(["sha256", "sha1", "SHA256", "md5", ""]), hexes),
)
header_values = st.one_of(signature_values, st.sampled_from(CONTENT_TYPES),
                          st.sampled_from(EVENTS), st.text(max_size=40))
header_maps = st.dictionaries(st.sampled_from(HEADER_NAMES) | st.text(min_size=1, max_size=20),
                              header_values, max_size=6)
bodies = st.one_of(
    st.binary(max_size=300),
    json_objects.map(lambda o: json.dumps(o).encode()),
    json_values.map(lambda v: json.dumps(v).encode()),
    json_objects.map(lambda o: urlencode({"payload": json.dumps(o)}).encode()),
    st.builds(lambda n: b"[" * n + b"]" * n, st.integers(0, 5000)),
)
secrets = st.binary(min_size=1, max_size=64)


def fields_near_valid() -> st.SearchStrategy[dict[str, Any]]:
    """Push payloads with one or more fields replaced by arbitrary JSON (or removed)."""
    keys = ["ref", "before", "after", "repository", "deleted", "pusher", "commits"]
    replacement = st.one_of(
        json_values,
        st.sampled_from(["refs/heads/main", "refs/heads/../main", "refs/tags/main", "main",
                         "0" * 40, "a" * 40, "A" * 40, "a" * 64, "refs/heads/ma in", ""]),
        st.builds(lambda name: {"full_name": name, "default_branch": "main"}, json_values),
    )

    def build(after: str, edits: dict[str, Any], removed: list[str]) -> dict[str, Any]:
        payload = push_payload(after)
        payload.update(edits)
        for key in removed:
            payload.pop(key, None)
        return payload

    return st.builds(build, st.sampled_from(["a" * 40, "0" * 40, "0123456789abcdef" * 4]),
                     st.dictionaries(st.sampled_from(keys), replacement, max_size=3),
                     st.lists(st.sampled_from(keys), max_size=2))


payload_objects = st.one_of(json_objects, fields_near_valid())


# --- verify and parse: never anything but a DeliveryError ----------------------------------


@BOUNDED
@given(headers=header_maps, body=bodies, secret=secrets,
       limit=st.sampled_from([0, 10, LIMIT]), tornado_headers=st.booleans())
def test_arbitrary_requests_raise_only_delivery_errors(
        headers: dict[str, str], body: bytes, secret: bytes, limit: int,
        tornado_headers: bool) -> None:
    """Arbitrary header maps and bytes: an Event or a DeliveryError, never anything else."""
    mapping: Any = HTTPHeaders(headers) if tornado_headers else headers
    try:
        event = read_github(mapping, body, secret, limit)
    except DeliveryError as exc:
        assert 400 <= exc.status < 600 and exc.reason
        return
    decide_safely(event)


@BOUNDED
@given(headers=header_maps, body=bodies, secret=secrets,
       content_type=st.sampled_from(CONTENT_TYPES) | st.text(max_size=30),
       event=st.sampled_from(EVENTS) | st.text(max_size=10))
def test_signed_arbitrary_bodies_raise_only_delivery_errors(
        headers: dict[str, str], body: bytes, secret: bytes, content_type: str,
        event: str) -> None:
    """Correctly signed arbitrary bodies reach the parser: still only DeliveryErrors."""
    sent = HTTPHeaders(headers)
    sent[H256] = mac(secret, body)
    sent["Content-Type"] = content_type
    sent["X-GitHub-Event"] = event
    try:
        event = read_github(sent, body, secret, LIMIT)
    except SignatureError as exc:  # pragma: no cover - the property's failure
        raise AssertionError(f"a correct signature was refused: {exc.reason}") from exc
    except DeliveryError as exc:
        assert exc.status in (400, 415) and exc.reason
        return
    assert isinstance(event, (forges.Pushes, forges.Ping, forges.Other))
    decide_safely(event)


# --- acceptance iff the signature is correct -----------------------------------------------


def _flip_byte(body: bytes, index: int, delta: int) -> bytes:
    i = index % len(body)
    return body[:i] + bytes([(body[i] + delta) % 256]) + body[i + 1:]


def _change_digit(value: str, index: int, delta: int) -> str:
    """Change one hex digit to another *value* (a case change would be the same MAC)."""
    algorithm, _, digest = value.partition("=")
    i = index % len(digest)
    new = "0123456789abcdef"[(int(digest[i], 16) + delta) % 16]
    return f"{algorithm}={digest[:i]}{new}{digest[i + 1:]}"


MUTATIONS = ["none", "body byte", "body extended", "body truncated", "hex digit",
             "other secret", "digit case", "sha1 header only", "sha1 only, hex digit",
             "secret with newline"]


@settings(max_examples=400, deadline=None, database=None)
@given(payload=json_objects, secret=secrets, mutation=st.sampled_from(MUTATIONS),
       index=st.integers(0, 10_000), delta=st.integers(1, 15), form=st.booleans())
def test_accepted_iff_correctly_signed(payload: dict[str, Any], secret: bytes, mutation: str,
                                       index: int, delta: int, form: bool) -> None:
    """Sign some bodies correctly and mutate others by one byte or one hex digit:
    a delivery is accepted exactly when its signature is right."""
    body = json.dumps(payload).encode()
    content_type = "application/json"
    if form:
        body, content_type = urlencode({"payload": body}).encode(), \
            "application/x-www-form-urlencoded"
    headers = {"X-GitHub-Event": "ping", "Content-Type": content_type,
               H256: mac(secret, body), H1: mac(secret, body, "sha1")}
    sent, key = body, secret
    correct = mutation in ("none", "digit case", "sha1 header only")
    if mutation == "body byte":
        sent = _flip_byte(body, index, delta)
    elif mutation == "body extended":
        sent = body + b" "
    elif mutation == "body truncated":
        sent = body[:-1]
    elif mutation == "hex digit":
        headers[H256] = _change_digit(headers[H256], index, delta)
    elif mutation == "other secret":
        key = _flip_byte(secret, index, delta)
    elif mutation == "digit case":
        headers[H256] = headers[H256].upper().replace("SHA256=", "sha256=")
    elif mutation == "sha1 header only":
        del headers[H256]
    elif mutation == "sha1 only, hex digit":
        del headers[H256]
        headers[H1] = _change_digit(headers[H1], index, delta)
    elif mutation == "secret with newline":
        key = secret + b"\n"
    try:
        event = read_github(HTTPHeaders(headers), sent, key, LIMIT)
    except SignatureError:
        assert not correct, f"{mutation}: a correct signature was refused"
        return
    except MalformedDelivery:
        # Only reachable past the signature check: the mutated bytes still verified.
        assert correct and mutation != "none", mutation
        return
    assert correct, f"{mutation}: accepted with a wrong signature"
    assert isinstance(event, forges.Ping)
    assert parse_body(content_type, sent) == payload


# --- parse and decide_event ----------------------------------------------------------------


def decide_safely(event: forges.Event) -> None:
    """decide_event() for a few targets: a Decision or a 403, and safe Deploys only."""
    for repository, branch in ((REPOSITORY, "main"), (None, None), ("", ""), ("x/y", "dev")):
        try:
            decision = decide_event(event, repository, branch)
        except DeliveryError as exc:
            assert exc.status == 403 and exc.reason
            continue
        assert isinstance(decision, (Ping, Ignore, Deploy))
        if isinstance(decision, Deploy):
            push = decision.push
            assert SAFE_REF.fullmatch(push.ref) and ".." not in push.ref, push.ref
            assert SHA.fullmatch(push.after) and push.after != "0" * 40, push.after
            assert push.branch == (branch or push.default_branch)


@BOUNDED
@given(payload=payload_objects, event=st.sampled_from(EVENTS) | st.text(max_size=8),
       delivery_id=st.text(max_size=20))
def test_decide_raises_only_delivery_errors(payload: dict[str, Any], event: str,
                                            delivery_id: str) -> None:
    """parse and decide_event() on any JSON object and event: a Decision or a
    DeliveryError (400 from parse, 403 from decide_event)."""
    headers = {"X-GitHub-Event": event, "X-GitHub-Delivery": delivery_id}
    try:
        parsed = forges.parse("github", headers, payload)
    except MalformedDelivery as exc:
        assert exc.status == 400 and exc.reason
        return
    decide_safely(parsed)


@BOUNDED
@given(payload=payload_objects)
def test_github_push_parse_raises_only_malformed(payload: dict[str, Any]) -> None:
    """forges.parse() of any JSON object as a push: one Push with well-formed fields,
    or a 400."""
    try:
        event = forges.parse("github", {"X-GitHub-Event": "push"}, payload)
    except MalformedDelivery as exc:
        assert exc.status == 400 and exc.reason.startswith("github push ")
        return
    assert isinstance(event, forges.Pushes) and len(event.changes) == 1
    push = event.changes[0]
    assert push.ref.startswith("refs/") and ".." not in push.ref
    assert SHA.fullmatch(push.before) and SHA.fullmatch(push.after)
    assert isinstance(push.repository, str) and isinstance(push.pusher, str)
    assert push.deleted == (payload.get("deleted") is True or push.after == "0" * 40)


@BOUNDED
@given(payload=json_objects, secret=secrets)
def test_json_and_form_bodies_agree(payload: dict[str, Any], secret: bytes) -> None:
    """The same JSON object, sent as JSON or as a form's payload field, reads the same."""
    read = []
    for body, content_type in (
            (json.dumps(payload).encode(), "application/json"),
            (urlencode({"payload": json.dumps(payload)}).encode(),
             "application/x-www-form-urlencoded")):
        headers = HTTPHeaders({"X-GitHub-Event": "push", "Content-Type": content_type,
                               H256: mac(secret, body)})
        assert forges.verify("github", [secret], headers, body) == 0
        read.append(parse_body(headers.get("Content-Type"), body))
    assume(read[0] == read[0])  # NaN-free by construction; keeps the comparison meaningful
    assert read[0] == read[1] == payload
