"""A task's wake-up index: which advocates a punctuation must tick, without scanning them all.

The durable part is keyspace `w` of the `index` store (key: due time + advocate_id, see
`storage`); in memory a heap orders the same entries and a dict holds each advocate's current
due time, so replacing an advocate's timer deletes its old key and leaves a stale heap entry
that is skipped when it surfaces. Both are rebuilt from the store when the task is assigned.
"""

from __future__ import annotations

import heapq

from referrals.streams.state import KeyValue
from services.notifications.adapters.storage import parse_wakeup_key, wakeup_key


class WakeupIndex:
    def __init__(self, store: KeyValue) -> None:
        self.store = store
        self._due: dict[str, int] = {}
        self._heap: list[tuple[int, str]] = []
        for key, _ in store.items():
            due_ms, advocate_id = parse_wakeup_key(key)
            if advocate_id in self._due:  # never written so, but one timer per advocate
                store.delete(key)
                continue
            self._due[advocate_id] = due_ms
        self._heap = [(due, advocate) for advocate, due in self._due.items()]
        heapq.heapify(self._heap)

    def __len__(self) -> int:
        return len(self._due)

    def set(self, advocate_id: str, due_ms: int | None) -> None:
        """The advocate's next wake-up (None: none); a write in the task's transaction."""
        old = self._due.get(advocate_id)
        if old == due_ms:
            return
        if old is not None:
            self.store.delete(wakeup_key(old, advocate_id))
            del self._due[advocate_id]
        if due_ms is not None:
            self.store.put(wakeup_key(due_ms, advocate_id), b"")
            self._due[advocate_id] = due_ms
            heapq.heappush(self._heap, (due_ms, advocate_id))
        if len(self._heap) > 2 * len(self._due) + 1024:  # mostly stale entries: rebuild
            self._heap = [(due, advocate) for advocate, due in self._due.items()]
            heapq.heapify(self._heap)

    def pop_due(self, now_ms: int, limit: int) -> list[str]:
        """Up to `limit` advocates due at `now_ms`, earliest first; their timers are removed
        (ticking them sets the next one)."""
        out: list[str] = []
        while self._heap and self._heap[0][0] <= now_ms and len(out) < limit:
            due_ms, advocate_id = heapq.heappop(self._heap)
            if self._due.get(advocate_id) != due_ms:
                continue  # replaced since
            self.set(advocate_id, None)
            out.append(advocate_id)
        return out
