"""A target's pause: ``.git/deployhook-paused`` in its checkout, shared by the CLI and
the daemon.

``deployhook pause`` writes the file (atomically: a finished file or none) saying who
paused and when; ``deployhook resume`` removes it.  The daemon checks it (a ``stat``
and a read of a few bytes) when a delivery would deploy, and its periodic refresh
notices a resume.  Blocking but cheap; no git process.
"""

from __future__ import annotations

import json
import os
import socket
import time
from dataclasses import dataclass
from pathlib import Path

PAUSED = "deployhook-paused"
LIMIT = 4096  # bytes read of the file (it is a few dozen)


@dataclass(frozen=True)
class Pause:
    """Who paused a target's deploys and when (Unix seconds)."""

    by: str
    since: float

    def describe(self) -> str:
        """``by alice@web1 since 2026-12-01 03:12:27 UTC``."""
        when = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(self.since))
        return f"by {self.by} since {when}"


def path_of(repo_path: str) -> Path:
    """The pause file of the checkout at ``repo_path``."""
    return Path(repo_path) / ".git" / PAUSED


def read(repo_path: str) -> Pause | None:
    """The pause of the checkout at ``repo_path``, or None when it is not paused.  A file
    that cannot be parsed still pauses (by "unknown"): only its removal resumes."""
    try:
        with open(path_of(repo_path), "rb") as f:
            raw = f.read(LIMIT)
    except FileNotFoundError:
        return None
    except OSError:
        return Pause("unknown (the pause file cannot be read)", 0.0)
    try:
        data = json.loads(raw)
        return Pause(str(data["by"])[:200], float(data["since"]))
    except (ValueError, KeyError, TypeError):
        return Pause("unknown", 0.0)


def pause(repo_path: str, by: str | None = None) -> Pause:
    """Pause the checkout at ``repo_path`` (again: the new who and when replace the old).

    Raises:
        OSError: ``repo_path`` is no checkout (no ``.git`` folder), or the file cannot be
            written.
    """
    state = Pause(by or who(), time.time())
    target = path_of(repo_path)
    if not target.parent.is_dir():
        raise FileNotFoundError(f"{repo_path} is not a git checkout (no .git folder)")
    tmp = target.with_name(f"{PAUSED}.{os.getpid()}.tmp")
    try:
        tmp.write_text(json.dumps({"by": state.by, "since": state.since}) + "\n")
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    return state


def resume(repo_path: str) -> Pause | None:
    """Remove the pause of the checkout at ``repo_path``; return what it was (None: it
    was not paused).

    Raises:
        OSError: the file cannot be removed.
    """
    state = read(repo_path)
    try:
        path_of(repo_path).unlink()
    except FileNotFoundError:
        return None
    return state


def who() -> str:
    """``user@host`` of this process (``$SUDO_USER`` when run through sudo)."""
    user = os.environ.get("SUDO_USER") or _user()
    return f"{user}@{socket.gethostname()}"


def _user() -> str:
    import getpass  # pausing only: not imported by the daemon until then

    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return f"uid {os.getuid()}"
