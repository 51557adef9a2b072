"""Due-time timers of one task: at most one per id, durable, found without scanning every id.

The durable part is a keyspace of the task's store (a `KeyValue`): one key per live timer,
8-byte big-endian due time (epoch ms) then the id in UTF-8, value empty, so the store's byte
order is the order in which timers fire. It changes in the task's transaction, together with
the state the timer stands for, so after a crash the two agree. In memory a heap orders the
same timers and a dict holds each id's current due time; replacing a timer deletes its old key
and leaves a stale heap entry that is skipped when it surfaces. Both are rebuilt from the store
when the task is assigned (and after an aborted transaction, by building a new index).

The rule for a time before 1970: a due time before the epoch is already past, so the timer is
due now. It is stored as the epoch (0) and fires at the next `pop_due`; it is never an error.
"""

from __future__ import annotations

import heapq
from typing import NamedTuple

from referrals.streams.state import KeyValue

_DUE_BYTES = 8
# Stale heap entries tolerated before the heap is rebuilt from the live timers.
_SLACK = 1024


class Timer(NamedTuple):
    due_ms: int
    id: str


def timer_key(due_ms: int, timer_id: str) -> bytes:
    """Due time first (big-endian, a time before 1970 as 0: due now), then the id."""
    return max(due_ms, 0).to_bytes(_DUE_BYTES, "big") + timer_id.encode("utf-8")


def parse_timer_key(key: bytes) -> Timer:
    if len(key) <= _DUE_BYTES:
        raise ValueError(f"not a timer key: {key!r}")
    return Timer(int.from_bytes(key[:_DUE_BYTES], "big"), key[_DUE_BYTES:].decode("utf-8"))


class TimerIndex:
    """One task's timers: `set` one per id, `pop_due` the earliest that are due."""

    def __init__(self, store: KeyValue) -> None:
        """Loads the timers the store holds (an id found twice keeps its earliest timer: never
        written so, but the index must hold one per id)."""
        self.store = store
        self._due: dict[str, int] = {}
        for key, _ in store.items():
            due_ms, timer_id = parse_timer_key(key)
            if timer_id in self._due:
                store.delete(key)
                continue
            self._due[timer_id] = due_ms
        self._heap: list[tuple[int, str]] = []
        self._rebuild()

    def __len__(self) -> int:
        return len(self._due)

    def due_ms(self, timer_id: str) -> int | None:
        return self._due.get(timer_id)

    def set(self, timer_id: str, due_ms: int | None) -> None:
        """`timer_id`'s timer is now `due_ms` (None: none); a write in the task's transaction."""
        due_ms = None if due_ms is None else max(due_ms, 0)
        old = self._due.get(timer_id)
        if old == due_ms:
            return
        if old is not None:
            self.store.delete(timer_key(old, timer_id))
            del self._due[timer_id]
        if due_ms is not None:
            self.store.put(timer_key(due_ms, timer_id), b"")
            self._due[timer_id] = due_ms
            heapq.heappush(self._heap, (due_ms, timer_id))
        if len(self._heap) > 2 * len(self._due) + _SLACK:  # mostly stale entries
            self._rebuild()

    def pop_due(self, now_ms: int, limit: int) -> list[Timer]:
        """Up to `limit` timers due at `now_ms`, earliest first (then by id); they are removed,
        so the caller sets the next one when there is one."""
        out: list[Timer] = []
        while self._heap and self._heap[0][0] <= now_ms and len(out) < limit:
            due_ms, timer_id = heapq.heappop(self._heap)
            if self._due.get(timer_id) != due_ms:
                continue  # replaced or removed since it was pushed
            self.set(timer_id, None)
            out.append(Timer(due_ms, timer_id))
        return out

    def _rebuild(self) -> None:
        self._heap = [(due, timer_id) for timer_id, due in self._due.items()]
        heapq.heapify(self._heap)
