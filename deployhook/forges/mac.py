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
from collections.abc import Callable, Sequence

_HEX = re.compile(r"[0-9a-fA-F]+")


def hmac_sha256(secret: bytes, message: bytes) -> bytes:
    """The raw HMAC-SHA256 of ``message`` keyed with ``secret``."""
    return hmac.new(secret, message, hashlib.sha256).digest()


def hmac_sha1(secret: bytes, message: bytes) -> bytes:
    """The raw HMAC-SHA1 of ``message`` keyed with ``secret`` (GitHub's legacy header)."""
    return hmac.new(secret, message, hashlib.sha1).digest()


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
