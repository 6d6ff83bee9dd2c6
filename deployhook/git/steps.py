"""The record of one command a deploy ran (its output kept safe to show with
:mod:`deployhook.redact`)."""

from __future__ import annotations

from dataclasses import dataclass

from deployhook.git.ssh import ssh_failure
from deployhook.redact import redact

OUTPUT_LIMIT = 64 * 1024
UNREADABLE = "fatal: Could not read from remote repository"  # git's coda to any ssh failure


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


def tail(text: str, limit: int = OUTPUT_LIMIT) -> str:
    """Keep the last ``limit`` characters of ``text``, marking the cut."""
    if len(text) <= limit:
        return text
    return f"[... {len(text) - limit} characters cut ...]\n" + text[-limit:]


def summary(step: Step, limit: int = 400) -> str:
    """A one-paragraph reason for a failed step: its last meaningful output lines; git's
    "Could not read from remote repository" replaced by what ssh said of why
    (:func:`~deployhook.git.ssh.ssh_failure`) when it said anything."""
    lines = [line for line in step.output.splitlines() if line.strip()]
    wanted: list[str] = []
    for index, line in enumerate(lines):
        if line.startswith(("fatal:", "error:", "CONFLICT")):
            wanted.append(line.strip())
            if line.endswith(":"):  # git lists what it means on the indented lines below
                following = lines[index + 1:]
                wanted += [x.strip() for x in following[:_count_indented(following)]]
    said = ssh_failure(step.output) if any(x.startswith(UNREADABLE) for x in wanted) else None
    if said:
        wanted = [said if x.startswith(UNREADABLE) else x for x in wanted]
    text = " ".join(wanted or [x.strip() for x in lines[-3:]]) or f"exit status {step.status}"
    return redact(f"{step.name} failed: {text}")[:limit]


def _count_indented(lines: list[str]) -> int:
    count = 0
    while count < len(lines) and lines[count][:1] in (" ", "\t"):
        count += 1
    return count
