"""Unverified deliveries refused, kept in aggregate: the record's per-minute counts and a
rate-limited log.

A stranger can send thousands of wrongly signed requests a second.  Each is still
answered (401 and its reason), but none gets a row of its own in the record or a
line of its own in the log: the record adds it to a count per minute, sender (an
IPv4 address, an IPv6 /64), target, status and reason (:meth:`Recorder.reject
<deployhook.record.recorder.Recorder.reject>`), and the log shows the first refusal
of each sender in a minute in full, then at the end of that minute one summary line
per sender with how many more there were.  ``/metrics`` counts every answer as before.

A sender refused more than ``FREE_REFUSALS`` times in a minute waits
``refused_delay`` seconds for each further wrong-signature answer: a flood over a few
connections then slows itself down instead of taking the CPU a deploy needs, while
a forge with a wrong secret still gets every answer.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

from deployhook.network import sender_key
from deployhook.record.recorder import Recorder

log = logging.getLogger("deployhook.http")
MINUTE = 60.0
MAX_SENDERS = 1000  # senders tracked for the log in one minute; the rest are summed up
FREE_REFUSALS = 20  # refusals of one sender in a minute answered without delay


@dataclass
class _Tally:
    count: int
    status: int
    reason: str


class Rejections:
    """The aggregate of refused unverified deliveries for one daemon."""

    def __init__(self, record: Recorder, every: float = MINUTE) -> None:
        """``every``: seconds between two summaries."""
        self.record = record
        self.every = every
        self._tallies: dict[str, _Tally] = {}  # sender -> refusals not logged this minute
        self._others = 0  # refusals from senders past MAX_SENDERS this minute
        self._timer: asyncio.TimerHandle | None = None
        self.total = 0

    def count(self, sender: str, target: str, status: int, reason: str) -> int:
        """Count one refusal of the client at address ``sender``, under its
        :func:`~deployhook.network.sender_key` (an IPv6 client by its /64); how many that
        sender has had since the last summary, this one included (1: the caller logs it
        in full; more: it is in the summary)."""
        self.total += 1
        sender = sender_key(sender)
        self.record.reject(sender, target, status, reason)
        tally = self._tallies.get(sender)
        if tally is not None:
            tally.count += 1
            tally.status, tally.reason = status, reason
            return tally.count + 1
        if len(self._tallies) >= MAX_SENDERS:
            self._others += 1
            return FREE_REFUSALS + 1  # too many senders: every one of them waits
        self._tallies[sender] = _Tally(0, status, reason)
        if self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(self.every, self.summarize)
        return 1

    def summarize(self) -> None:
        """Log one line per sender refused more than once since the last summary, and
        start a new minute."""
        self._timer = None
        tallies, others = self._tallies, self._others
        self._tallies, self._others = {}, 0
        for sender, tally in tallies.items():
            if tally.count:
                log.warning("%d more deliveries from %s refused in the last minute (the "
                            "last: %d %s)", tally.count, sender, tally.status, tally.reason)
        if others:
            log.warning("%d deliveries from more than %d other senders refused in the "
                        "last minute", others, MAX_SENDERS)
