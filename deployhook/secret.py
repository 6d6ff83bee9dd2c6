"""The webhook secret: read from its file on demand, never logged or returned.

The file is checked (one ``stat``) for every delivery and read again when it
changed, so rotating the secret needs no restart and a deleted file is noticed
at once.  A file changed in the last two seconds is read every time, since a
same-size rewrite within one timestamp tick would look unchanged.
``$DEPLOYHOOK_SECRET`` replaces the file when set.
"""

from __future__ import annotations

import os
import secrets
import time
from pathlib import Path

from deployhook.errors import SecretMissing

PLACEHOLDER = b"replace-me"  # how secret.txt.example starts
SETTLED_NS = 2_000_000_000  # a file unchanged this long is cached until its stat changes


class SecretSource:
    """Supplies the current secret, or raises :class:`SecretMissing` naming the file."""

    def __init__(self, path: str, fixed: bytes | None = None) -> None:
        self.path = path
        self._fixed = fixed
        self._stamp: tuple[int, int, int, int] | None = None
        self._value = b""

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
            value = self._read()
        except OSError as exc:
            self._stamp = None
            reason = "not found" if isinstance(exc, FileNotFoundError) else "not readable"
            raise SecretMissing(f"secret file {self.path} is {reason} on the server") from None
        if not value:
            raise SecretMissing(f"secret file {self.path} is empty on the server")
        if value.startswith(PLACEHOLDER):
            raise SecretMissing(f"secret file {self.path} still holds the example placeholder; "
                                "run 'deployhook init' for a random secret")
        return value

    def _read(self) -> bytes:
        st = os.stat(self.path)
        stamp = (st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
        if stamp == self._stamp:
            return self._value
        value = Path(self.path).read_bytes().strip()
        settled = time.time_ns() - max(st.st_mtime_ns, st.st_ctime_ns) > SETTLED_NS
        self._stamp, self._value = (stamp if settled else None), value
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
