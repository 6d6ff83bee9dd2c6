"""Table-driven tests of GitHub's signatures (``forges.verify("github", ...)`` and
:mod:`deployhook.forges.github`'s ``sign``) with precomputed vectors.

The layout follows adnanh/webhook's Go tests (``checkPayloadSignatureTests``):
one table of inputs that must verify, one of inputs that must be rejected,
with every MAC pasted as a literal instead of computed by the code under test.
"""

from __future__ import annotations

from collections.abc import Mapping

import pytest
from tornado.httputil import HTTPHeaders

from deployhook import forges
from deployhook.errors import Mismatch, SignatureError
from deployhook.forges import github

# GitHub's official test vector, from the GitHub docs "Validating webhook deliveries"
# (https://docs.github.com/en/webhooks/using-webhooks/validating-webhook-deliveries,
# section "Testing the webhook payload validation"), as quoted in /work/shared/REFERENCE.md.
SECRET = b"It's a Secret to Everybody"
BODY = b"Hello, World!"
SHA256 = "757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
# HMAC-SHA1 of the same secret and body, computed once with Python's hmac module and
# cross-checked with
#   printf 'Hello, World!' | openssl dgst -sha1 -hmac "It's a Secret to Everybody"
SHA1 = "01dc10d0c83e72ed246219cdd91669667fe2ca59"
# The same secret over an empty body (Python's hmac, cross-checked with openssl).
EMPTY_SHA256 = "66a0c074deaa0f489ead6537e0d32f9a344b90bbeda705b6ed45ecd3b413fb40"
EMPTY_SHA1 = "9bb55c711ece77c471946c373a1f1a5a05091074"
# A valid-looking MAC that matches nothing: the official one with its last digit changed.
WRONG_SHA256 = SHA256[:-1] + "0"
WRONG_SHA1 = SHA1[:-1] + "0"

H256 = "X-Hub-Signature-256"
H1 = "X-Hub-Signature"


def verify(secret: bytes, body: bytes, headers: Mapping[str, str]) -> str:
    """Verify as the daemon does, with ``secret`` the only one configured, and name the
    algorithm of the header that was checked (``sha256`` or ``sha1``).

    Raises:
        SignatureError: as ``forges.verify`` does.
    """
    assert forges.verify("github", [secret], headers, body) == 0
    return {github.SHA256_HEADER: "sha256", github.SHA1_HEADER: "sha1"}[
        github.signature_header(headers)]


def http_headers(*pairs: tuple[str, str]) -> HTTPHeaders:
    """Headers as the handler gets them: Tornado's case-insensitive multi-dict."""
    headers = HTTPHeaders()
    for name, value in pairs:
        headers.add(name, value)
    return headers


def test_sign_matches_vectors() -> None:
    """sign() produces the header values GitHub sends for the official vector."""
    assert github.sign(SECRET, BODY) == f"sha256={SHA256}"
    assert github.sign(SECRET, BODY, "sha256") == f"sha256={SHA256}"
    assert github.sign(SECRET, BODY, "sha1") == f"sha1={SHA1}"
    assert github.sign(SECRET, b"", "sha256") == f"sha256={EMPTY_SHA256}"
    assert github.sign(SECRET, b"", "sha1") == f"sha1={EMPTY_SHA1}"
    headers = github.sign_headers(SECRET, BODY)
    assert (headers[H256], headers[H1]) == (f"sha256={SHA256}", f"sha1={SHA1}")


VALID: list[tuple[str, bytes, Mapping[str, str], str]] = [
    ("sha256 only", BODY, {H256: f"sha256={SHA256}"}, "sha256"),
    ("both, as GitHub sends", BODY, {H256: f"sha256={SHA256}", H1: f"sha1={SHA1}"}, "sha256"),
    ("sha1 only", BODY, {H1: f"sha1={SHA1}"}, "sha1"),
    ("sha256 HTTPHeaders", BODY, http_headers((H256, f"sha256={SHA256}")), "sha256"),
    ("sha256 lower-case header name", BODY,
     http_headers(("x-hub-signature-256", f"sha256={SHA256}")), "sha256"),
    ("sha1 odd-case header name", BODY, http_headers(("X-HUB-SIGNATURE", f"sha1={SHA1}")), "sha1"),
    ("both HTTPHeaders", BODY,
     http_headers((H1, f"sha1={SHA1}"), (H256, f"sha256={SHA256}")), "sha256"),
    ("parsed from a raw header block", BODY,
     HTTPHeaders.parse(f"x-hub-signature: sha1={SHA1}\r\nX-Hub-Signature-256: sha256={SHA256}\r\n"),
     "sha256"),
    ("upper-case hex sha256", BODY, {H256: f"sha256={SHA256.upper()}"}, "sha256"),
    ("upper-case hex sha1", BODY, {H1: f"sha1={SHA1.upper()}"}, "sha1"),
    ("mixed-case hex sha256", BODY, {H256: f"sha256={SHA256[:32].upper()}{SHA256[32:]}"}, "sha256"),
    ("surrounding whitespace", BODY, {H256: f"  sha256={SHA256} "}, "sha256"),
    ("empty body sha256", b"", {H256: f"sha256={EMPTY_SHA256}"}, "sha256"),
    ("empty body sha1", b"", {H1: f"sha1={EMPTY_SHA1}"}, "sha1"),
]


@pytest.mark.parametrize(
    ("body", "headers", "algorithm"),
    [case[1:] for case in VALID],
    ids=[case[0] for case in VALID],
)
def test_valid_signature(body: bytes, headers: Mapping[str, str], algorithm: str) -> None:
    """A correct MAC verifies, checked in the header of the algorithm named."""
    assert verify(SECRET, body, headers) == algorithm


REJECTED: list[tuple[str, Mapping[str, str]]] = [
    ("missing", {}),
    ("missing, other headers only", http_headers(("X-GitHub-Event", "push"))),
    ("empty sha256 value", {H256: ""}),
    ("empty sha1 value", {H1: ""}),
    ("empty sha256 although sha1 is right", {H256: "", H1: f"sha1={SHA1}"}),
    ("blank sha256 value", {H256: "   "}),
    ("algorithm without '='", {H256: "sha256"}),
    ("algorithm with empty digest", {H256: "sha256="}),
    ("sha1 with empty digest", {H1: "sha1="}),
    ("bare hex without algorithm", {H256: SHA256}),
    ("non-hex digest of the right length", {H256: "sha256=" + "z" * 64}),
    ("non-ASCII digits", {H256: "sha256=" + "\u0660" * 64}),
    ("full-width hex digits", {H256: "sha256=" + "\uff41" * 64}),
    ("digest one digit short", {H256: f"sha256={SHA256[:-1]}"}),
    ("digest one digit long", {H256: f"sha256={SHA256}0"}),
    ("sha1 digest in the sha256 header", {H256: f"sha256={SHA1}"}),
    ("sha1 digest one digit long", {H1: f"sha1={SHA1}0"}),
    ("sha256 digest in the sha1 header", {H1: f"sha1={SHA256}"}),
    ("unknown algorithm md5", {H256: "md5=" + "0" * 32}),
    ("unknown algorithm md5 in sha1 header", {H1: "md5=" + "0" * 32}),
    ("sha1 algorithm in the sha256 header", {H256: f"sha1={SHA1}"}),
    ("sha256 algorithm in the sha1 header", {H1: f"sha256={SHA256}"}),
    ("sha512 algorithm", {H256: "sha512=" + "0" * 128}),
    ("upper-case algorithm name", {H256: f"SHA256={SHA256}"}),
    ("wrong sha256", {H256: f"sha256={WRONG_SHA256}"}),
    ("wrong sha1", {H1: f"sha1={WRONG_SHA1}"}),
    ("wrong sha256 while sha1 is right", {H256: f"sha256={WRONG_SHA256}", H1: f"sha1={SHA1}"}),
    ("wrong sha256 while sha1 is right, HTTPHeaders",
     http_headers((H1, f"sha1={SHA1}"), (H256, f"sha256={WRONG_SHA256}"))),
    ("MAC of the empty body", {H256: f"sha256={EMPTY_SHA256}"}),
    ("two sha256 values joined by a comma",
     http_headers((H256, f"sha256={SHA256}"), (H256, f"sha256={SHA256}"))),
    ("wrong and right sha256 joined by a comma",
     http_headers((H256, f"sha256={WRONG_SHA256}"), (H256, f"sha256={SHA256}"))),
    ("repeated header parsed from a raw block",
     HTTPHeaders.parse(f"{H256}: sha256={SHA256}\r\n{H256.lower()}: sha256={SHA256}\r\n")),
    ("comma-joined string in a plain dict", {H256: f"sha256={SHA256},sha256={SHA256}"}),
    ("two sha1 values joined by a comma",
     http_headers((H1, f"sha1={SHA1}"), (H1, f"sha1={SHA1}"))),
]


@pytest.mark.parametrize(
    "headers", [case[1] for case in REJECTED], ids=[case[0] for case in REJECTED]
)
def test_rejected_signature(headers: Mapping[str, str]) -> None:
    """Every missing, malformed or wrong signature is a SignatureError."""
    with pytest.raises(SignatureError):
        verify(SECRET, BODY, headers)


@pytest.mark.parametrize(
    "headers", [case[1] for case in REJECTED], ids=[case[0] for case in REJECTED]
)
def test_rejection_is_401_without_expected_mac(headers: Mapping[str, str]) -> None:
    """A rejection answers 401 and its message never reveals the expected MAC."""
    with pytest.raises(SignatureError) as info:
        verify(SECRET, BODY, headers)
    error = info.value
    assert error.status == 401
    assert error.reason == str(error)
    assert error.reason
    for text in (str(error).lower(), repr(error).lower(), error.reason.lower()):
        assert SHA256 not in text
        assert SHA1 not in text


@pytest.mark.parametrize(
    ("secret", "body", "headers"),
    [
        (b"another secret", BODY, {H256: f"sha256={SHA256}"}),
        (b"another secret", BODY, {H1: f"sha1={SHA1}"}),
        (SECRET, b"Hello, World?", {H256: f"sha256={SHA256}"}),
        (SECRET, BODY + b"\n", {H256: f"sha256={SHA256}"}),
        (SECRET, b"Hello, World?", {H1: f"sha1={SHA1}"}),
        (SECRET.lower(), BODY, {H256: f"sha256={SHA256}"}),
        (b"", BODY, {H256: f"sha256={SHA256}"}),
    ],
    ids=["wrong secret sha256", "wrong secret sha1", "tampered body sha256",
         "trailing newline sha256", "tampered body sha1", "secret case differs",
         "empty secret"],
)
def test_mac_is_bound_to_secret_and_body(
    secret: bytes, body: bytes, headers: Mapping[str, str]
) -> None:
    """The official MAC fails for any other secret or body, with status 401."""
    with pytest.raises(SignatureError) as info:
        verify(secret, body, headers)
    assert type(info.value) is Mismatch and info.value.status == 401


@pytest.mark.parametrize("name", [H256, H256.lower(), H256.upper()])
def test_any_spelling_of_the_header_verifies(name: str) -> None:
    """The header is found in any spelling, in a plain dict as in Tornado's headers."""
    for headers in ({name: f"sha256={SHA256}"}, http_headers((name, f"sha256={SHA256}"))):
        assert verify(SECRET, BODY, headers) == "sha256"
