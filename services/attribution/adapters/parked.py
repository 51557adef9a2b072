"""Events whose program config has not arrived: parked, re-run when it does, else dead-lettered.

The contract: an event for a program whose config has not arrived within the configured wait
(one hour by default) goes to its topic's `.dlq` with `UNKNOWN_PROGRAM`. Until then it is
kept in the task's `unknown_program` store as it was consumed (raw bytes and coordinates, so
the dead letter is the original record) with the wall-clock time it was first seen. Entries
are keyed by a per-task sequence number, so re-runs keep their arrival order. They share the
task's one store with its referrals (`table`), under `u` and `!seq`.
"""

from __future__ import annotations

import base64
import json
import logging
import struct
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime

from referrals.contract.records import Record
from referrals.contract.topics import spec_for
from referrals.platform.errors import PermanentError, UnknownProgram
from referrals.streams.processor import DeadLetterOut, Inbound
from referrals.streams.state import TaskStore
from services.attribution.domain.state import to_ms

log = logging.getLogger(__name__)
PREFIX = b"u"
_SEQ = b"!seq"
Item = tuple[bytes, bytes]
_U64 = struct.Struct(">Q")
Decode = Callable[[bytes, str], Record]  # (bytes, expected record name) -> record


@dataclass(frozen=True, slots=True)
class Released:
    """What `release` took out of the store: records to run now, and dead letters."""

    rerun: list[Inbound]
    dead: list[DeadLetterOut]


@dataclass(frozen=True, slots=True)
class _Entry:
    """A parked record as consumed, with its program and when it was first seen."""

    topic: str
    partition: int
    offset: int
    key: str | None
    timestamp_ms: int
    raw_key: str | None  # base64
    raw_value: str | None  # base64
    program_id: str
    first_seen_ms: int

    def to_bytes(self) -> bytes:
        return json.dumps([getattr(self, f) for f in self.__slots__]).encode()

    @classmethod
    def from_bytes(cls, raw: bytes) -> _Entry:
        return cls(*json.loads(raw))


class ParkedEvents:
    """One task's parked events. A small in-memory index (store key -> program, first seen)
    keeps `ready` free and `release` to the entries it takes: no store scans after `assign`."""

    def __init__(
        self, store: TaskStore, wait_s: float, decode: Decode, entries: Iterable[Item]
    ) -> None:
        """`entries`: the store's items under PREFIX (scanned once, at assignment)."""
        self.store = store
        self.wait_ms = int(wait_s * 1000)
        self.decode = decode
        self.arrived = False  # a program some parked event waits for has arrived
        self.programs: Counter[str] = Counter()
        self.earliest_ms: int | None = None
        raw = store.get(_SEQ)
        self._seq = _U64.unpack(raw)[0] if raw else 0
        self._index: dict[bytes, tuple[str, int]] = {}
        for key, value in sorted(entries):
            entry = _Entry.from_bytes(value)
            self._index[key] = (entry.program_id, entry.first_seen_ms)
        self._summarise()

    def __len__(self) -> int:
        return len(self._index)

    def park(self, record: Inbound, program_id: str, now: datetime) -> None:
        self._seq += 1
        self.store.put(_SEQ, _U64.pack(self._seq))
        entry = _Entry(
            topic=record.topic,
            partition=record.partition,
            offset=record.offset,
            key=record.key,
            timestamp_ms=record.timestamp_ms,
            raw_key=_b64(record.raw_key),
            raw_value=_b64(record.raw_value),
            program_id=program_id,
            first_seen_ms=to_ms(now),
        )
        key = PREFIX + _U64.pack(self._seq)
        self.store.put(key, entry.to_bytes())
        self._index[key] = (program_id, entry.first_seen_ms)
        self.programs[program_id] += 1
        if self.earliest_ms is None:
            self.earliest_ms = entry.first_seen_ms

    def waiting_for(self, program_id: str) -> bool:
        return program_id in self.programs

    def program_arrived(self, program_id: str) -> None:
        if program_id in self.programs:
            self.arrived = True

    def ready(self, now: datetime) -> bool:
        """Whether `release` has something to do (cheap: no store access)."""
        if self.earliest_ms is None:
            return False
        return self.arrived or to_ms(now) >= self.earliest_ms + self.wait_ms

    def release(
        self, known: Callable[[str], bool], now: datetime, only: str | None = None
    ) -> Released:
        """Takes out, in arrival order, every parked event whose program is now known (only
        `only`'s, if given) and, unless `only` is given, every one that waited too long."""
        now_ms = to_ms(now)
        out = Released([], [])
        for key, (program_id, first_seen_ms) in list(self._index.items()):
            if (only is None or program_id == only) and known(program_id):
                out.rerun.extend(self._inbound(self._take(key)))
            elif only is None and now_ms >= first_seen_ms + self.wait_ms:
                entry = self._take(key)
                error = self._unknown(entry)
                out.dead.extend(DeadLetterOut(r, error) for r in self._inbound(entry))
        self._summarise()
        self.arrived = any(known(program_id) for program_id in self.programs)
        return out

    def _take(self, key: bytes) -> _Entry:
        raw = self.store.get(key)
        assert raw is not None, "the index and the store agree"
        self.store.delete(key)
        del self._index[key]
        return _Entry.from_bytes(raw)

    def _summarise(self) -> None:
        self.programs = Counter(p for p, _ in self._index.values())
        self.earliest_ms = min((seen for _, seen in self._index.values()), default=None)

    def _unknown(self, entry: _Entry) -> UnknownProgram:
        return UnknownProgram(
            f"no config for program {entry.program_id!r} arrived within {self.wait_ms / 1000:g} s",
            reason="UNKNOWN_PROGRAM",
        )

    def _inbound(self, entry: _Entry) -> list[Inbound]:
        """The record as consumed ([] if it no longer decodes: only a vanished schema can)."""
        raw_value = _unb64(entry.raw_value)
        try:
            value = self.decode(raw_value or b"", spec_for(entry.topic).record)
        except PermanentError:
            log.exception("a parked record no longer decodes", extra={"topic": entry.topic})
            return []
        record = Inbound(
            topic=entry.topic,
            partition=entry.partition,
            offset=entry.offset,
            key=entry.key,
            value=value,
            timestamp_ms=entry.timestamp_ms,
            raw_key=_unb64(entry.raw_key),
            raw_value=raw_value,
        )
        return [record]


def _b64(raw: bytes | None) -> str | None:
    return base64.b64encode(raw).decode("ascii") if raw is not None else None


def _unb64(text: str | None) -> bytes | None:
    return base64.b64decode(text) if text is not None else None
