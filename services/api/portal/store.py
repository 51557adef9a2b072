"""The read model on disk: RocksDB (rocksdict), the views as JSON, offsets beside them.

Each batch of records is applied in one `Batch`: reads see its own writes, and `commit` writes
the views and the next offset of every partition it read in one RocksDB write batch, so after a
crash or restart the store resumes exactly where its state is (nothing applied twice, nothing
skipped). Keys are a tag byte and length-prefixed ids (an id may contain any character):

    a|advocate                      AdvocateView
    r|advocate|referral             ReferralView
    n|advocate|inverted ms|referral ""  (newest first: the ListReferrals index)
    p|advocate|payout               PayoutView (the advocate's own payouts)
    x|payout                        ResultView
    g|program                       ProgramConfig (the newest version seen)
    o|topic|partition               next offset
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import TypeVar

import msgspec
from rocksdict import Options, Rdict, WriteBatch

from referrals.contract.records import ProgramConfig
from services.api.portal.view import AdvocateView, PayoutView, ReferralView, ResultView

T = TypeVar("T")
_MAX_MS = 2**63 - 1
_DELETED = None


def _part(text: str) -> bytes:
    raw = text.encode("utf-8")
    return struct.pack(">H", len(raw)) + raw


def key(tag: bytes, *parts: str) -> bytes:
    return tag + b"".join(_part(p) for p in parts)


def newest_first(advocate_id: str, created_at: datetime, referral_id: str) -> bytes:
    """The index key: later creation sorts first, then by referral_id."""
    inverted = _MAX_MS - int(created_at.timestamp() * 1000)
    return key(b"n", advocate_id) + struct.pack(">q", inverted) + _part(referral_id)


class Store:
    def __init__(self, path: Path) -> None:
        path.mkdir(parents=True, exist_ok=True)
        options = Options(raw_mode=True)
        options.create_if_missing(True)
        options.set_write_buffer_size(8 * 1024 * 1024)  # bounded memory, as the services' stores
        options.set_max_write_buffer_number(2)
        self._db = Rdict(str(path), options)

    def close(self) -> None:
        self._db.close()

    def raw(self, k: bytes) -> bytes | None:
        value = self._db.get(k)
        return None if value is None else bytes(value)

    def get(self, k: bytes, kind: type[T]) -> T | None:
        value = self.raw(k)
        return None if value is None else msgspec.json.decode(value, type=kind)

    def scan(self, prefix: bytes, start: bytes | None = None) -> Iterator[tuple[bytes, bytes]]:
        """Keys under `prefix` in order, from `start` (inclusive) when given."""
        it = self._db.iter()
        it.seek(start or prefix)
        while it.valid():
            k = bytes(it.key())
            if not k.startswith(prefix):
                return
            yield k, bytes(it.value())
            it.next()

    def values(self, prefix: bytes, kind: type[T]) -> list[T]:
        return [msgspec.json.decode(v, type=kind) for _, v in self.scan(prefix)]

    def offset(self, topic: str, partition: int) -> int | None:
        value = self.raw(key(b"o", topic, str(partition)))
        return None if value is None else int(value)

    def advocate(self, advocate_id: str) -> AdvocateView | None:
        return self.get(key(b"a", advocate_id), AdvocateView)

    def referral(self, advocate_id: str, referral_id: str) -> ReferralView | None:
        return self.get(key(b"r", advocate_id, referral_id), ReferralView)

    def referrals(self, advocate_id: str) -> list[ReferralView]:
        return self.values(key(b"r", advocate_id), ReferralView)

    def payouts(self, advocate_id: str) -> list[PayoutView]:
        return self.values(key(b"p", advocate_id), PayoutView)

    def result(self, payout_id: str) -> ResultView | None:
        return self.get(key(b"x", payout_id), ResultView)

    def programs(self) -> list[ProgramConfig]:
        return self.values(b"g", ProgramConfig)

    def batch(self) -> Batch:
        return Batch(self)

    def write(self, changes: dict[bytes, bytes | None]) -> None:
        batch = WriteBatch(raw_mode=True)
        for k, v in changes.items():
            if v is None:
                batch.delete(k)
            else:
                batch.put(k, v)
        self._db.write(batch)


class Batch:
    """One batch's writes: read back by its own reads, written with the offsets at commit."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._changes: dict[bytes, bytes | None] = {}

    def get(self, k: bytes, kind: type[T]) -> T | None:
        if k in self._changes:
            value = self._changes[k]
            return None if value is None else msgspec.json.decode(value, type=kind)
        return self.store.get(k, kind)

    def put(self, k: bytes, value: object) -> None:
        self._changes[k] = msgspec.json.encode(value)

    def put_raw(self, k: bytes, value: bytes) -> None:
        self._changes[k] = value

    def commit(self, offsets: dict[tuple[str, int], int]) -> None:
        for (topic, partition), offset in offsets.items():
            self._changes[key(b"o", topic, str(partition))] = str(offset).encode()
        if self._changes:
            self.store.write(self._changes)
        self._changes = {}
