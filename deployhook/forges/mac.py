"""Constant-time matching of a received MAC against every configured secret.

One small function per algorithm computes a digest from a secret and the
signed bytes; :func:`first_match` runs it for every secret, always, and
compares each result with every received candidate in constant time, so the
work done does not depend on which secret (if any) matched.  When bodies are
hashed incrementally, these helpers are where a precomputed digest plugs in.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from deployhook.errors import Mismatch, SignatureError

_HEX = re.compile(r"[0-9a-fA-F]+")
ALGORITHMS = {"sha256": hashlib.sha256, "sha1": hashlib.sha1}
Key = tuple[str, bytes, bytes]  # (algorithm, HMAC key, bytes signed before the body)


class Hashed:
    """A body hashed as it arrives: its HMACs under the keys chosen when the headers came
    (:func:`deployhook.forges.hash_keys`), so that verifying needs no copy of the body.

    Pass it wherever a verify function takes the body: :func:`hmac_sha256` and
    :func:`hmac_sha1` read its digests instead of hashing bytes.
    """

    def __init__(self, keys: Iterable[Key]) -> None:
        self._macs = {key: hmac.new(key[1], key[2], ALGORITHMS[key[0]]) for key in set(keys)}

    def update(self, chunk: bytes | memoryview) -> None:
        """Feed the next chunk of the body to every MAC."""
        for mac in self._macs.values():
            mac.update(chunk)

    def digest(self, algorithm: str, key: bytes, prefix: bytes = b"") -> bytes | None:
        """The HMAC of the body under ``key`` (after ``prefix``); None when not computed."""
        mac = self._macs.get((algorithm, key, prefix))
        return None if mac is None else mac.copy().digest()


@dataclass(frozen=True)
class Prefixed:
    """A :class:`Hashed` body with ``prefix`` signed before it (GitLab's signing token)."""

    prefix: bytes
    body: Hashed


Body = bytes | bytearray | Hashed | Prefixed


def prefixed(prefix: bytes, body: Body) -> Body:
    """``prefix`` followed by ``body``: bytes joined, or a view of a hashed body."""
    if isinstance(body, Hashed):
        return Prefixed(prefix, body)
    if isinstance(body, Prefixed):
        return Prefixed(body.prefix + prefix, body.body)
    return prefix + bytes(body)


def hmac_sha256(secret: bytes, message: Body) -> bytes | None:
    """The raw HMAC-SHA256 of ``message`` keyed with ``secret`` (None: not computed)."""
    return _hmac("sha256", secret, message)


def hmac_sha1(secret: bytes, message: Body) -> bytes | None:
    """The raw HMAC-SHA1 of ``message`` keyed with ``secret`` (GitHub's legacy header)."""
    return _hmac("sha1", secret, message)


def _hmac(algorithm: str, secret: bytes, message: Body) -> bytes | None:
    if isinstance(message, Hashed):
        return message.digest(algorithm, secret)
    if isinstance(message, Prefixed):
        return message.body.digest(algorithm, secret, message.prefix)
    return hmac.new(secret, message, ALGORITHMS[algorithm]).digest()


def token_digest(token: bytes) -> bytes:
    """SHA-256 of a clear-text token, so tokens of any length compare in constant time."""
    return hashlib.sha256(token).digest()


def first_match(secrets: Sequence[bytes], expected: Callable[[bytes], bytes | None],
                received: Sequence[bytes]) -> int | None:
    """Index of the first secret whose ``expected(secret)`` equals a ``received`` value.

    Every secret is computed and compared with every candidate, with
    ``hmac.compare_digest``; ``expected`` returns None for a secret that cannot
    apply (it then matches nothing).  None when no secret matches.
    """
    found = None
    for index, secret in enumerate(secrets):
        digest = expected(secret)
        hit = False
        for candidate in received:
            hit |= digest is not None and hmac.compare_digest(digest, candidate)
        if hit and found is None:
            found = index
    return found


def from_hex(value: str, length: int) -> bytes | None:
    """The bytes of a hex digest of ``length`` digits, or None if it is not one."""
    if len(value) != length or not _HEX.fullmatch(value):
        return None
    return bytes.fromhex(value)


def verify_hex_sha256(name: str, value: str | None, form: str, secrets: Sequence[bytes],
                      body: Body) -> int:
    """Index of the secret whose HMAC-SHA256 of ``body`` is ``value``, the 64 hex digits
    (``form`` says how they are written, e.g. ``sha256=<hex>``) of header ``name``
    (None: not sent); the caller strips any prefix from a ``value`` it found.

    Raises:
        SignatureError: no signature (the hook has no secret), not 64 hex digits, or no
            secret that matches (401).
    """
    if value is None:
        raise SignatureError(f"missing {name} header: set a secret on the webhook")
    received = from_hex(value, 64)
    if received is None:
        raise SignatureError(f"malformed {name} header: expected {form}")
    index = first_match(secrets, lambda secret: hmac_sha256(secret, body), [received])
    if index is None:
        raise Mismatch(f"{name} does not match the body: check the webhook's secret")
    return index
