"""Where a request body waits until its signature is checked: memory, a file, or nowhere yet.

A body is kept in memory while it is small (``IN_MEMORY_MAX``) and the bytes of
all unverified bodies in memory stay under ``unverified_memory``; beyond either,
it goes to an unnamed temporary file (counted against ``unverified_disk``),
written by :meth:`Body.write_pending`, which the caller runs off the loop.
When both budgets are spent, :meth:`Body.add` returns a future that resolves
when another body gives its share back, so the caller stops reading from that
connection (Tornado waits for it) instead of holding more.  Strangers thus cost
at most ``unverified_memory`` bytes of memory whatever their number, and a
legitimate large delivery still gets in as soon as a body frees room.
"""

from __future__ import annotations

import asyncio
import os
import threading
from concurrent.futures import Executor, ThreadPoolExecutor
from typing import IO

IN_MEMORY_MAX = 256 * 1024  # bodies over this go to a file (and are parsed in a child)


def _lower_priority() -> None:
    """Run this thread below the IOLoop's: on a busy machine the loop is scheduled first."""
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), BODY_NICENESS)
    except OSError:  # not permitted or not Linux: same priority, still off the loop
        pass


# Bodies are hashed and spooled on one thread of their own, at a lower priority: the
# IOLoop keeps a core however many strangers send at once (hashlib and file writes drop
# the GIL).
BODY_NICENESS = 5
BODY_THREAD = ThreadPoolExecutor(1, thread_name_prefix="deployhook-body",
                                 initializer=_lower_priority)
HASH_IN_THREAD = 16 * 1024  # chunks this big are hashed in a thread (hashlib drops the GIL)
# as are the writes of spooled bodies (a write may wait on the disk)


class Budget:
    """A number of bytes shared by every connection's unverified body."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0
        self._waiters: list[asyncio.Future[None]] = []

    def take(self, size: int) -> bool:
        """Reserve ``size`` bytes; False (nothing reserved) when that would pass the limit."""
        if self.used + size > self.limit:
            return False
        self.used += size
        return True

    def give(self, size: int) -> None:
        """Return ``size`` reserved bytes and wake the bodies waiting for room."""
        self.used -= size
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    def room(self) -> asyncio.Future[None]:
        """A future resolved the next time bytes are given back."""
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        return waiter


MEMORY = Budget(16 * 1024 * 1024)  # limits set from the config by the handler
DISK = Budget(1024 * 1024 * 1024)


class Body:
    """One request's body as it arrives; :meth:`release` gives its budget back."""

    def __init__(self, memory: Budget = MEMORY, disk: Budget = DISK,
                 closer: Executor | None = None) -> None:
        """``closer``: where to close a spooled file (freeing 25 MB of page cache takes
        milliseconds); the thread that writes it, so that order is kept.  None: here."""
        self.memory, self.disk = memory, disk
        self.closer = closer
        self.data = bytearray()
        self.file: IO[bytes] | None = None
        self.size = 0
        self._in_memory = 0
        self._on_disk = 0
        self._unwritten: list[bytes] = []

    def add(self, chunk: bytes) -> asyncio.Future[None] | None:
        """Keep ``chunk``; return a future to wait on when no budget has room yet.

        After the future resolves, call :meth:`add` again with the same chunk.
        """
        size = len(chunk)
        if self.file is None and self.size + size <= IN_MEMORY_MAX and self.memory.take(size):
            self.data += chunk
            self._in_memory += size
        elif self.disk.take(size):
            if self.file is None:
                import tempfile  # the first large body only

                self.file = tempfile.TemporaryFile(prefix="deployhook-body-")
                self._unwritten.append(bytes(self.data))  # written by write_pending
                self.memory.give(self._in_memory)
                self.disk.used += self._in_memory  # cannot fail the caller: already read
                self._on_disk, self._in_memory, self.data = self._in_memory, 0, bytearray()
            self._unwritten.append(chunk)
            self._on_disk += size
        else:
            return self.disk.room()
        self.size += size
        return None

    def write_pending(self) -> None:
        """Write the chunks :meth:`add` placed in the file (safe to call from one thread
        at a time while the loop goes on).

        Raises:
            OSError: the temporary file cannot be written (a full disk).
        """
        pending, self._unwritten = self._unwritten, []
        file = self.file
        for chunk in pending:
            try:
                if file is None or file.closed:
                    return
                file.write(chunk)
            except ValueError:  # released (closed) by the loop meanwhile: nothing to keep
                return

    def release(self) -> None:
        """Give every byte back to the budgets and drop the body (idempotent)."""
        self.memory.give(self._in_memory)
        self.disk.give(self._on_disk)
        self._in_memory = self._on_disk = 0
        self.data = bytearray()
        self._unwritten = []
        if self.file is not None:
            if self.closer is None:
                self.file.close()
            else:
                self.closer.submit(self.file.close)
            self.file = None
