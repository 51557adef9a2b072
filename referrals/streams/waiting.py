"""Consumed records that cannot be handled yet wait here, durably, for what they depend on.

A record may need something that has not arrived: its program's config, the owner of its
payout. It then waits in a `WaitingLot`, one per task and kind of wait, for a named dependency
(e.g. ("program", program_id), ("payout", payout_id)):
- it is kept as consumed: coordinates and raw key/value bytes, so it can be run again exactly as
  it arrived, or dead-lettered unchanged;
- records leave in arrival order: `release` takes everything waiting for a dependency that
  arrived, `sweep` everything whose dependency is now there and everything that waited longer
  than the lot's wait, which becomes a dead letter with the lot's error (e.g. UNKNOWN_PROGRAM);
- with an ordering key (e.g. the advocate), a record whose key has an earlier record still
  waiting waits behind it, whatever its own dependency: records of one key keep their order;
- one clock: the `now` the runtime passes to `process` and `punctuate` (the wall clock);
- released records run again through `rerun`, as the runtime runs a consumed one.

Layout, in the lot's keyspace: 8-byte big-endian arrival number -> the entry (msgpack, the raw
key and value as binary, not base64: a parked record costs its own size plus ~100 bytes). The
arrival number continues from the largest one stored, so keys sort in arrival order.

Bounded: a parked entry becomes one state value, written to the store's changelog in the task's
transaction. An entry whose encoded form exceeds `MAX_PARKED_BYTES` (256 KiB, a quarter of
Kafka's default 1 MiB record limit) is refused with a `PermanentError` reason `TOO_LARGE`, so
the runtime dead-letters the record at once instead of writing a value the broker rejects,
which would abort the task's transaction on every retry and stall its partition. Contract
records are far smaller (ids of at most 256 and strings of at most 4,096 characters). Writes go
through the task's store, so they commit or abort with the task's transaction; the in-memory
index (what waits for what, since when) is built from the store when the lot is made: on
assignment, and again after an aborted transaction.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, NamedTuple

import msgspec

from referrals.platform.errors import PermanentError
from referrals.platform.timestamps import to_ms
from referrals.streams.processor import DeadLetterOut, Inbound, Output
from referrals.streams.serde import Codec
from referrals.streams.state import KeyValue

log = logging.getLogger(__name__)
Dependency = tuple[str, str]  # (kind, id), e.g. ("program", "acme-b2b")
_SEQ_BYTES = 8
# The largest encoded entry a lot stores (see the module docstring).
MAX_PARKED_BYTES = 256 * 1024


class Waiting(msgspec.Struct, frozen=True, array_like=True):
    """A consumed record, as consumed, waiting for `dependency` since `since_ms` (epoch ms)."""

    dependency: Dependency
    order_key: str | None
    since_ms: int
    topic: str
    partition: int
    offset: int
    key: str | None
    timestamp_ms: int
    raw_key: bytes | None
    raw_value: bytes | None

    def inbound(self, value: Any) -> Inbound:
        """The record as the runtime delivered it, with `value` decoded from `raw_value` (a
        dead letter uses only the coordinates and raw bytes: there `value` may be None)."""
        return Inbound(
            self.topic, self.partition, self.offset, self.key, value, self.timestamp_ms,
            self.raw_key, self.raw_value,
        )  # fmt: skip

    def dead_letter(self, error: PermanentError) -> DeadLetterOut:
        """The record, unchanged, to its topic's dead-letter queue."""
        return DeadLetterOut(self.inbound(None), error)


@dataclass(frozen=True, slots=True)
class Swept:
    """What a sweep took out: records to run now, and dead letters of those that waited too long
    (each list in arrival order)."""

    ready: list[Waiting]
    dead: list[DeadLetterOut]


class _Slot(NamedTuple):
    """What the index keeps of an entry (the bytes stay in the store)."""

    dependency: Dependency
    order_key: str | None
    since_ms: int


_ENCODER = msgspec.msgpack.Encoder()
_DECODER = msgspec.msgpack.Decoder(Waiting)


class WaitingLot:
    """One task's records waiting for one kind of dependency, at most `wait_ms` each."""

    def __init__(
        self, store: KeyValue, *, wait_ms: int, expired: Callable[[Waiting], PermanentError]
    ) -> None:
        """`store`: the lot's keyspace; `expired(entry)`: the error a record that waited too long
        is dead-lettered with."""
        self.store = store
        self.wait_ms = wait_ms
        self.expired = expired
        self._slots: dict[int, _Slot] = {}  # arrival number -> slot, in arrival order
        self._by_dependency: dict[Dependency, dict[int, None]] = {}
        self._by_order: dict[str, deque[int]] = {}
        self._earliest_ms: int | None = None
        found = sorted(store.items())
        for key, value in found:
            entry = _DECODER.decode(value)
            self._index(_seq(key), _Slot(entry.dependency, entry.order_key, entry.since_ms))
        self._next = _seq(found[-1][0]) + 1 if found else 0
        self._arrived = bool(self._slots)  # look once: a dependency may have come meanwhile

    def __len__(self) -> int:
        return len(self._slots)

    def count(self, kind: str) -> int:
        """Records waiting for a dependency of `kind`."""
        return sum(len(s) for (k, _), s in self._by_dependency.items() if k == kind)

    def dependencies(self) -> list[Dependency]:
        return sorted(self._by_dependency)

    def waiting_for(self, dependency: Dependency) -> bool:
        return dependency in self._by_dependency

    def holds(self, order_key: str) -> bool:
        """Whether a record with this ordering key waits (a later one must wait behind it)."""
        return order_key in self._by_order

    def park(
        self,
        record: Inbound,
        dependency: Dependency,
        now: datetime,
        order_key: str | None = None,
    ) -> None:
        """`record` waits for `dependency` from `now` on; a record whose parked form would exceed
        `MAX_PARKED_BYTES` is refused (PermanentError TOO_LARGE) and nothing is written."""
        entry = Waiting(
            dependency, order_key, to_ms(now), record.topic, record.partition, record.offset,
            record.key, record.timestamp_ms, record.raw_key, record.raw_value,
        )  # fmt: skip
        encoded = _ENCODER.encode(entry)
        if len(encoded) > MAX_PARKED_BYTES:
            raise PermanentError(
                f"record of {len(encoded)} bytes is too large to wait for {dependency[0]} "
                f"{dependency[1]!r} (at most {MAX_PARKED_BYTES} bytes)",
                reason="TOO_LARGE",
            )
        seq, self._next = self._next, self._next + 1
        self.store.put(seq.to_bytes(_SEQ_BYTES, "big"), encoded)
        self._index(seq, _Slot(dependency, order_key, entry.since_ms))

    def arrived(self, dependency: Dependency) -> None:
        """`dependency` is now there: the next `due` says a sweep has work."""
        if dependency in self._by_dependency:
            self._arrived = True

    def due(self, now: datetime) -> bool:
        """Whether `sweep` has something to do (cheap: no store access)."""
        if self._arrived:
            return True
        return self._earliest_ms is not None and to_ms(now) - self._earliest_ms >= self.wait_ms

    def release(self, dependency: Dependency) -> list[Waiting]:
        """Takes out, in arrival order, the records waiting for `dependency` (it arrived); one
        behind an earlier record of its ordering key stays."""
        seqs = list(self._by_dependency.get(dependency, ()))
        out = [entry for seq in seqs if (entry := self._take_if_free(seq)) is not None]
        if out:
            self._summarise()
        return out

    def sweep(self, ready: Callable[[Dependency], bool], now: datetime) -> Swept:
        """Takes out, in arrival order, every record whose dependency is `ready` and every other
        one that waited `wait_ms` or longer (as a dead letter), except those behind an earlier
        record of their ordering key that stays."""
        now_ms = to_ms(now)
        out = Swept([], [])
        for seq, slot in list(self._slots.items()):
            if ready(slot.dependency):
                entry = self._take_if_free(seq)
                if entry is not None:
                    out.ready.append(entry)
            elif now_ms - slot.since_ms >= self.wait_ms:
                entry = self._take_if_free(seq)
                if entry is not None:
                    out.dead.append(entry.dead_letter(self.expired(entry)))
        self._summarise()
        self._arrived = any(ready(d) for d in self._by_dependency)  # blocked ones: look again
        return out

    def discard(self, order_key: str) -> int:
        """Removes every record waiting with this ordering key, unrun and not dead-lettered
        (e.g. an erased person's records, whose bytes must not stay in the store); returns
        how many."""
        seqs = list(self._by_order.pop(order_key, ()))
        for seq in seqs:
            slot = self._slots.pop(seq)
            waiting = self._by_dependency[slot.dependency]
            del waiting[seq]
            if not waiting:
                del self._by_dependency[slot.dependency]
            self.store.delete(seq.to_bytes(_SEQ_BYTES, "big"))
        if seqs:
            self._summarise()
        return len(seqs)

    def _index(self, seq: int, slot: _Slot) -> None:
        self._slots[seq] = slot
        self._by_dependency.setdefault(slot.dependency, {})[seq] = None
        if slot.order_key is not None:
            self._by_order.setdefault(slot.order_key, deque()).append(seq)
        if self._earliest_ms is None or slot.since_ms < self._earliest_ms:
            self._earliest_ms = slot.since_ms

    def _take_if_free(self, seq: int) -> Waiting | None:
        """Removes entry `seq` unless an earlier one of its ordering key still waits. None also
        when its bytes are gone (a handler that failed after parking had its writes undone)."""
        slot = self._slots[seq]
        if slot.order_key is not None:
            queue = self._by_order[slot.order_key]
            if queue[0] != seq:
                return None
            queue.popleft()
            if not queue:
                del self._by_order[slot.order_key]
        del self._slots[seq]
        waiting = self._by_dependency[slot.dependency]
        del waiting[seq]
        if not waiting:
            del self._by_dependency[slot.dependency]
        key = seq.to_bytes(_SEQ_BYTES, "big")
        raw = self.store.get(key)
        if raw is None:
            return None
        self.store.delete(key)
        return _DECODER.decode(raw)

    def _summarise(self) -> None:
        self._earliest_ms = min((s.since_ms for s in self._slots.values()), default=None)


def rerun(
    released: Iterable[Waiting], codec: Codec, handle: Callable[[Inbound], Iterable[Output]]
) -> list[Output]:
    """Runs released records again, in order, exactly as consumed: each is decoded from its
    bytes and handed to `handle`. As for a consumed record, one that fails goes to its topic's
    dead-letter queue unchanged (it has already left the lot, so raising would lose it) and the
    next one runs: bad input with its reason, a bug with the exception's name, logged."""
    out: list[Output] = []
    for waiting in released:
        try:
            out += handle(waiting.inbound(codec.decode(waiting.raw_value or b"")))
        except PermanentError as err:
            out.append(waiting.dead_letter(err))
        except Exception as err:
            log.exception("a released record failed", extra={"topic": waiting.topic})
            out.append(waiting.dead_letter(PermanentError(str(err), reason=type(err).__name__)))
    return out


def _seq(key: bytes) -> int:
    if len(key) != _SEQ_BYTES:
        raise ValueError(f"not a waiting-lot key: {key!r}")
    return int.from_bytes(key, "big")
