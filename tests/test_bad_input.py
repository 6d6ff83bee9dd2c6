"""Every bad input the webhook can receive, through the real daemon on a raw socket.

One ``python -m deployhook serve`` subprocess (tests.helpers.Daemon) deploys a real
checkout for the whole module.  Each row of ``CASES`` is written byte for byte on a
fresh TCP connection (no HTTP client normalises it), and the test checks:

- the status of every answer on that connection, and its short JSON ``reason``
  (Tornado's own answer to broken HTTP framing is a bare ``400`` without a body);
- no deploy: the deployed clone fetched nothing and its HEAD did not move, even
  though each bad delivery names a commit that *is* on origin and would deploy;
- the daemon is still alive and answers ``GET /health``.

A few rows are valid deliveries that must deploy in spite of an odd shape (upper-case
signature hex, 2048 or 100 000 commits); they check the deploy instead.
docs/reliability-input.rst lists every row with its answer.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import re
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import quote

import pytest
from tornado.testing import gen_test

from deployhook.forges.github import sign
from tests.apptest import HookTestCase
from tests.helpers import (
    REPOSITORY,
    SECRET,
    Daemon,
    Repos,
    free_port,
    http,
    make_repos,
    push_payload,
    write_config,
)

JSON = "application/json"
FORM = "application/x-www-form-urlencoded"
LIMIT = 26 * 1024 * 1024  # the default max_body_size
SIGN = "<sign>"  # header placeholder: the correct signature of the body sent
DROP = object()  # payload edit: remove the key
DOC = Path(__file__).parent.parent / "docs" / "reliability-input.rst"

# The answers' reasons, as deployhook words them (fragments).
MISSING_SIG = "missing X-Hub-Signature-256 header"
MALFORMED_256 = "malformed X-Hub-Signature-256 header: expected 'sha256=<hex digest>'"
BAD_HEX_256 = "malformed X-Hub-Signature-256 header: expected 64 hex digits"
MALFORMED_1 = "malformed X-Hub-Signature header: expected 'sha1=<hex digest>'"
MISMATCH_256 = "X-Hub-Signature-256 does not match the body"
MISMATCH_1 = "X-Hub-Signature does not match the body"
NOT_JSON = "payload is not valid JSON"
NOT_OBJECT = "payload is not a JSON object"
NOT_UTF8 = "body is not UTF-8"
BAD_REF = "github push 'ref' is not a valid git ref"
BAD_AFTER = "github push 'after' is not a hex commit SHA"
NO_REF = "github push 'ref' is missing or not a string"
NO_REPOSITORY = "github push names no repository"
ONE_PAYLOAD = "form body needs exactly one 'payload' field"
NOT_FOUND = "not found"
NOT_ALLOWED = "Method Not Allowed"
BARE = None  # Tornado's "HTTP/1.1 400 Bad Request" with no body: broken HTTP framing


# --- the daemon and the state each case starts from ----------------------------------------


@dataclass
class Target:
    """The module's daemon and its repositories."""

    daemon: Daemon
    repos: Repos

    @property
    def port(self) -> int:
        return self.daemon.port

    def head(self) -> str:
        return self.repos.head(self.repos.deployed)


@dataclass(frozen=True)
class Ctx:
    """What a case builds its request from: a pushed, not yet deployed commit."""

    pending: str
    head: str


@pytest.fixture(scope="module")
def target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Target]:
    """A real daemon (reload none) deploying a real clone, for the whole module."""
    root = tmp_path_factory.mktemp("bad-input")
    repos = make_repos(root)
    (root / "secret.txt").write_bytes(SECRET + b"\n")
    port = free_port()
    config = write_config(
        root / "config.py", repo_path=str(repos.deployed), secret_file=str(root / "secret.txt"),
        repository=REPOSITORY, reload="none", port=port, git_timeout=30.0,
        state_db=str(root / "state.sqlite3"), log_level="info")
    daemon = Daemon(config, port)
    try:
        daemon.wait_ready()
        yield Target(daemon, repos)
    finally:
        daemon.stop()


# --- building raw requests -----------------------------------------------------------------


def http_request(method: str, path: str, headers: Sequence[tuple[str, str]], body: bytes,
                 length: int | str | None = "auto", close: bool = True) -> bytes:
    """One HTTP/1.1 request as raw bytes; ``length`` "auto" is the true Content-Length."""
    lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1"]
    lines += [f"{name}: {value}" for name, value in headers]
    if length == "auto":
        lines.append(f"Content-Length: {len(body)}")
    elif length is not None:
        lines.append(f"Content-Length: {length}")
    if close:
        lines.append("Connection: close")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def delivery(body: bytes, *, event: str | None = "push", content_type: str | None = JSON,
             sig256: str | None = SIGN, sig1: str | None = SIGN,
             extra: Sequence[tuple[str, str]] = (), method: str = "POST", path: str = "/github",
             length: int | str | None = "auto", close: bool = True,
             signed_body: bytes | None = None) -> bytes:
    """A delivery as GitHub sends it; SIGN headers sign ``signed_body`` (default: ``body``)."""
    mac_of = body if signed_body is None else signed_body
    headers: list[tuple[str, str]] = [("User-Agent", "GitHub-Hookshot/044aadd"),
                                      ("X-GitHub-Delivery", str(uuid.uuid4()))]
    if event is not None:
        headers.append(("X-GitHub-Event", event))
    if content_type is not None:
        headers.append(("Content-Type", content_type))
    for name, value, algorithm in (("X-Hub-Signature", sig1, "sha1"),
                                   ("X-Hub-Signature-256", sig256, "sha256")):
        if value is not None:
            headers.append((name, sign(SECRET, mac_of, algorithm) if value == SIGN else value))
    return http_request(method, path, [*headers, *extra], body, length, close)


def compact(payload: Any) -> bytes:
    return json.dumps(payload, separators=(",", ":")).encode()


def push(ctx: Ctx, edits: dict[str, Any] | None = None) -> dict[str, Any]:
    """A valid push of ``ctx.pending``, with dotted-path ``edits`` (DROP removes a key)."""
    payload = push_payload(ctx.pending, before=ctx.head)
    for path, value in (edits or {}).items():
        *parents, last = path.split(".")
        node = payload
        for key in parents:
            node = node[key]
        if value is DROP:
            del node[last]
        else:
            node[last] = value
    return payload


def push_bytes(ctx: Ctx, edits: dict[str, Any] | None = None) -> bytes:
    return compact(push(ctx, edits))


def good(ctx: Ctx) -> bytes:
    return push_bytes(ctx)


def mac(body: bytes, algorithm: str = "sha256") -> str:
    return sign(SECRET, body, algorithm).partition("=")[2]


def form(text: str) -> bytes:
    return text.encode()


def commits(ctx: Ctx, count: int) -> bytes:
    """A push of ``ctx.pending`` with ``count`` small commit entries."""
    entry = {"id": ctx.pending, "distinct": True, "message": "update post.rst",
             "modified": ["post.rst"]}
    return compact(push(ctx, {"commits": [entry] * count}))


def nested(depth: int) -> bytes:
    return b'{"a":' * depth + b"1" + b"}" * depth


def chunked(body: bytes, size: int = 1 << 16) -> bytes:
    return b"".join(b"%x\r\n%s\r\n" % (len(body[i:i + size]), body[i:i + size])
                    for i in range(0, len(body), size)) + b"0\r\n\r\n"


# --- cases ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Sent:
    """What goes on the wire: the bytes, then optionally a pause and a half-close."""

    data: bytes
    shutdown: bool = False  # half-close after sending: the server reads EOF
    hold: float = 0.0  # seconds during which no answer may arrive (then half-close)


@dataclass(frozen=True)
class Case:
    """One bad input: the request and every answer expected on its connection."""

    name: str
    build: Callable[[Ctx], Sent | bytes]
    answers: tuple[tuple[int, str | None], ...]  # (status, reason fragment or BARE)
    deploys: bool = False


def case(name: str, build: Callable[[Ctx], Sent | bytes], status: int | None,
         reason: str | None = BARE, **kwargs: Any) -> Case:
    """A row with one answer (or none when ``status`` is None: closed without answer)."""
    answers = () if status is None else ((status, reason),)
    return Case(name, build, answers, **kwargs)


def sig_case(name: str, sig256: str | None, sig1: str | None, status: int, reason: str,
             **kwargs: Any) -> Case:
    """A valid push whose signature headers are replaced."""
    return case(name, lambda c: delivery(good(c), sig256=sig256, sig1=sig1), status, reason,
                **kwargs)


def body_case(name: str, body: Callable[[Ctx], bytes], status: int, reason: str,
              content_type: str | None = JSON, event: str = "push", **kwargs: Any) -> Case:
    """A correctly signed delivery whose body (or content type) is bad."""
    return case(name, lambda c: delivery(body(c), content_type=content_type, event=event),
                status, reason, **kwargs)


def edit_case(name: str, edits: dict[str, Any], status: int, reason: str) -> Case:
    """A correctly signed push with one field missing or wrong."""
    return body_case(name, lambda c: push_bytes(c, edits), status, reason)


def path_case(name: str, path: str, method: str = "POST") -> Case:
    """A signed, valid push to an odd path: 404, nothing deployed."""
    return case(f"path {name}", lambda c: delivery(good(c), path=path, method=method), 404,
                NOT_FOUND)


def method_case(method: str, reason: str | None = NOT_ALLOWED) -> Case:
    """A signed, valid push with another method on the webhook path: 405."""
    return case(f"method {method}", lambda c: delivery(good(c), method=method), 405, reason)


def _sha1_right_sha256_wrong(c: Ctx) -> bytes:
    return delivery(good(c), sig256="sha256=" + "0" * 64)


def _two_sig_headers(c: Ctx) -> bytes:
    body = good(c)
    return delivery(body, extra=[("X-Hub-Signature-256", sign(SECRET, body))])


def _two_sigs_one_header(c: Ctx) -> bytes:
    body = good(c)
    return delivery(body, sig256=f"{sign(SECRET, body)},{sign(SECRET, body)}")


def _good_and_bad_sig(c: Ctx) -> bytes:
    body = good(c)
    return delivery(body, sig256="sha256=" + "0" * 64,
                    extra=[("X-Hub-Signature-256", sign(SECRET, body))])


def _upper_hex(c: Ctx) -> bytes:
    body = good(c)
    return delivery(body, sig256="sha256=" + mac(body).upper(), sig1=None)


def _upper_algorithm(c: Ctx) -> bytes:
    body = good(c)
    return delivery(body, sig256="SHA256=" + mac(body), sig1=None)


def _sha256_in_sha1_header(c: Ctx) -> bytes:
    body = good(c)
    return delivery(body, sig256=None, sig1=sign(SECRET, body))


def _other_body_signed(c: Ctx) -> bytes:
    return delivery(good(c), signed_body=push_bytes(c, {"pusher.name": "mallory"}))


def _length_more(c: Ctx) -> Sent:
    body = good(c)
    return Sent(delivery(body, length=len(body) + 100, close=False), hold=1.5)


def _length_less_tail(c: Ctx) -> Sent:
    body = good(c)
    return Sent(delivery(body, length=len(body) - 16, close=False), shutdown=True)


def _length_less_tail_request(c: Ctx) -> bytes:
    body = good(c)
    return delivery(body, length=len(body) - 16, close=False) + b"\r\n\r\n"


def _length_less_second_delivery(c: Ctx) -> bytes:
    body = good(c)
    second = delivery(body, sig256="sha256=" + "1" * 64, sig1=None)
    return delivery(body + second, length=len(body), close=False, signed_body=body + second)


def _length_over_limit(c: Ctx) -> Sent:
    return Sent(delivery(good(c), length=LIMIT + 1, close=False), shutdown=True)


def _chunk_head(c: Ctx) -> list[tuple[str, str]]:
    return [("Transfer-Encoding", "chunked")]


def _chunked_over_limit(c: Ctx) -> bytes:
    body = good(c)
    big = body + b" " * (LIMIT + 1 - len(body))  # valid JSON with trailing blanks
    return delivery(chunked(big), length=None, signed_body=big, extra=_chunk_head(c))


def _one_huge_chunk(c: Ctx) -> bytes:
    body = good(c)
    big = body + b" " * (LIMIT + 1 - len(body))
    return delivery(b"%x\r\n" % (1 << 61) + big, length=None, signed_body=big,
                    extra=_chunk_head(c))


def _chunk_size_overflow(c: Ctx) -> bytes:
    return delivery(b"f" * 20 + b"\r\n" + good(c), length=None, signed_body=good(c),
                    extra=_chunk_head(c))


def _chunked_cut_off(c: Ctx) -> Sent:
    body = good(c)
    data = chunked(body, 100)
    return Sent(delivery(data[:len(data) // 2], length=None, signed_body=body, close=False,
                         extra=_chunk_head(c)), shutdown=True)


def _chunked_under_limit(c: Ctx) -> bytes:
    body = good(c)
    return delivery(chunked(body, 100), length=None, signed_body=body, extra=_chunk_head(c))


def _bad_chunk_size(c: Ctx) -> bytes:
    return delivery(b"zz\r\n" + good(c) + b"\r\n0\r\n\r\n", length=None, signed_body=good(c),
                    extra=_chunk_head(c))


def _chunked_and_length(c: Ctx) -> bytes:
    body = good(c)
    return delivery(chunked(body), length=len(body), signed_body=body, extra=_chunk_head(c))


def _gzip_transfer(c: Ctx) -> bytes:
    return delivery(good(c), extra=[("Transfer-Encoding", "gzip")], length=None)


def _unequal_lengths(c: Ctx) -> bytes:
    body = good(c)
    return delivery(body, length=f"{len(body)}, {len(body) - 1}")


def _gzip_body(c: Ctx) -> bytes:
    return delivery(gzip.compress(good(c)), extra=[("Content-Encoding", "gzip")])


def _nul_in_header(c: Ctx) -> bytes:
    return delivery(good(c), extra=[("X-Forwarded-Host", "evil\x00.example")])


def _space_in_header_name(c: Ctx) -> bytes:
    return delivery(good(c), extra=[("X Hub Signature 256", "sha256=" + "0" * 64)])


def _headers_over_64k(c: Ctx) -> Sent:
    return Sent(delivery(good(c), extra=[("X-Padding", "p" * 70_000)]), shutdown=True)


def _long_delivery_id(c: Ctx) -> bytes:
    body = good(c)
    return delivery(body, sig256="sha256=" + "0" * 64, sig1=None,
                    extra=[("X-GitHub-Delivery", "d" * 60_000)])


def _control_in_path(c: Ctx) -> bytes:
    return delivery(good(c), path="/github\x01")


def _bad_request_line(c: Ctx) -> bytes:
    return b"POST /github HTTP/1.1 extra\r\nHost: x\r\n\r\n"


def _not_http(c: Ctx) -> Sent:
    hello = b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + bytes(range(32, 96))
    return Sent(hello, shutdown=True)  # a TLS ClientHello: never a complete header block


def _http10_no_host(c: Ctx) -> bytes:
    body = b"{}"
    return (b"POST /github HTTP/1.0\r\nX-GitHub-Event: ping\r\nContent-Length: 2\r\n"
            b"X-Hub-Signature-256: sha256=" + b"0" * 64 + b"\r\n\r\n" + body)


def _superscript_length(c: Ctx) -> bytes:
    return delivery(good(c), length="\u00b2")


def _long_length(c: Ctx) -> Sent:
    return Sent(delivery(good(c), length="9" * 5000, close=False), shutdown=True)


def _bom(c: Ctx) -> bytes:
    return b"\xef\xbb\xbf" + good(c)


def _utf16(c: Ctx) -> bytes:
    return good(c).decode().encode("utf-16")


def _form_payload(c: Ctx) -> str:
    return "payload=" + quote(good(c).decode())


CASES: list[Case] = [
    # --- signatures: the only check an attacker without the secret ever reaches ----------
    sig_case("signature missing", None, None, 401, MISSING_SIG),
    sig_case("signature empty", "", None, 401, MALFORMED_256),
    sig_case("signature sha256 empty, sha1 correct", "", SIGN, 401, MALFORMED_256),
    sig_case("signature 'sha256'", "sha256", None, 401, MALFORMED_256),
    sig_case("signature 'sha256='", "sha256=", None, 401, BAD_HEX_256),
    sig_case("signature 'sha256=zz..'", "sha256=" + "z" * 64, None, 401, BAD_HEX_256),
    sig_case("signature 63 hex digits", "sha256=" + "a" * 63, None, 401, BAD_HEX_256),
    sig_case("signature 65 hex digits", "sha256=" + "a" * 65, None, 401, BAD_HEX_256),
    sig_case("signature 128 hex digits", "sha256=" + "a" * 128, None, 401, BAD_HEX_256),
    sig_case("signature bare hex", "a" * 64, None, 401, MALFORMED_256),
    sig_case("signature unknown algorithm sha512", "sha512=" + "a" * 128, None, 401,
             MALFORMED_256),
    sig_case("signature unknown algorithm md5", "md5=" + "a" * 32, None, 401, MALFORMED_256),
    sig_case("signature sha1 value in the sha256 header", "sha1=" + "a" * 40, None, 401,
             MALFORMED_256),
    sig_case("signature wrong (zeros)", "sha256=" + "0" * 64, None, 401, MISMATCH_256),
    case("signature of another body", _other_body_signed, 401, MISMATCH_256),
    case("signature upper-case algorithm name", _upper_algorithm, 401, MALFORMED_256),
    case("signature two sha256 headers", _two_sig_headers, 401, BAD_HEX_256),
    case("signature two in one header", _two_sigs_one_header, 401, BAD_HEX_256),
    case("signature wrong and right sha256 headers", _good_and_bad_sig, 401, BAD_HEX_256),
    case("signature sha1 correct, sha256 wrong", _sha1_right_sha256_wrong, 401, MISMATCH_256),
    sig_case("signature sha1 correct, sha256 malformed", "sha256=xyz", SIGN, 401, BAD_HEX_256),
    sig_case("signature sha1 only, wrong", None, "sha1=" + "0" * 40, 401, MISMATCH_1),
    sig_case("signature sha1 only, malformed", None, "sha1=" + "0" * 39, 401,
             "malformed X-Hub-Signature header: expected 40 hex digits"),
    case("signature sha256 value in the sha1 header", _sha256_in_sha1_header, 401, MALFORMED_1),
    case("signature upper-case hex (accepted: same MAC)", _upper_hex, 200, "deployed",
         deploys=True),
    case("signature wrong, 60 KB X-GitHub-Delivery", _long_delivery_id, 401, MISMATCH_256),
    # --- bodies (correctly signed, so they reach the parser) ---------------------------------
    body_case("body empty", lambda c: b"", 400, NOT_JSON),
    body_case("body not UTF-8", lambda c: good(c).replace(b"octocat", b"octo\xff\xfecat"), 400,
              NOT_UTF8),
    body_case("body UTF-16", _utf16, 400, NOT_UTF8),
    body_case("body UTF-8 with BOM", _bom, 400, NOT_JSON),
    case("body gzip Content-Encoding", _gzip_body, 400, NOT_UTF8),
    body_case("body truncated JSON", lambda c: good(c)[:-1], 400, NOT_JSON),
    body_case("body half the JSON", lambda c: good(c)[:len(good(c)) // 2], 400, NOT_JSON),
    body_case("body two JSON objects", lambda c: good(c) + good(c), 400, NOT_JSON),
    body_case("body JSON array", lambda c: b"[" + good(c) + b"]", 400, NOT_OBJECT),
    body_case("body JSON string", lambda c: b'"refs/heads/main"', 400, NOT_OBJECT),
    body_case("body JSON number", lambda c: b"1", 400, NOT_OBJECT),
    body_case("body JSON null", lambda c: b"null", 400, NOT_OBJECT),
    body_case("body NaN", lambda c: b"NaN", 400, NOT_OBJECT),
    body_case("body deeply nested arrays", lambda c: b"[" * 100_000 + b"]" * 100_000, 400,
              NOT_JSON),
    body_case("body deeply nested objects", lambda c: nested(100_000), 400, NOT_JSON),
    body_case("body integer of 5000 digits", lambda c: b'{"a":' + b"9" * 5000 + b"}", 400,
              NOT_JSON),
    edit_case("push without ref", {"ref": DROP}, 400, NO_REF),
    edit_case("push without before", {"before": DROP}, 400,
              "github push 'before' is missing or not a string"),
    edit_case("push without after", {"after": DROP}, 400,
              "github push 'after' is missing or not a string"),
    edit_case("push without repository", {"repository": DROP}, 400, NO_REPOSITORY),
    edit_case("push without repository.full_name", {"repository.full_name": DROP}, 400,
              NO_REPOSITORY),
    edit_case("push ref is a number", {"ref": 1}, 400, NO_REF),
    edit_case("push ref is a list", {"ref": ["refs/heads/main"]}, 400, NO_REF),
    edit_case("push ref is null", {"ref": None}, 400, NO_REF),
    edit_case("push after is a number", {"after": 1234}, 400,
              "github push 'after' is missing or not a string"),
    edit_case("push after is an object", {"after": {"sha": "x"}}, 400,
              "github push 'after' is missing or not a string"),
    edit_case("push repository is a string", {"repository": REPOSITORY}, 400, NO_REPOSITORY),
    edit_case("push full_name is a number", {"repository.full_name": 7}, 400, NO_REPOSITORY),
    edit_case("push after 39 hex", {"after": "a" * 39}, 400, BAD_AFTER),
    edit_case("push after 41 hex", {"after": "a" * 41}, 400, BAD_AFTER),
    edit_case("push after not hex", {"after": "g" * 40}, 400, BAD_AFTER),
    edit_case("push after upper-case hex", {"after": "A" * 40}, 400, BAD_AFTER),
    edit_case("push after a branch name", {"after": "main"}, 400, BAD_AFTER),
    edit_case("push after with newline", {"after": "a" * 40 + "\n"}, 400, BAD_AFTER),
    edit_case("push after option-like", {"after": "--upload-pack=touch /tmp/pwned"}, 400,
              BAD_AFTER),
    edit_case("push before not hex", {"before": "z" * 40}, 400,
              "github push 'before' is not a hex commit SHA"),
    edit_case("push ref with ..", {"ref": "refs/heads/../main"}, 400, BAD_REF),
    edit_case("push ref with space", {"ref": "refs/heads/ma in"}, 400, BAD_REF),
    edit_case("push ref with newline", {"ref": "refs/heads/main\n"}, 400, BAD_REF),
    edit_case("push ref with NUL", {"ref": "refs/heads/main\x00"}, 400, BAD_REF),
    edit_case("push ref with escape", {"ref": "refs/heads/\x1b[2Jmain"}, 400, BAD_REF),
    edit_case("push ref with DEL", {"ref": "refs/heads/main\x7f"}, 400, BAD_REF),
    edit_case("push ref option-like", {"ref": "--upload-pack=touch /tmp/pwned"}, 400, BAD_REF),
    edit_case("push ref main with line separator", {"ref": "refs/heads/main\u2028"}, 202,
              "only main is deployed"),
    edit_case("push for another repository", {"repository.full_name": "evil/fork"}, 403,
              "this hook deploys octo-org/blog, not evil/fork"),
    body_case("push event name upper-case", good, 202, "event 'PUSH' is not deployed",
              event="PUSH"),
    case("push without X-GitHub-Event", lambda c: delivery(good(c), event=None), 400,
         "missing X-GitHub-Event header"),
    body_case("push with 2048 commits (GitHub's cap)", lambda c: commits(c, 2048), 200,
              "deployed", deploys=True),
    body_case("push with 100000 commits (far over the cap)", lambda c: commits(c, 100_000), 200,
              "deployed", deploys=True),
    body_case("push with a 900-deep extra field", lambda c: push_bytes(
        c, {"extra": json.loads(nested(900))}), 200, "deployed", deploys=True),
    # --- forms and content types -------------------------------------------------------------
    body_case("form without payload", lambda c: form("other=1"), 400, ONE_PAYLOAD,
              content_type=FORM),
    body_case("form empty", lambda c: b"", 400, ONE_PAYLOAD, content_type=FORM),
    body_case("form duplicate payload fields",
              lambda c: form(_form_payload(c) + "&" + _form_payload(c)), 400, ONE_PAYLOAD,
              content_type=FORM),
    body_case("form payload field empty and full",
              lambda c: form("payload=&" + _form_payload(c)), 400, ONE_PAYLOAD,
              content_type=FORM),
    body_case("form cannot be parsed", lambda c: form("payload"), 400,
              "form body cannot be parsed", content_type=FORM),
    body_case("form payload not JSON", lambda c: form("payload=hello"), 400, NOT_JSON,
              content_type=FORM),
    body_case("form payload not UTF-8", lambda c: b"payload=%ff" + good(c), 400, NOT_JSON,
              content_type=FORM),
    body_case("form raw JSON sent as a form", good, 400, "form body cannot be parsed",
              content_type=FORM),
    body_case("content type text/plain", good, 415, "unsupported Content-Type 'text/plain'",
              content_type="text/plain"),
    body_case("content type multipart", good, 415, "unsupported Content-Type 'multipart/",
              content_type="multipart/form-data; boundary=x"),
    body_case("content type list", good, 415, "unsupported Content-Type",
              content_type="application/json, text/plain"),
    body_case("content type vendor json", good, 415, "unsupported Content-Type",
              content_type="application/vnd.github+json"),
    case("content type text/plain unsigned (401 first)",
         lambda c: delivery(good(c), content_type="text/plain", sig256=None, sig1=None), 401,
         MISSING_SIG),
    # --- framing: lengths, chunks, encodings -------------------------------------------------
    case("content-length more than sent", _length_more, None),
    Case("content-length less than sent (tail, then EOF)", _length_less_tail,
         ((401, MISMATCH_256),)),
    Case("content-length less than sent (tail parsed as a request)", _length_less_tail_request,
         ((401, MISMATCH_256), (400, BARE))),
    Case("content-length less than sent (second delivery, bad signature)",
         _length_less_second_delivery, ((401, MISMATCH_256), (401, MISMATCH_256))),
    case("content-length over the limit", _length_over_limit, 413,
         f"is over the limit of {LIMIT} bytes"),
    case("content-length two unequal values", _unequal_lengths, 400, BARE),
    case("content-length negative", lambda c: delivery(good(c), length="-1"), 400, BARE),
    case("content-length not a number", lambda c: delivery(good(c), length="1e3"), 400, BARE),
    case("content-length superscript digit", _superscript_length, 400, BARE),
    case("content-length 5000 digits", _long_length, 400, BARE),
    case("chunked over the limit", _chunked_over_limit, 413,
         f"is over the limit of {LIMIT} bytes"),
    case("chunked one chunk announced at 2**61 bytes", _one_huge_chunk, 413,
         f"is over the limit of {LIMIT} bytes"),
    case("chunked chunk size overflows", _chunk_size_overflow, 400, BARE),
    case("chunked bad chunk size", _bad_chunk_size, 400, BARE),
    case("chunked cut off", _chunked_cut_off, None),
    case("chunked and content-length", _chunked_and_length, 400, BARE),
    case("transfer-encoding gzip", _gzip_transfer, 400, BARE),
    case("chunked signed body under the limit, tampered",
         lambda c: delivery(chunked(good(c), 100), length=None, signed_body=good(c) + b" ",
                            extra=_chunk_head(c)), 401, MISMATCH_256),
    # --- the HTTP message itself -------------------------------------------------------------
    case("header with NUL", _nul_in_header, 400, BARE),
    case("header name with spaces", _space_in_header_name, 400, BARE),
    case("headers over 64 KiB", _headers_over_64k, None),
    case("request line with extra token", _bad_request_line, 400, BARE),
    case("control character in path", _control_in_path, 400, BARE),
    case("TLS handshake on the HTTP port", _not_http, None),
    case("HTTP/1.0 without Host, wrong signature", _http10_no_host, 401, MISMATCH_256),
    # --- methods -----------------------------------------------------------------------------
    method_case("PUT"),
    method_case("DELETE"),
    method_case("PATCH"),
    method_case("OPTIONS"),
    method_case("TRACE"),
    method_case("HEAD", reason=BARE),
    method_case("post"),
    method_case("FOO"),
    # --- paths -------------------------------------------------------------------------------
    path_case("upper-case", "/GITHUB"),
    path_case("percent-encoded letter", "/%67ithub"),
    path_case("percent-encoded slash", "/github%2f"),
    path_case("percent-encoded NUL", "/github%00"),
    path_case("double slash", "//github"),
    path_case("dot segment", "/./github"),
    path_case("trailing dot segment", "/github/."),
    path_case("dot-dot segment", "/x/../github"),
    path_case("encoded dot-dot", "/x/%2e%2e/github"),
    path_case("backslash", "/github\\"),
    path_case("semicolon parameter", "/github;x=1"),
    path_case("latin-1 byte", "/github\u00ff"),
    path_case("absolute form", "http://127.0.0.1/github"),
    path_case("asterisk", "*", method="OPTIONS"),
    path_case("traversal to /etc/passwd", "/github/../../../../etc/passwd"),
]


# --- sending and reading -------------------------------------------------------------------


@dataclass
class Answer:
    """One HTTP answer read back from the raw connection."""

    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""


def parse_answers(raw: bytes) -> list[Answer]:
    """Split everything the server wrote into answers (bodies by Content-Length)."""
    answers, rest = [], raw
    while rest:
        head, sep, rest = rest.partition(b"\r\n\r\n")
        assert sep, f"incomplete answer: {raw[:400]!r}"
        first, *lines = head.decode("latin-1").split("\r\n")
        assert re.fullmatch(r"HTTP/1\.[01] \d{3} .*", first), raw[:400]
        headers = {name.strip().lower(): value.strip()
                   for name, _, value in (line.partition(":") for line in lines)}
        length = int(headers.get("content-length", len(rest)))
        answers.append(Answer(int(first.split()[1]), headers, rest[:length]))
        rest = rest[length:]
    return answers


async def exchange(port: int, sent: Sent, while_held: Callable[[], None]) -> bytes:
    """Write ``sent`` on a new connection while reading; return all the server wrote."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    received = bytearray()

    async def read_all() -> None:
        try:
            while chunk := await reader.read(1 << 16):
                received.extend(chunk)
        except ConnectionError:
            pass  # a reset after the answer: keep what arrived

    reading = asyncio.create_task(read_all())
    try:
        view = memoryview(sent.data)
        for start in range(0, len(view), 1 << 16):
            writer.write(view[start:start + (1 << 16)])
            await writer.drain()
    except ConnectionError:
        pass  # the server answered (413) and closed while the body was still going out
    try:
        if sent.hold:
            await asyncio.sleep(sent.hold)
            assert not received, f"answered an incomplete body: {bytes(received)[:400]!r}"
            await asyncio.to_thread(while_held)
        if (sent.shutdown or sent.hold) and not writer.is_closing():
            writer.write_eof()
        await asyncio.wait_for(reading, 30)
    finally:
        writer.close()
    return bytes(received)


def check_answer(answer: Answer, reason: str | None) -> None:
    """A JSON answer with a short reason containing ``reason``; BARE: no body at all."""
    if reason is BARE:
        assert answer.body == b"", answer
        return
    assert answer.headers.get("content-type", "").startswith("application/json"), answer
    body = json.loads(answer.body)
    assert isinstance(body, dict), body
    assert isinstance(body.get("reason"), str) and reason in body["reason"], body
    assert len(body["reason"]) <= 200, body["reason"]
    assert body.get("result") in {"rejected", "error", "ignored", "deployed"}, body


# --- the table -----------------------------------------------------------------------------


@pytest.mark.parametrize("row", CASES, ids=[row.name for row in CASES])
def test_bad_input(target: Target, row: Case) -> None:
    """Each row: the expected answers, no deploy (or exactly the deploy), /health still up."""
    repos, daemon = target.repos, target.daemon
    ctx = Ctx(pending=repos.commit(), head=target.head())
    fetches = repos.fetches()

    def still_idle() -> None:
        assert repos.fetches() == fetches
        assert http("GET", daemon.url + "/health", timeout=10)[0] == 200

    built = row.build(ctx)
    sent = built if isinstance(built, Sent) else Sent(built)
    raw = asyncio.run(exchange(target.port, sent, still_idle))
    assert SECRET not in raw
    answers = parse_answers(raw)
    assert [a.status for a in answers] == [status for status, _ in row.answers], \
        (raw[:600], daemon.log()[-3000:])
    for answer, (_, reason) in zip(answers, row.answers, strict=True):
        check_answer(answer, reason)
    if row.deploys:
        assert target.head() == ctx.pending
        assert repos.fetches() > fetches
    else:
        assert target.head() == ctx.head
        assert repos.fetches() == fetches
    assert daemon.proc.poll() is None, daemon.log()[-3000:]
    status, health = http("GET", daemon.url + "/health", timeout=10)
    assert status == 200 and health["head"] == target.head(), health


def test_case_count_and_doc() -> None:
    """Every row is listed in docs/reliability-input.rst under its test name."""
    print(f"\n{len(CASES)} bad-input cases")
    assert len({row.name for row in CASES}) == len(CASES), "duplicate case names"
    text = DOC.read_text(encoding="utf-8")
    missing = [row.name for row in CASES if f"test_bad_input[{row.name}]" not in text]
    assert not missing, f"not in {DOC.name}: {missing}"


def test_unsigned_request_data_is_not_logged_in_full(target: Target) -> None:
    """A 401 must not let an unauthenticated client write kilobytes into the log."""
    marker = uuid.uuid4().hex
    body = good(Ctx(target.head(), target.head()))
    for extra, path in (([("X-GitHub-Delivery", marker * 1500)], "/github"),
                        ([("X-GitHub-Event", marker * 1500)], "/github"),
                        ([], "/github?" + marker * 1500)):
        data = delivery(body, sig256="sha256=" + "0" * 64, sig1=None, extra=extra, path=path)
        answers = parse_answers(asyncio.run(exchange(target.port, Sent(data), lambda: None)))
        assert [a.status for a in answers] == [401]
    time.sleep(0.2)
    longest = max((len(line) for line in target.daemon.log().splitlines() if marker in line),
                  default=0)
    assert longest < 2000, f"a log line of {longest} characters"


class SlowClientTest(HookTestCase):
    """The server's own bound on clients that never finish a request.

    The daemon's HTTPServer uses ``body_timeout=60`` and ``idle_connection_timeout=60``
    (deployhook/server.py); here the same options are 1 s so the bound is quick to see.
    """

    TIMEOUT: ClassVar[float] = 1.0

    def get_httpserver_options(self) -> dict[str, Any]:
        return {"body_timeout": self.TIMEOUT, "idle_connection_timeout": self.TIMEOUT,
                "max_body_size": LIMIT * 4}

    async def hang(self, data: bytes) -> tuple[bytes, float]:
        """Send ``data`` and wait until the server closes; return what it wrote and when."""
        reader, writer = await asyncio.open_connection("127.0.0.1", self.get_http_port())
        writer.write(data)
        await writer.drain()
        started = time.monotonic()
        answer = await asyncio.wait_for(reader.read(), 30)
        writer.close()
        return answer, time.monotonic() - started

    async def check_closed_without_deploy(self, data: bytes) -> None:
        before, fetches = self.repos.head(self.repos.deployed), self.repos.fetches()
        answer, waited = await self.hang(data)
        assert answer == b"", answer
        assert self.TIMEOUT * 0.9 <= waited < self.TIMEOUT + 4, waited
        await self.until(lambda: self.hook.in_flight == 0, "no answer in flight")
        assert self.repos.head(self.repos.deployed) == before
        assert self.repos.fetches() == fetches
        status, _ = await self.send(b"", {}, method="GET", path="/health")
        assert status == 200

    @gen_test(timeout=60)
    async def test_content_length_more_than_sent_is_closed(self) -> None:
        """A body shorter than its Content-Length: closed after body_timeout, no answer."""
        body = good(Ctx(self.repos.commit(), self.repos.head(self.repos.deployed)))
        await self.check_closed_without_deploy(
            delivery(body, length=len(body) + 100, close=False))

    @gen_test(timeout=60)
    async def test_unfinished_headers_are_closed(self) -> None:
        """Headers that never end (slowloris): closed after idle_connection_timeout."""
        await self.check_closed_without_deploy(b"POST /github HTTP/1.1\r\nHost: x\r\nX-A: ")

    @gen_test(timeout=60)
    async def test_unfinished_chunked_body_is_closed(self) -> None:
        """A chunked body that stops mid-way: closed after body_timeout, no answer."""
        body = good(Ctx(self.repos.commit(), self.repos.head(self.repos.deployed)))
        data = delivery(chunked(body, 100), length=None, signed_body=body, close=False,
                        extra=[("Transfer-Encoding", "chunked")])
        await self.check_closed_without_deploy(data[:-200])

