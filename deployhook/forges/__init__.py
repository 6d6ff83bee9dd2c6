"""Detect, verify and parse push deliveries of every supported forge.

Pure functions over headers, bytes and parsed payloads, in the style of
gidgethub's ``sansio``: no I/O, and every refusal is a
:class:`~deployhook.errors.DeliveryError` carrying its HTTP status.  The order
for one request is :func:`detect` (or the forge a target pins), :func:`verify`
over the raw body, :func:`deployhook.forges.delivery.parse_body`, then :func:`parse`.

Forges: ``github``, ``gitlab``, ``gitea``, ``forgejo``, ``gogs``, ``bitbucket``
(Cloud) and ``bitbucket-server`` (Data Center).  One module per forge family.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from deployhook.errors import MalformedDelivery, Mismatch
from deployhook.forges import bitbucket, gitea, github, gitlab, mac
from deployhook.forges.events import Event, Other, Ping, Push, Pushes, field, header

__all__ = ["FORGES", "Event", "Other", "Ping", "Push", "Pushes", "check_headers", "detect",
           "hash_keys", "parse", "repository", "sign_headers", "verify"]

FORGES = ("github", "gitlab", "gitea", "forgejo", "gogs", "bitbucket", "bitbucket-server")
# Forgejo sends Gitea's and Gogs's headers, Gitea sends Gogs's, and all three send
# GitHub's: test their own headers first (Argo CD's util/webhook/webhook.go does too).
_OWN_HEADERS = (("forgejo", "X-Forgejo-Event"), ("gitea", "X-Gitea-Event"),
                ("gogs", "X-Gogs-Event"), ("gitlab", "X-Gitlab-Event"),
                ("gitlab", "X-Gitlab-Token"))
# What sign_headers(event="push" | "tag" | "ping") sends as each forge's event name.
_EVENT_NAMES = {
    "gitlab": {"push": "Push Hook", "tag": "Tag Push Hook"},
    "bitbucket": {"push": "repo:push", "tag": "repo:push"},
    "bitbucket-server": {"push": "repo:refs_changed", "tag": "repo:refs_changed",
                         "ping": "diagnostics:ping"},
}


def detect(headers: Mapping[str, str]) -> str:
    """The forge that sent a delivery, from the headers only that forge sends.

    A request with none of them is ``github``, so that it is refused for its
    missing signature (401) exactly as the GitHub-only daemon refuses it.
    """
    for forge, name in _OWN_HEADERS:
        if header(headers, name):
            return forge
    if header(headers, bitbucket.EVENT_HEADER):
        return bitbucket.CLOUD if bitbucket.is_cloud(headers) else bitbucket.SERVER
    return "github"


def hash_keys(forge: str, secrets: Sequence[bytes],
              headers: Mapping[str, str]) -> list[mac.Key]:
    """The HMACs to compute while the body arrives, so that :func:`verify` can check
    a :class:`~deployhook.forges.mac.Hashed` body against ``secrets`` for these headers."""
    if forge == "gitlab":
        prefix = gitlab.signed_prefix(headers)
        keys = [gitlab.signing_key(secret) for secret in secrets]
        return [("sha256", key, prefix) for key in keys if key is not None and prefix]
    algorithm = "sha256"
    if forge == "github" and github.signature_header(headers) == github.SHA1_HEADER:
        algorithm = "sha1"
    return [(algorithm, secret, b"") for secret in secrets]


def check_headers(forge: str, headers: Mapping[str, str]) -> None:
    """Refuse at once a delivery whose authentication headers are missing or malformed,
    so that a stranger's body need not be read.

    Raises:
        SignatureError: as :func:`verify` would, for any reason but a wrong secret.
    """
    try:
        verify(forge, [], headers, mac.Hashed(()), now=0)
    except Mismatch:
        return


def verify(forge: str, secrets: Sequence[bytes], headers: Mapping[str, str], body: mac.Body,
           *, now: float | None = None) -> int:
    """Index in ``secrets`` of the secret that authenticates the delivery.

    Every secret is checked, always, each in constant time.  ``body`` is the raw bytes,
    or a :class:`~deployhook.forges.mac.Hashed` body hashed as it arrived with the keys
    of :func:`hash_keys`.  ``now`` (Unix seconds, default the clock) judges GitLab
    signing-token timestamps.

    Raises:
        SignatureError: no authentication although the forge can sign, a
            malformed signature, a stale signed timestamp, or no secret that
            matches (401); the reason never shows an expected MAC.
        ValueError: ``forge`` is not one of :data:`FORGES` (a programming error).
    """
    if forge == "github":
        return github.verify(secrets, headers, body)
    if forge == "gitlab":
        return gitlab.verify(secrets, headers, body, now=now)
    if forge in gitea.PREFIXES:
        return gitea.verify(forge, secrets, headers, body)
    if forge in (bitbucket.CLOUD, bitbucket.SERVER):
        return bitbucket.verify(secrets, headers, body)
    raise ValueError(f"unknown forge {forge!r}")


def parse(forge: str, headers: Mapping[str, str], payload: dict[str, Any]) -> Event:
    """Classify a verified delivery's payload: :class:`Pushes`, :class:`Ping` or :class:`Other`.

    Raises:
        MalformedDelivery: the forge's event header is missing, or a push
            names an unsafe ref, a non-hex SHA or no repository (400).
        ValueError: ``forge`` is not one of :data:`FORGES`.
    """
    if not isinstance(payload, dict):
        raise MalformedDelivery("payload is not a JSON object")
    if forge == "github":
        return github.parse(headers, payload)
    if forge == "gitlab":
        return gitlab.parse(headers, payload)
    if forge in gitea.PREFIXES:
        return gitea.parse(forge, headers, payload)
    if forge in (bitbucket.CLOUD, bitbucket.SERVER):
        return bitbucket.parse(forge, headers, payload)
    raise ValueError(f"unknown forge {forge!r}")


def repository(forge: str, payload: Any) -> str | None:
    """The repository a payload names, as the forge spells it, or None.

    Unvalidated and for routing only (which targets' secrets to try); never
    trust it before :func:`verify` succeeded.
    """
    if forge == "gitlab":
        name = field(payload, "project", "path_with_namespace")
    elif forge == bitbucket.SERVER:
        return bitbucket.repository_name(forge, payload)
    else:
        name = field(payload, "repository", "full_name")
    return name if isinstance(name, str) else None


def sign_headers(forge: str, secret: bytes, body: bytes, event: str = "push", *,
                 delivery_id: str | None = None, now: float | None = None) -> dict[str, str]:
    """The headers ``forge`` sends with ``body`` signed (or authenticated) with ``secret``.

    ``event`` is ``push``, ``tag`` or ``ping`` (mapped to the forge's own name,
    e.g. ``Tag Push Hook``, ``diagnostics:ping``) or any of the forge's native
    event names.  ``delivery_id`` defaults to a fresh UUID; ``now`` to the clock.

    Raises:
        ValueError: ``forge`` is not one of :data:`FORGES`.
    """
    native = _EVENT_NAMES.get(forge, {"tag": "push"}).get(event, event)
    if forge == "github":
        return github.sign_headers(secret, body, native, delivery_id)
    if forge == "gitlab":
        return gitlab.sign_headers(secret, body, native, delivery_id, now)
    if forge in gitea.PREFIXES:
        return gitea.sign_headers(forge, secret, body, native, delivery_id)
    if forge in (bitbucket.CLOUD, bitbucket.SERVER):
        return bitbucket.sign_headers(forge, secret, body, native, delivery_id)
    raise ValueError(f"unknown forge {forge!r}")


_LABELS = {  # forge -> (event header, delivery id headers, first present wins)
    "github": ("X-GitHub-Event", ("X-GitHub-Delivery",)),
    "gitlab": ("X-Gitlab-Event", ()),  # gitlab.delivery_id_of: it depends on the signature
    "gitea": ("X-Gitea-Event", ("X-Gitea-Delivery",)),
    "forgejo": ("X-Forgejo-Event", ("X-Forgejo-Delivery",)),
    "gogs": ("X-Gogs-Event", ("X-Gogs-Delivery",)),
    "bitbucket": ("X-Event-Key", ("X-Request-UUID",)),
    "bitbucket-server": ("X-Event-Key", ("X-Request-Id",)),
}


def labels(forge: str, headers: Mapping[str, str]) -> tuple[str, str]:
    """(delivery id, event name) as the forge's headers give them, ``-`` where absent:
    for the log and the record, before or without verifying (never trusted)."""
    event_header, id_headers = _LABELS.get(forge, _LABELS["github"])
    if forge == "gitlab":  # the id parse() gives, so that the log and the record agree
        delivery_id = gitlab.delivery_id_of(headers) or "-"
    else:
        delivery_id = next((v for v in map(lambda h: header(headers, h), id_headers) if v),
                           "-")
    return delivery_id, header(headers, event_header) or "-"
