"""What a node needs to reach the fleet's Redis and to sign what it writes there: the
Redis password, the TLS options, the fleet key; and the Redis URL fit to show.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from deployhook.errors import ConfigError
from deployhook.redact import redact
from deployhook.secret import parse_secrets

MIN_KEY = 32  # characters of the fleet key, at least ('deployhook init' writes 64)
_PASSWORD = re.compile(r"(rediss?://)([^@/]*@)")


def masked(url: str | None) -> str:
    """``redis_url`` safe to log or answer: its user and password replaced by ``***``."""
    return redact(_PASSWORD.sub(r"\1***@", url or ""))


def password(path: str | None) -> str | None:
    """The Redis password in ``path`` (``redis_password_file``; its first line), or None
    when no file is set.

    Raises:
        ConfigError: the file is set but missing, unreadable or empty (naming the file).
    """
    if path is None:
        return None
    try:
        lines = [line.strip() for line in Path(path).read_text().splitlines() if line.strip()]
    except OSError as exc:
        raise ConfigError(f"redis_password_file {path} cannot be read: {exc.strerror}") \
            from None
    if not lines:
        raise ConfigError(f"redis_password_file {path} is empty")
    return lines[0]


def tls(url: str | None, ca_file: str | None) -> dict[str, Any]:
    """The TLS options of a Redis client of ``url``: with ``rediss://`` and
    ``redis_ca_file`` set, that CA (and only it) must have signed Redis's certificate,
    whose name must be ``url``'s host; without a CA file, the system's CAs.

    Raises:
        ConfigError: ``ca_file`` is set but missing or unreadable (naming it).
    """
    if ca_file is None or not (url or "").startswith("rediss://"):
        return {}
    try:
        with open(ca_file, "rb"):
            pass
    except OSError as exc:
        raise ConfigError(f"redis_ca_file {ca_file} cannot be read: {exc.strerror}") \
            from None
    return {"ssl_ca_certs": ca_file, "ssl_cert_reqs": "required", "ssl_check_hostname": True}


def fleet_key(path: str | None) -> bytes:
    """The fleet key in ``path`` (``fleet_key_file``; its first line that is not a
    comment), which signs desired states and outcomes.

    Raises:
        ConfigError: no file is set, or it is missing, unreadable, empty or shorter than
            :data:`MIN_KEY` characters (naming the file, never showing the key).
    """
    hint = ("'deployhook init' writes one; every node needs the same file "
            "(docs/fleet.rst)")
    if path is None:
        raise ConfigError(f"redis_url needs fleet_key_file: {hint}")
    try:
        keys = parse_secrets(Path(path).read_bytes())
    except OSError as exc:
        raise ConfigError(f"fleet_key_file {path} cannot be read: {exc.strerror}; {hint}") \
            from None
    if not keys or len(keys[0]) < MIN_KEY:
        raise ConfigError(f"fleet_key_file {path} holds no key of {MIN_KEY} characters or "
                          f"more; {hint}")
    return keys[0]
