"""Watchers of advocates' referrals: each change, as it commits, to every open WatchReferrals.

A subscriber's queue is bounded: one that falls that far behind is told so (`Overflow`) and its
stream ends, since skipping changes silently would show a wrong state; the client reconnects
and gets the current state again.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable

from services.api.portal.view import ReferralView

QUEUE_LIMIT = 10_000  # changes waiting for one slow client before its stream is ended


class Overflow(Exception):
    """The watcher fell too far behind."""


class _Closed:
    pass


CLOSED = _Closed()
Item = ReferralView | _Closed | Overflow


class Subscription:
    def __init__(self, hub: Hub, advocate_id: str) -> None:
        self.hub = hub
        self.advocate_id = advocate_id
        self.queue: asyncio.Queue[Item] = asyncio.Queue()

    def offer(self, item: Item) -> None:
        if self.queue.qsize() >= QUEUE_LIMIT and isinstance(item, ReferralView):
            item = Overflow()
        self.queue.put_nowait(item)

    async def next(self) -> ReferralView | None:
        """The next change; None once the hub closed. Raises Overflow."""
        item = await self.queue.get()
        if isinstance(item, Overflow):
            raise item
        return item if isinstance(item, ReferralView) else None

    def close(self) -> None:
        self.hub.unsubscribe(self)


class Hub:
    def __init__(self) -> None:
        self._subs: dict[str, set[Subscription]] = {}

    def subscribe(self, advocate_id: str) -> Subscription:
        sub = Subscription(self, advocate_id)
        self._subs.setdefault(advocate_id, set()).add(sub)
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        subs = self._subs.get(sub.advocate_id)
        if subs is not None:
            subs.discard(sub)
            if not subs:
                del self._subs[sub.advocate_id]

    def publish(self, changes: Iterable[ReferralView]) -> None:
        for change in changes:
            for sub in self._subs.get(change.advocate_id, ()):
                sub.offer(change)

    def close(self) -> None:
        """Ends every open stream (the portal stops)."""
        for subs in self._subs.values():
            for sub in subs:
                sub.offer(CLOSED)

    def __len__(self) -> int:
        return sum(len(s) for s in self._subs.values())
