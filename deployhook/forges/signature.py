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


class Verifier:
    """Checks a delivery's signature while its body arrives, one chunk at a time.

    Built from the headers (which name the algorithm and the received digest) and
    every candidate secret; :meth:`update` feeds each chunk to one HMAC per secret,
    so no copy of the whole body is ever needed to verify it.

    Raises (from the constructor):
        SignatureError: no signature header or a malformed one, so a stranger's
            body need not be read at all.
    """

    def __init__(self, secrets: list[bytes], headers: Mapping[str, str]) -> None:
        header = SHA256_HEADER if headers.get(SHA256_HEADER) is not None else SHA1_HEADER
        value = headers.get(header)
        if value is None:
            raise SignatureError(f"missing {SHA256_HEADER} header: set a secret on the webhook")
        self.header = header
        self.algorithm, received = split_header(header, value)
        self._received = received.lower().encode()
        digestmod, _ = _ALGORITHMS[self.algorithm]
        self._macs = [hmac.new(secret, digestmod=digestmod) for secret in secrets]

    def update(self, chunk: bytes | memoryview) -> None:
        """Feed the next chunk of the body to every candidate's MAC."""
        for mac in self._macs:
            mac.update(chunk)

    def finish(self) -> str:
        """Return the algorithm if any secret's MAC matches the received digest.

        Every candidate is compared (in constant time), whichever matched.

        Raises:
            SignatureError: no secret matches (the message never shows a MAC).
        """
        matched = False
        for mac in self._macs:
            matched |= hmac.compare_digest(mac.hexdigest().encode(), self._received)
        if not matched:
            raise SignatureError(
                f"{self.header} does not match the body: check the webhook's secret")
        return self.algorithm
