"""The webhook secrets: read from their file on demand, never logged or returned.

The file holds one secret per line (blank lines and ``#`` comment lines ignored,
surrounding whitespace removed), so a secret can be rotated with no delivery
refused: add the new line, change the forge, remove the old line.

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
MIN_LENGTH = 16  # bytes; ``deployhook check`` warns for a shorter secret
SETTLED_NS = 2_000_000_000  # a file unchanged this long is cached until its stat changes


class SecretSource:
    """Supplies the current secrets, or raises :class:`SecretMissing` naming the file."""

    def __init__(self, path: str, fixed: bytes | None = None) -> None:
        self.path = path
        self._fixed = fixed
        self._stamp: tuple[int, int, int, int] | None = None
        self._values: tuple[bytes, ...] = ()

    def __repr__(self) -> str:  # never show the value
        return f"SecretSource({self.path!r})"

    def get(self) -> bytes:
        """Return the first secret (for callers that sign with one, such as ``send``).

        Raises:
            SecretMissing: as :meth:`all`.
        """
        return self.all()[0]

    def all(self) -> tuple[bytes, ...]:
        """Return every secret, in file order (as :func:`parse_secrets` reads them);
        ``$DEPLOYHOOK_SECRET`` is the only one when set.

        Raises:
            SecretMissing: the file does not exist, cannot be read, holds no secret (only
                blank and comment lines), or a line still holds the example placeholder.
        """
        if self._fixed:
            return (self._fixed,)
        try:
            values = self._read()
        except OSError as exc:
            self._stamp = None
            reason = "not found" if isinstance(exc, FileNotFoundError) else "not readable"
            raise SecretMissing(f"secret file {self.path} is {reason} on the server") from None
        if not values:
            raise SecretMissing(f"secret file {self.path} is empty on the server")
        for number, value in enumerate(values, 1):
            if value.startswith(PLACEHOLDER):
                raise SecretMissing(f"secret file {self.path} still holds the example "
                                    f"placeholder (secret {number}); "
                                    "run 'deployhook init' for a random secret")
        return values

    def _read(self) -> tuple[bytes, ...]:
        st = os.stat(self.path)
        stamp = (st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
        if stamp == self._stamp:
            return self._values
        values = parse_secrets(Path(self.path).read_bytes())
        settled = time.time_ns() - max(st.st_mtime_ns, st.st_ctime_ns) > SETTLED_NS
        self._stamp, self._values = (stamp if settled else None), values
        return values


def parse_secrets(text: bytes) -> tuple[bytes, ...]:
    """The secrets of a secret file's bytes (:func:`numbered_secrets` without the numbers)."""
    return tuple(value for _, value in numbered_secrets(text))


def numbered_secrets(text: bytes) -> tuple[tuple[int, bytes], ...]:
    """(line number, secret) of each secret of a secret file's bytes: one per line,
    stripped; blank lines and comment lines (``#`` first, after any whitespace) are
    never secrets."""
    lines = ((number, line.strip()) for number, line in enumerate(text.splitlines(), 1))
    return tuple((number, line) for number, line in lines
                 if line and not line.startswith(b"#"))


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
