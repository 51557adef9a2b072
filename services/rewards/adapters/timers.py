"""When each advocate's next pending reward falls due: a durable index plus an in-memory heap.

The timers keyspace holds one key per advocate with a PENDING reward: 8-byte big-endian due time
(epoch ms) + advocate_id, value empty. It changes in the same transaction as the ledger it
indexes, so after a crash the index and the ledgers agree. On assignment a task's keys are
loaded into a heap; punctuation pops only what is due, never scanning every advocate.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable

from referrals.streams.state import KeyValue

_DUE_BYTES = 8

StoreOf = Callable[[int], KeyValue]  # task -> its timers keyspace


def timer_key(due_ms: int, advocate_id: str) -> bytes:
    """Keys sort by due time (big-endian), then advocate."""
    if due_ms < 0:
        raise ValueError(f"due time before 1970: {due_ms}")
    return due_ms.to_bytes(_DUE_BYTES, "big") + advocate_id.encode("utf-8")


def parse_timer_key(key: bytes) -> tuple[int, str]:
    if len(key) <= _DUE_BYTES:
        raise ValueError(f"not a timer key: {key!r}")
    return int.from_bytes(key[:_DUE_BYTES], "big"), key[_DUE_BYTES:].decode("utf-8")


class TimerIndex:
    """Per task: the live timer keys (mirroring the store) and a heap of them by due time.

    The heap may hold stale entries (a timer moved or deleted); they are skipped when popped,
    because only keys in the live set count.
    """

    def __init__(self, store_of: StoreOf) -> None:
        self._store_of = store_of
        self._heaps: dict[int, list[tuple[int, str]]] = {}
        self._live: dict[int, set[bytes]] = {}

    def load(self, task: int) -> None:
        """(Re)builds the task's index from its store (on assignment and after an abort)."""
        live = {key for key, _ in self._store_of(task).items()}
        heap = [parse_timer_key(key) for key in live]
        heapq.heapify(heap)
        self._live[task], self._heaps[task] = live, heap

    def drop(self, task: int) -> None:
        self._live.pop(task, None)
        self._heaps.pop(task, None)

    def pending(self) -> int:
        """Advocates with a reward waiting for its due time, over every owned task."""
        return sum(len(live) for live in self._live.values())

    def move(self, task: int, advocate_id: str, old_ms: int | None, new_ms: int | None) -> None:
        """The advocate's next due time changed from `old_ms` to `new_ms` (None: no timer)."""
        if old_ms is not None and old_ms != new_ms:
            self.remove(task, advocate_id, old_ms)
        if new_ms is not None:
            key = timer_key(new_ms, advocate_id)
            if key not in self._live[task]:
                self._store_of(task).put(key, b"")
                self._live[task].add(key)
                heapq.heappush(self._heaps[task], (new_ms, advocate_id))

    def remove(self, task: int, advocate_id: str, due_ms: int) -> None:
        key = timer_key(due_ms, advocate_id)
        if key in self._live[task]:
            self._store_of(task).delete(key)
            self._live[task].discard(key)

    def due(self, task: int, now_ms: int, limit: int) -> list[tuple[int, str]]:
        """Pops up to `limit` live timers due at `now_ms`: (due_ms, advocate_id), earliest first.

        The keys stay in the store until the caller moves or removes them.
        """
        heap, live = self._heaps.get(task, []), self._live.get(task, set())
        out: list[tuple[int, str]] = []
        while heap and heap[0][0] <= now_ms and len(out) < limit:
            due_ms, advocate_id = heapq.heappop(heap)
            if timer_key(due_ms, advocate_id) in live:
                out.append((due_ms, advocate_id))
        return out
