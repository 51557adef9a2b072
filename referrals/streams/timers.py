"""Due-time timers of one task: at most one per id, durable, found without scanning every id.

Everything lives in a keyspace of the task's store (a `Keyspace`, whose `items()` are in key
order), nothing in the heap, so a task with a million timers costs no memory and opens at once:
- one key per live timer, 8-byte big-endian due time (epoch ms) then the id in UTF-8, value
  empty, so the store's byte order is the order in which timers fire (due times are below 2^63,
  so these keys start with a byte below 0x80);
- `0xFF` + id -> the id's due time (8 bytes), to find and replace an id's timer;
- `0xFE` -> how many timers are live (8 bytes; absent when none, so no timers, no keys).
They change in the task's transaction, together with the state the timer stands for, so after
a crash or an aborted transaction (or one record's undone writes) the three agree with that
state: there is no other copy to fall out of step.

The rule for a time before 1970: a due time before the epoch is already past, so the timer is
due now. It is stored as the epoch (0) and fires at the next `pop_due`; it is never an error.

Stores written before the id and count keys existed (timer keys only) are indexed once, when
the task opens (those writes commit with the task's next transaction): a store without a count
key is read from its first timer key, which costs one seek when it has none; once that found
none, the index trusts its own count and no count key means no timers.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import NamedTuple

from referrals.streams.state import Keyspace

_DUE_BYTES = 8
_BY_ID = b"\xff"  # + id -> due time
_COUNT = b"\xfe"  # -> live timers
_TIMER_END = 0x80  # timer keys start below this byte; the index's own keys above it
_NEVER = 1 << 63  # after every due time a timer key can hold


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


def _int(value: bytes) -> int:
    return int.from_bytes(value, "big")


class TimerIndex:
    """One task's timers: `set` one per id, `pop_due` the earliest that are due."""

    def __init__(self, store: Keyspace) -> None:
        self.store = store
        # True once a look found no timer keys of the old layout: from then on no count key
        # means no timers (every write keeps the count), and reading the count is one get,
        # not a scan of the keyspace (it is read by every `set`, so once per record or more).
        self._current = False
        # No live timer key sorts before this one (a lower bound, b"": unknown). pop_due seeks
        # here rather than to the keyspace's start: a timer moved or popped leaves a deleted
        # key behind, and RocksDB's seek steps over every one of those until a compaction
        # drops them (7% of notifications' time in the all-WON blast went to those seeks).
        # A `set` moves it down. An abort (or an undone record) brings back keys deleted
        # since, perhaps below it: the floor is forgotten after the store's next rollback.
        self._floor = b""
        self._floor_rollbacks = store.rollbacks
        # No live timer is due before this (epoch ms; 0: unknown): the due time of the key the
        # last scan stopped at, lowered by every `set`. A `pop_due` before it has nothing to
        # find and does not seek: most punctuations find nothing due, and each seek stepped
        # over the deleted keys of every timer set and cleared since the last compaction (a
        # delivery's retry timer is set and cleared once per message: 4.4 % of notifications'
        # time in the year went to those seeks). Forgotten with the floor.
        self._next_due = 0
        self._count()

    def _count(self) -> int:
        count = self.store.get(_COUNT)
        if count is not None:
            return _int(count)
        return 0 if self._current else self._index_old_layout()

    def _index_old_layout(self) -> int:
        """Adds the id and count keys to a store that holds timer keys only (an id found twice
        keeps its earliest timer: never written so, but there must be one per id). Also when
        the writes that did so were undone with the record that made them."""
        count = 0
        for key, _ in list(self._timer_items()):
            due_ms, timer_id = parse_timer_key(key)
            if self.store.get(_BY_ID + timer_id.encode("utf-8")) is not None:
                self.store.delete(key)
                continue
            self.store.put(_BY_ID + timer_id.encode("utf-8"), due_ms.to_bytes(_DUE_BYTES, "big"))
            count += 1
        if count:  # an empty index writes nothing: reading it must not add changelog entries
            self._put_count(count)
        else:  # nothing to index; had it written keys, undoing its record could lose them
            self._current = True
        return count

    def _put_count(self, count: int) -> None:
        """No count key means none (an empty index leaves its keyspace empty)."""
        if count:
            self.store.put(_COUNT, count.to_bytes(_DUE_BYTES, "big"))
        else:
            self.store.delete(_COUNT)

    def _timer_items(self, start: bytes = b"") -> Iterator[tuple[bytes, bytes]]:
        """The timer keys in due order (the index's own keys sort after them), from `start`."""
        for key, value in self.store.items(start):
            if key[0] >= _TIMER_END:
                return
            yield key, value

    def __len__(self) -> int:
        return self._count()

    def due_ms(self, timer_id: str) -> int | None:
        due = self.store.get(_BY_ID + timer_id.encode("utf-8"))
        return None if due is None else _int(due)

    def set(self, timer_id: str, due_ms: int | None) -> None:
        """`timer_id`'s timer is now `due_ms` (None: none); a write in the task's transaction."""
        due_ms = None if due_ms is None else max(due_ms, 0)
        count = self._count()  # first: indexes an old store, so the id key below is there
        by_id = _BY_ID + timer_id.encode("utf-8")
        stored = self.store.get(by_id)
        old = None if stored is None else _int(stored)
        if old == due_ms:
            return
        if old is not None:
            self.store.delete(timer_key(old, timer_id))
            count -= 1
        if due_ms is None:
            self.store.delete(by_id)
        else:
            key = timer_key(due_ms, timer_id)
            self.store.put(key, b"")
            self.store.put(by_id, due_ms.to_bytes(_DUE_BYTES, "big"))
            self._floor = min(self._floor, key)
            self._next_due = min(self._next_due, due_ms)
            count += 1
        self._put_count(count)

    def pop_due(self, now_ms: int, limit: int) -> list[Timer]:
        """Up to `limit` timers due at `now_ms`, earliest first (then by id); they are removed,
        so the caller sets the next one when there is one. Reads only the due keys and one
        more (an ordered scan from the earliest)."""
        out: list[Timer] = []
        if limit <= 0:
            return out
        if self.store.rollbacks != self._floor_rollbacks:
            self._floor, self._floor_rollbacks = b"", self.store.rollbacks
            self._next_due = 0
        if now_ms < self._next_due:
            return out
        floor, next_due = bytes([_TIMER_END]), _NEVER  # none left unless the scan stops at one
        for key, _ in self._timer_items(self._floor):
            timer = parse_timer_key(key)
            if timer.due_ms > now_ms:
                floor, next_due = key, timer.due_ms
                break
            out.append(timer)
            if len(out) >= limit:
                floor, next_due = key, 0  # more may be due: the next call looks again
                break
        self._floor, self._next_due = floor, next_due
        for timer in out:
            self.set(timer.id, None)
        return out
