"""Typed errors for everything a delivery can get wrong.

Each error carries the HTTP status that answers it and a short ``reason``
that is safe to send back to GitHub (it is what users read in the hook's
"Recent Deliveries").  No reason ever contains a secret or an expected MAC.
"""

from __future__ import annotations


class DeliveryError(Exception):
    """A delivery that cannot be accepted; ``status`` is the HTTP answer."""

    status: int = 400

    def __init__(self, reason: str, status: int | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        if status is not None:
            self.status = status


class BodyTooLarge(DeliveryError):
    """The body is larger than ``max_body_size`` (413)."""

    status = 413


class SecretMissing(DeliveryError):
    """The configured secret file is missing, unreadable or empty (500).

    The reason names the file (never its contents) so the operator sees in
    GitHub's delivery log what to fix on the server.
    """

    status = 500


class SignatureError(DeliveryError):
    """The signature header is missing, malformed or wrong (401)."""

    status = 401


class Mismatch(SignatureError):
    """A well-formed signature (or token) that no configured secret produces (401)."""


class MalformedDelivery(DeliveryError):
    """The body or a header cannot be parsed into a delivery (400)."""

    status = 400


class UnsupportedMediaType(DeliveryError):
    """The Content-Type is neither JSON nor form-encoded (415)."""

    status = 415


class WrongRepository(DeliveryError):
    """The delivery is for a repository this daemon does not deploy (403)."""

    status = 403


class ConfigError(Exception):
    """The configuration is invalid; the message names the key and the fix."""
