"""Inputs that cannot be handled yet wait here, durably, in arrival order.

Two kinds wait:
- a status for a program whose config has not arrived (kind PROGRAM, grouped by program_id);
- a payout result or operator command for a payout whose owner is not known yet (kind PAYOUT,
  grouped by payout_id).

The parked keyspace keeps each as its original bytes and coordinates, so it can be processed later
exactly as if it had just arrived, or dead-lettered unchanged. Key: kind byte, group id, NUL,
topic tag, 8-byte big-endian offset. The in-memory index (group -> key -> parked time) is rebuilt
from the store on assignment and after an aborted transaction.
"""

from __future__ import annotations

import base64
import json
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

from referrals.contract.avro import AvroCodec
from referrals.contract.topics import PAYOUT_RESULTS, REWARDS_BY_PAYOUT, STATUS
from referrals.streams.processor import Inbound
from referrals.streams.state import KeyValue

# One byte per topic a parked record can come from: offsets are only unique per topic.
_TOPIC_TAGS = {STATUS: "S", PAYOUT_RESULTS: "R", REWARDS_BY_PAYOUT: "C"}
_OFFSET_BYTES = 8
_TAIL = 1 + 1 + _OFFSET_BYTES  # NUL, topic tag, offset

StoreOf = Callable[[int], KeyValue]  # task -> its parked keyspace


class Kind(StrEnum):
    PROGRAM = "S"  # a status waiting for its program's config
    PAYOUT = "P"  # a result or command waiting for its payout's owner


@dataclass(frozen=True, slots=True)
class Parked:
    """A consumed record, as consumed, and when it started waiting (epoch ms)."""

    topic: str
    partition: int
    offset: int
    timestamp_ms: int
    raw_key: bytes | None
    raw_value: bytes
    parked_ms: int

    def to_bytes(self) -> bytes:
        key = None if self.raw_key is None else base64.b64encode(self.raw_key).decode()
        data = [
            self.topic,
            self.partition,
            self.offset,
            self.timestamp_ms,
            key,
            base64.b64encode(self.raw_value).decode(),
            self.parked_ms,
        ]
        return json.dumps(data, separators=(",", ":")).encode()

    @classmethod
    def from_bytes(cls, raw: bytes) -> Parked:
        topic, partition, offset, timestamp_ms, key, value, parked_ms = json.loads(raw)
        return cls(
            topic,
            partition,
            offset,
            timestamp_ms,
            None if key is None else base64.b64decode(key),
            base64.b64decode(value),
            parked_ms,
        )

    def inbound(self, codec: AvroCodec) -> Inbound:
        """The record as the runtime delivered it (decoding cannot fail: it decoded before)."""
        key = None if self.raw_key is None else self.raw_key.decode("utf-8", "replace")
        record = codec.decode(self.raw_value)
        return Inbound(
            self.topic,
            self.partition,
            self.offset,
            key,
            record,
            self.timestamp_ms,
            self.raw_key,
            self.raw_value,
        )


def parked_key(kind: Kind, group: str, topic_tag: str, offset: int) -> bytes:
    return (
        kind.value.encode()
        + group.encode("utf-8")
        + b"\x00"
        + topic_tag.encode()[:1]
        + offset.to_bytes(_OFFSET_BYTES, "big")
    )


def parse_parked_key(key: bytes) -> tuple[Kind, str]:
    if len(key) <= _TAIL or key[-_TAIL] != 0:
        raise ValueError(f"not a parked key: {key!r}")
    return Kind(key[:1].decode()), key[1:-_TAIL].decode("utf-8")


class Parking:
    """Parks, lists, takes and expires waiting records of each task."""

    def __init__(self, store_of: StoreOf) -> None:
        self._store_of = store_of
        # task -> (kind, group) -> key -> parked_ms
        self._index: dict[int, dict[tuple[Kind, str], dict[bytes, int]]] = {}

    def load(self, task: int) -> None:
        index: dict[tuple[Kind, str], dict[bytes, int]] = defaultdict(dict)
        for key, value in self._store_of(task).items():
            index[parse_parked_key(key)][key] = Parked.from_bytes(value).parked_ms
        self._index[task] = index

    def drop(self, task: int) -> None:
        self._index.pop(task, None)

    def count(self, kind: Kind) -> int:
        return sum(
            len(keys)
            for groups in self._index.values()
            for (k, _), keys in groups.items()
            if k is kind
        )

    def park(self, kind: Kind, group: str, record: Inbound, now_ms: int) -> None:
        assert record.raw_value is not None  # a decoded record always had bytes
        parked = Parked(
            record.topic,
            record.partition,
            record.offset,
            record.timestamp_ms,
            record.raw_key,
            record.raw_value,
            now_ms,
        )
        key = parked_key(kind, group, _TOPIC_TAGS.get(record.topic, "X"), record.offset)
        self._store_of(record.partition).put(key, parked.to_bytes())
        self._index[record.partition].setdefault((kind, group), {})[key] = now_ms

    def waiting(self, task: int, kind: Kind, group: str) -> bool:
        return bool(self._index.get(task, {}).get((kind, group)))

    def groups(self, task: int, kind: Kind) -> list[str]:
        return sorted(g for (k, g), keys in self._index.get(task, {}).items() if k is kind and keys)

    def take(self, task: int, kind: Kind, group: str) -> list[Parked]:
        """Removes and returns a group's records, oldest first."""
        keys = self._index.get(task, {}).pop((kind, group), {})
        return self._remove(task, sorted(keys, key=lambda k: (keys[k], k)))

    def expired(self, task: int, kind: Kind, parked_before_ms: int) -> list[Parked]:
        """Removes and returns every record of `kind` that has waited since before the limit."""
        out: list[bytes] = []
        for (k, _), keys in self._index.get(task, {}).items():
            if k is kind:
                old = [key for key, at in keys.items() if at < parked_before_ms]
                for key in old:
                    del keys[key]
                out += old
        return self._remove(task, sorted(out))

    def _remove(self, task: int, keys: list[bytes]) -> list[Parked]:
        store = self._store_of(task)
        out = []
        for key in keys:
            raw = store.get(key)
            store.delete(key)
            if raw is not None:
                out.append(Parked.from_bytes(raw))
        return out
