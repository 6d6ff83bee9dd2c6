"""The record of one command a deploy ran, and helpers to keep it safe to show."""

from __future__ import annotations

import re
from dataclasses import dataclass

OUTPUT_LIMIT = 64 * 1024
_USERINFO = re.compile(r"(\b[a-zA-Z][a-zA-Z0-9+.-]*://)[^/@\s]+@")


@dataclass(frozen=True)
class Step:
    """One command: what ran, its exit status, how long it took, its output's tail."""

    name: str
    command: str
    status: int
    duration: float
    output: str

    @property
    def ok(self) -> bool:
        return self.status == 0


def redact(text: str) -> str:
    """Remove credentials from URLs (``https://user:token@host`` -> ``https://***@host``)."""
    return _USERINFO.sub(r"\1***@", text)


def tail(text: str, limit: int = OUTPUT_LIMIT) -> str:
    """Keep the last ``limit`` characters of ``text``, marking the cut."""
    if len(text) <= limit:
        return text
    return f"[... {len(text) - limit} characters cut ...]\n" + text[-limit:]


def summary(step: Step, limit: int = 400) -> str:
    """A one-paragraph reason for a failed step: its last meaningful output lines."""
    lines = [line.strip() for line in step.output.splitlines() if line.strip()]
    wanted = [line for line in lines if line.startswith(("fatal:", "error:"))] or lines[-3:]
    text = " ".join(wanted) or f"exit status {step.status}"
    return redact(f"{step.name} failed: {text}")[:limit]
