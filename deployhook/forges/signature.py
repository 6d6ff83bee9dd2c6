"""GitHub webhook signatures: pure functions over a secret, a body and headers.

GitHub signs the raw request body with HMAC and the hook's secret and sends
``X-Hub-Signature-256: sha256=<hex>`` (and, for compatibility,
``X-Hub-Signature: sha1=<hex>``).  We prefer SHA-256; SHA-1 is accepted only
when it is the only signature sent.  Digests are compared in constant time and
no error message ever contains the expected MAC.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Mapping

from deployhook.errors import SignatureError

SHA256_HEADER = "X-Hub-Signature-256"
SHA1_HEADER = "X-Hub-Signature"

_ALGORITHMS = {"sha256": (hashlib.sha256, 64), "sha1": (hashlib.sha1, 40)}
_HEX = re.compile(r"[0-9a-fA-F]+")


def sign(secret: bytes, body: bytes, algorithm: str = "sha256") -> str:
    """Return the header value GitHub would send, e.g. ``sha256=<hex>``."""
    digestmod, _ = _ALGORITHMS[algorithm]
    return f"{algorithm}={hmac.new(secret, body, digestmod).hexdigest()}"


def verify(secret: bytes, body: bytes, headers: Mapping[str, str]) -> str:
    """Check the delivery's signature and return the algorithm that matched.

    ``headers`` is any case-insensitive mapping (Tornado's ``HTTPHeaders``);
    a plain dict must use GitHub's header spelling.

    Raises:
        SignatureError: no signature header, a malformed one, or a digest that
            does not match the body (the message never shows the expected MAC).
    """
    header = SHA256_HEADER if headers.get(SHA256_HEADER) is not None else SHA1_HEADER
    value = headers.get(header)
    if value is None:
        raise SignatureError(f"missing {SHA256_HEADER} header: set a secret on the webhook")
    algorithm, received = split_header(header, value)
    expected = sign(secret, body, algorithm).partition("=")[2]
    if not hmac.compare_digest(expected.encode(), received.lower().encode()):
        raise SignatureError(f"{header} does not match the body: check the webhook's secret")
    return algorithm


def split_header(header: str, value: str) -> tuple[str, str]:
    """Split ``algo=hex`` after checking its form; raise SignatureError if malformed."""
    algorithm, sep, digest = value.strip().partition("=")
    wanted = "sha256" if header == SHA256_HEADER else "sha1"
    if not sep or algorithm != wanted:
        raise SignatureError(f"malformed {header} header: expected '{wanted}=<hex digest>'")
    _, length = _ALGORITHMS[wanted]
    if len(digest) != length or not _HEX.fullmatch(digest):
        raise SignatureError(
            f"malformed {header} header: expected {length} hex digits after '{wanted}='"
        )
    return algorithm, digest
