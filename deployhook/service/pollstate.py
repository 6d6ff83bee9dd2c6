"""What a target's polling has seen (:class:`PollState`), apart from the poller that
fills it (:mod:`deployhook.service.poller`), so a target can hold it without importing
the poller (which knows targets and the fleet)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass
class PollState:
    """What ``/health``, the page and ``deployhook check`` show of a target's polling:
    when it last got a verified delivery, when its remote last answered a poll, what it
    said, and the last poll's error ("" once a poll answers again)."""

    delivered: float | None = None
    polled: float | None = None
    tip: str | None = None
    error: str = ""
    failed: float | None = None  # when the error was first seen
    failures: int = 0  # polls in a row that failed
    decided: str | None = None  # the last tip a poll decided on (deployed it or not)

    def status(self, interval: float) -> dict[str, Any]:
        return {"interval": interval, "last_delivery": self.delivered,
                "last_poll": self.polled, "tip": self.tip, "error": self.error,
                "failing_since": self.failed, "failures": self.failures}
