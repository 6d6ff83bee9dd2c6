"""The daemon's event bus: one list of subscribers per kind of event, typed.

A part that wants to hear of something subscribes with the ``on_*`` method of that
kind; the part where it happens publishes it with the method of the same name.
Subscribers run on the IOLoop, in the order they subscribed, and must not block.

- :meth:`Events.started`: a run of a target starts, with the pushes it deploys.
- :meth:`Events.ran`: a run of a target ended (its result).
- :meth:`Events.head_moved`: a target's HEAD moved without a deploy of ours.
- :meth:`Events.idle`: a run or a webhook answer ended (a reload may be due).

:class:`InFlight` counts the webhook answers not sent yet and the verified deliveries
being decided, and publishes ``idle`` as each one ends.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from deployhook.forges.delivery import Push
    from deployhook.git.checkout import RunResult
    from deployhook.service.target import Target

Started = Callable[["Target", "list[Push]"], None]
Ran = Callable[["Target", "RunResult"], None]
HeadMoved = Callable[["Target"], None]
Idle = Callable[[], None]


class Events:
    """Who wants to hear of what, and telling them."""

    def __init__(self) -> None:
        self._started: list[Started] = []
        self._ran: list[Ran] = []
        self._head_moved: list[HeadMoved] = []
        self._idle: list[Idle] = []

    def on_started(self, subscriber: Started) -> None:
        """Call ``subscriber(target, pushes)`` as each run starts."""
        self._started.append(subscriber)

    def on_ran(self, subscriber: Ran) -> None:
        """Call ``subscriber(target, result)`` after each run."""
        self._ran.append(subscriber)

    def on_head_moved(self, subscriber: HeadMoved) -> None:
        """Call ``subscriber(target)`` when a target's HEAD moved without a deploy of ours."""
        self._head_moved.append(subscriber)

    def on_idle(self, subscriber: Idle) -> None:
        """Call ``subscriber()`` whenever a run or a webhook answer ends."""
        self._idle.append(subscriber)

    def started(self, target: Target, pushes: list[Push]) -> None:
        """A run of ``target`` deploying ``pushes`` starts."""
        for subscriber in self._started:
            subscriber(target, pushes)

    def ran(self, target: Target, result: RunResult) -> None:
        """A run of ``target`` ended with ``result``; then :meth:`idle`."""
        for subscriber in self._ran:
            subscriber(target, result)
        self.idle()

    def head_moved(self, target: Target) -> None:
        """``target``'s HEAD moved without a deploy of ours."""
        for subscriber in self._head_moved:
            subscriber(target)

    def idle(self) -> None:
        """A run or a webhook answer ended."""
        for subscriber in self._idle:
            subscriber()


class InFlight:
    """The webhook answers not sent yet (``count``), and the verified deliveries being
    decided (``deciding``: parsed, recorded, handed to their targets' workers), which a
    stop or a reload waits for as for a deploy, whether or not their connection lasts."""

    def __init__(self, events: Events) -> None:
        self.events = events
        self.count = 0
        self.deciding = 0
        self._waiters: list[asyncio.Future[None]] = []

    def opened(self) -> None:
        """A webhook request's headers arrived: its answer is now in flight."""
        self.count += 1

    def closed(self) -> None:
        """An answer was sent (or its connection closed): publish ``idle``."""
        self.count -= 1
        self.events.idle()

    @contextlib.contextmanager
    def decision(self) -> Iterator[None]:
        """Count a verified delivery as being decided for the ``with`` block; publish
        ``idle`` after the last one."""
        self.deciding += 1
        try:
            yield
        finally:
            self.deciding -= 1
            if not self.deciding:
                for waiter in self._waiters:
                    if not waiter.done():
                        waiter.set_result(None)
                self._waiters.clear()
                self.events.idle()

    async def decided(self) -> None:
        """Return once no verified delivery is being decided."""
        if self.deciding:
            waiter = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
            await waiter
