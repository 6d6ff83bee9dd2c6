"""The webhook secret: read from its file on demand, never logged or returned.

The file (a few bytes) is read for every delivery, so rotating the secret needs
no restart and a deleted file is noticed at once.  ``$DEPLOYHOOK_SECRET``
replaces the file when set.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from .errors import SecretMissing

PLACEHOLDER = b"replace-me"  # how secret.txt.example starts


class SecretSource:
    """Supplies the current secret, or raises :class:`SecretMissing` naming the file."""

    def __init__(self, path: str, fixed: bytes | None = None) -> None:
        self.path = path
        self._fixed = fixed

    def __repr__(self) -> str:  # never show the value
        return f"SecretSource({self.path!r})"

    def get(self) -> bytes:
        """Return the secret's bytes (surrounding whitespace removed).

        Raises:
            SecretMissing: the file does not exist, cannot be read, or is empty.
        """
        if self._fixed:
            return self._fixed
        try:
            value = Path(self.path).read_bytes().strip()
        except OSError as exc:
            reason = "not found" if isinstance(exc, FileNotFoundError) else "not readable"
            raise SecretMissing(f"secret file {self.path} is {reason} on the server") from None
        if not value:
            raise SecretMissing(f"secret file {self.path} is empty on the server")
        if value.startswith(PLACEHOLDER):
            raise SecretMissing(f"secret file {self.path} still holds the example placeholder; "
                                "run 'deployhook init' for a random secret")
        return value


def create_secret_file(path: str) -> bool:
    """Write a fresh random secret to ``path`` (mode 0600) unless it exists.

    Returns True when a new file was written.
    """
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return False
    with os.fdopen(fd, "w") as f:
        f.write(secrets.token_hex(32) + "\n")
    return True
