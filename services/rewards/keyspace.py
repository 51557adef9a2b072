"""The rewards task's one durable store, split into keyspaces by a one-byte key prefix.

Why one store and not one per kind of state: the runtime restores each store of each task from
its changelog inside the consumer group's rebalance callback, one partition at a time, and the
group's heartbeat pauses meanwhile; every extra store adds a restore per task to that pause
(see the final report of issue 4). One store keeps start-up and rebalances short.

Layout (prefixes sort the small, scanned index first):
    0x01 parked inputs   (scanned on assignment)
    0x02 due timers      (scanned on assignment)
    0x10 payout owners   (point lookups only)
    0x11 ledgers         (point lookups only)
RocksDB iterates in key order, so scanning a low keyspace stops at the first key past it
instead of reading every ledger.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Protocol

from referrals.state import RocksBackend, TaskStore

STORE = "state"
PARKED = b"\x01"
TIMERS = b"\x02"
OWNERS = b"\x10"
LEDGERS = b"\x11"


class KeyValue(Protocol):
    """What the adapter needs of a store (a TaskStore, or one keyspace of it)."""

    def get(self, key: bytes) -> bytes | None: ...
    def put(self, key: bytes, value: bytes) -> None: ...
    def delete(self, key: bytes) -> None: ...
    def items(self) -> Iterator[tuple[bytes, bytes]]: ...


class Keyspace:
    """The keys of `store` under `prefix`, seen without the prefix."""

    def __init__(self, store: TaskStore, prefix: bytes) -> None:
        if len(prefix) != 1:
            raise ValueError("a keyspace prefix is one byte")
        self.store = store
        self.prefix = prefix

    def get(self, key: bytes) -> bytes | None:
        return self.store.get(self.prefix + key)

    def put(self, key: bytes, value: bytes) -> None:
        self.store.put(self.prefix + key, value)

    def delete(self, key: bytes) -> None:
        self.store.delete(self.prefix + key)

    def items(self) -> Iterator[tuple[bytes, bytes]]:
        """Committed entries plus uncommitted writes, under this prefix."""
        pending = dict(self.store.changes())
        for key, value in pending.items():
            if value is not None and key[:1] == self.prefix:
                yield key[1:], value
        ordered = isinstance(self.store.backend, RocksBackend)
        for key, value in self.store.backend.items():
            if key[:1] == self.prefix:
                if key not in pending:
                    yield key[1:], value
            elif ordered and key[:1] > self.prefix:
                return  # sorted: nothing of ours beyond this key
