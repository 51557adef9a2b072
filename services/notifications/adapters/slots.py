"""Slots that let urgent deliveries in first: a semaphore with two queues of waiters.

The thank-you for a won deal is the message the program promises at once (the contract: an
instant thank-you; the target: accepted by SMTP within a second of the WON). When the relay's
sessions are all busy (a burst of status messages, a nurture step due for thousands), a WON
thank-you waiting its turn behind them would take as long as the whole queue. So a waiter
marked urgent is given the next free slot before any waiter that is not; within each group,
first come, first served. Nothing else changes: the same number of slots, and every waiter
gets one in time (urgent messages are a small share of all).

`urgent` is the one place that says which messages go first; the processor (room beyond
NOTIFICATIONS_MAX_IN_FLIGHT) and the renderer (the next batch) ask it too.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from referrals.programs.model import MessageKind
from services.notifications.domain.messages import Message

URGENT_KINDS = frozenset({MessageKind.WON})


def urgent(message: Message) -> bool:
    """Whether `message` goes ahead of the others waiting (a WON's thank-you)."""
    return message.kind in URGENT_KINDS


class Slots:
    def __init__(self, size: int) -> None:
        self.size = size
        self._free = size
        self._urgent: deque[asyncio.Future[None]] = deque()
        self._normal: deque[asyncio.Future[None]] = deque()

    @property
    def waiting(self) -> int:
        return sum(not f.done() for f in (*self._urgent, *self._normal))

    async def acquire(self, urgent: bool = False) -> None:
        if self._free > 0 and not self.waiting:
            self._free -= 1
            return
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        (self._urgent if urgent else self._normal).append(waiter)
        try:
            await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():  # granted as it was cancelled
                self.release()  # pass the slot on
            raise

    def release(self) -> None:
        """Hands the slot to the first urgent waiter, else the first other one, else frees it."""
        for queue in (self._urgent, self._normal):
            while queue:
                waiter = queue.popleft()
                if not waiter.done():  # a cancelled waiter is skipped
                    waiter.set_result(None)
                    return
        self._free += 1

    @asynccontextmanager
    async def slot(self, urgent: bool = False) -> AsyncIterator[None]:
        await self.acquire(urgent)
        try:
            yield
        finally:
            self.release()
