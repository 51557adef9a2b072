"""Records that wait for their program's config, up to `unknown_program_wait_s`.

The contract: an event for a program whose config has not arrived within the wait (one hour by
default) goes to the `.dlq` with UNKNOWN_PROGRAM. Until then it waits here, durably (keyspace
`p` of the `index` store: a restart keeps waiting rather than forgetting), and is processed
once its program is known. Later records of an advocate with a waiting record wait behind it,
so an advocate's records are still handled in order.

Key: 8-byte big-endian parking time (epoch ms), the topic and the offset: arrival order.
Value: the consumed record's coordinates and raw bytes, enough to decode it again or to send
it, unchanged, to its topic's dead-letter queue.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from dataclasses import dataclass

from referrals.streams.processor import Inbound
from referrals.streams.state import KeyValue


@dataclass(frozen=True, slots=True)
class Parked:
    key: bytes
    topic: str
    partition: int
    offset: int
    timestamp_ms: int
    raw_key: bytes | None
    raw_value: bytes | None
    program_id: str
    advocate_id: str
    parked_ms: int

    def to_bytes(self) -> bytes:
        row = [
            self.topic,
            self.partition,
            self.offset,
            self.timestamp_ms,
            _b64(self.raw_key),
            _b64(self.raw_value),
            self.program_id,
            self.advocate_id,
            self.parked_ms,
        ]
        return json.dumps(row, separators=(",", ":"), ensure_ascii=False).encode()

    @classmethod
    def from_bytes(cls, key: bytes, data: bytes) -> Parked:
        topic, partition, offset, ts, raw_key, raw_value, program, advocate, at = json.loads(data)
        return cls(
            key, topic, partition, offset, ts, _unb64(raw_key), _unb64(raw_value), program,
            advocate, at,
        )  # fmt: skip

    def inbound(self, value: object) -> Inbound:
        """The record as consumed (for a dead letter, which uses only its coordinates and raw
        bytes, so `value` may be None when the bytes no longer decode)."""
        return Inbound(
            self.topic, self.partition, self.offset, self.advocate_id, value,
            self.timestamp_ms, self.raw_key, self.raw_value,
        )  # fmt: skip


def _b64(data: bytes | None) -> str | None:
    return None if data is None else base64.b64encode(data).decode()


def _unb64(text: str | None) -> bytes | None:
    return None if text is None else base64.b64decode(text)


class ParkingLot:
    """One task's waiting records, in arrival order."""

    def __init__(self, store: KeyValue) -> None:
        self.store = store
        self._waiting = sorted(
            (Parked.from_bytes(key, value) for key, value in store.items()), key=lambda p: p.key
        )

    def __len__(self) -> int:
        return len(self._waiting)

    def holds(self, advocate_id: str) -> bool:
        return any(p.advocate_id == advocate_id for p in self._waiting)

    def park(self, record: Inbound, program_id: str, advocate_id: str, now_ms: int) -> None:
        key = now_ms.to_bytes(8, "big") + record.topic.encode() + record.offset.to_bytes(8, "big")
        parked = Parked(
            key, record.topic, record.partition, record.offset, record.timestamp_ms,
            record.raw_key, record.raw_value, program_id, advocate_id, now_ms,
        )  # fmt: skip
        self.store.put(key, parked.to_bytes())
        self._waiting.append(parked)

    def take(
        self, is_known: Callable[[str], bool], now_ms: int, wait_ms: int
    ) -> tuple[list[Parked], list[Parked]]:
        """(records whose program is now known, records that waited too long), in arrival order;
        both leave the lot. An advocate's records stay behind an earlier one that still waits."""
        ready: list[Parked] = []
        expired: list[Parked] = []
        blocked: set[str] = set()
        keep: list[Parked] = []
        for parked in self._waiting:
            if parked.advocate_id not in blocked and is_known(parked.program_id):
                ready.append(parked)
            elif parked.advocate_id not in blocked and now_ms - parked.parked_ms >= wait_ms:
                expired.append(parked)
            else:
                blocked.add(parked.advocate_id)
                keep.append(parked)
                continue
            self.store.delete(parked.key)
        self._waiting = keep
        return ready, expired
