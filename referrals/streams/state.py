"""Durable, transactional key-value state for a task, backed by a Kafka changelog.

A `TaskStore` keeps uncommitted writes in an overlay. When the runtime commits a task's
transaction it first takes the overlay's changes (`changes()`), writes them to the store's
compacted changelog partition *inside the same transaction* as the outputs and offsets, and
only after the commit succeeds applies them to the backend (`commit()`); an aborted transaction
drops them (`abort()`). So the backend only ever holds committed state, and the changelog can
rebuild it anywhere: after a crash, on another instance after a rebalance.

Backends: `MemoryBackend` (tests, small state) and `RocksBackend` (RocksDB through rocksdict:
large state lives on disk, not in the process's memory).
"""

from __future__ import annotations

import bisect
import heapq
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Protocol

from rocksdict import (
    BlockBasedOptions,
    Cache,
    Options,
    Rdict,
    WriteBatch,
    WriteBufferManager,
    WriteOptions,
)

from referrals.platform.errors import PermanentError

# The largest record (key + value) the runtime writes: under Kafka's default 1 MiB limit with
# room for headers and batch overhead. A bigger state value or output is refused as bad input
# (the record that caused it is dead-lettered); a transaction carrying it would fail forever.
MAX_RECORD_BYTES = 900 * 1024

_DELETED = object()  # overlay marker for a delete
_ABSENT = object()  # journal marker: the key was not in the overlay


class Backend(Protocol):
    def get(self, key: bytes) -> bytes | None: ...
    def apply(self, changes: list[tuple[bytes, bytes | None]]) -> None: ...
    def items(self) -> Iterator[tuple[bytes, bytes]]: ...
    def scan(self, prefix: bytes, start: bytes = b"") -> Iterator[tuple[bytes, bytes]]: ...
    def close(self) -> None: ...


class MemoryBackend:
    def __init__(self) -> None:
        self._data: dict[bytes, bytes] = {}

    def get(self, key: bytes) -> bytes | None:
        return self._data.get(key)

    def apply(self, changes: list[tuple[bytes, bytes | None]]) -> None:
        for key, value in changes:
            if value is None:
                self._data.pop(key, None)
            else:
                self._data[key] = value

    def items(self) -> Iterator[tuple[bytes, bytes]]:
        return iter(list(self._data.items()))

    def scan(self, prefix: bytes, start: bytes = b"") -> Iterator[tuple[bytes, bytes]]:
        return iter(
            sorted((k, v) for k, v in self._data.items() if k.startswith(prefix) and k >= start)
        )

    def close(self) -> None:
        self._data.clear()


class RocksMemory:
    """The native memory every RocksDB store of a process shares, whatever the number of tasks
    and stores: one LRU block cache (data, index and filter blocks) that the memtables are
    charged to as well, through one write buffer manager. Built once, on the first store."""

    cache_bytes = 64 * 1024 * 1024  # block cache, memtables included
    write_buffer_bytes = 32 * 1024 * 1024  # all memtables together (a share of the cache)

    _shared: tuple[Cache, WriteBufferManager] | None = None

    @classmethod
    def configure(cls, *, cache_mb: int, write_buffer_mb: int) -> None:
        """Sets the budget (ServiceSettings.state_cache_mb, state_write_buffer_mb); stores
        opened before keep the budget they were opened with."""
        cls.cache_bytes = cache_mb * 1024 * 1024
        cls.write_buffer_bytes = min(write_buffer_mb, cache_mb) * 1024 * 1024
        cls._shared = None

    @classmethod
    def shared(cls) -> tuple[Cache, WriteBufferManager]:
        if cls._shared is None:
            cache = Cache(cls.cache_bytes)
            manager = WriteBufferManager.new_write_buffer_manager_with_cache(
                cls.write_buffer_bytes, False, cache
            )
            cls._shared = (cache, manager)
        return cls._shared

    @classmethod
    def options(cls) -> Options:
        cache, manager = cls.shared()
        table = BlockBasedOptions()
        table.set_block_cache(cache)
        table.set_cache_index_and_filter_blocks(True)  # bounded by the cache, not per file
        table.set_pin_l0_filter_and_index_blocks_in_cache(True)
        table.set_bloom_filter(10, False)  # a get of an absent key (a new advocate) skips files
        options = Options(raw_mode=True)
        options.create_if_missing(True)
        options.set_block_based_table_factory(table)
        options.set_write_buffer_manager(manager)
        options.set_write_buffer_size(4 * 1024 * 1024)
        options.set_max_write_buffer_number(2)
        options.set_max_open_files(256)
        return options


# The changelog is the store's durable log: a crash wipes the local copy (its checkpoint is
# deleted when the task opens) and rebuilds it from there, so RocksDB's own write-ahead log
# would only slow every write down. A clean close flushes the memtables before the checkpoint.
_NO_WAL = WriteOptions()
_NO_WAL.disable_wal = True  # type: ignore[method-assign,assignment]  # a property (stub: a method)


class RocksBackend:
    """RocksDB in raw (bytes) mode; its memory is bounded per process (`RocksMemory`)."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._db = Rdict(str(path), RocksMemory.options())

    def get(self, key: bytes) -> bytes | None:
        value = self._db.get(key)
        return value if value is None else bytes(value)

    def apply(self, changes: list[tuple[bytes, bytes | None]]) -> None:
        batch = WriteBatch(raw_mode=True)
        for key, value in changes:
            if value is None:
                batch.delete(key)
            else:
                batch.put(key, value)
        self._db.write(batch, _NO_WAL)

    def items(self) -> Iterator[tuple[bytes, bytes]]:
        for key, value in self._db.items():
            yield bytes(key), bytes(value)  # type: ignore[arg-type]  # raw mode: bytes

    def scan(self, prefix: bytes, start: bytes = b"") -> Iterator[tuple[bytes, bytes]]:
        """Keys under `prefix` (from `start` on) in order: a seek, then only the matching keys
        are read."""
        it = self._db.iter()
        it.seek(max(prefix, start))
        while it.valid():
            key = bytes(it.key())
            if not key.startswith(prefix):
                return
            yield key, bytes(it.value())
            it.next()

    def close(self) -> None:
        """Flushes the memtables to disk (writes skip the WAL), then closes."""
        self._db.flush(True)
        self._db.close()

    @staticmethod
    def destroy(path: Path) -> None:
        shutil.rmtree(path, ignore_errors=True)


class TaskStore:
    """One store of one task: reads see uncommitted writes; the backend sees committed ones."""

    def __init__(self, name: str, task: int, backend: Backend) -> None:
        self.name = name
        self.task = task
        self.backend = backend
        self._overlay: dict[bytes, object] = {}
        self._journal: list[tuple[bytes, object]] | None = None
        # Aborts and undone records so far: each may bring back keys deleted since (an index
        # kept beside the store, like TimerIndex's floor, must not outlive one).
        self.rollbacks = 0
        # The overlay's keys in order, kept once a scan needed them (until the next commit or
        # abort): a scan is then a bisection, not a filter and sort of every write in the
        # transaction, which made a batch's scans (timers, per-advocate indexes) quadratic.
        self._sorted: list[bytes] | None = None

    def begin_record(self) -> None:
        """Starts journaling writes so one record's writes can be undone (its handler failed)."""
        self._journal = []

    def undo_record(self) -> None:
        """Reverts the overlay to what it was at begin_record."""
        self.rollbacks += 1
        for key, previous in reversed(self._journal or []):
            if previous is _ABSENT:
                if self._overlay.pop(key, _ABSENT) is not _ABSENT and self._sorted is not None:
                    del self._sorted[bisect.bisect_left(self._sorted, key)]
            else:
                self._overlay[key] = previous
        self._journal = None

    def end_record(self) -> None:
        self._journal = None

    def _remember(self, key: bytes) -> None:
        if self._journal is not None:
            self._journal.append((key, self._overlay.get(key, _ABSENT)))
        if self._sorted is not None and key not in self._overlay:
            bisect.insort(self._sorted, key)

    def get(self, key: bytes) -> bytes | None:
        value = self._overlay.get(key)
        if value is _DELETED:
            return None
        if value is not None:
            assert isinstance(value, bytes)
            return value
        return self.backend.get(key)

    def put(self, key: bytes, value: bytes) -> None:
        if len(key) + len(value) > MAX_RECORD_BYTES:
            raise PermanentError(
                f"a {self.name} state value of {len(value)} bytes exceeds the record limit",
                reason="STATE_TOO_LARGE",
            )
        self._remember(key)
        self._overlay[key] = value

    def delete(self, key: bytes) -> None:
        self._remember(key)
        self._overlay[key] = _DELETED

    def changes(self) -> list[tuple[bytes, bytes | None]]:
        """The writes since the last commit, as changelog entries (None deletes)."""
        return [
            (key, None if value is _DELETED else value)  # type: ignore[misc]
            for key, value in self._overlay.items()
        ]

    def commit(self) -> None:
        self._journal = None
        if self._overlay:
            self.backend.apply(self.changes())
            self._overlay.clear()
        self._sorted = None

    def abort(self) -> None:
        self.rollbacks += 1
        self._journal = None
        self._overlay.clear()
        self._sorted = None

    def scan(self, prefix: bytes, start: bytes = b"") -> Iterator[tuple[bytes, bytes]]:
        """Entries under `prefix` (from `start` on) in key order, uncommitted writes included.
        The overlay is snapshotted first, so the caller may write to the store while it
        iterates."""
        if self._sorted is None:
            self._sorted = sorted(self._overlay)
        keys, overlay, mine = self._sorted, self._overlay, []
        for i in range(bisect.bisect_left(keys, max(prefix, start)), len(keys)):
            key = keys[i]
            if not key.startswith(prefix):
                break
            mine.append((key, overlay[key]))
        overlaid = {k for k, _ in mine}
        committed = (kv for kv in self.backend.scan(prefix, start) if kv[0] not in overlaid)
        for key, value in heapq.merge(mine, committed, key=lambda kv: kv[0]):
            if value is not _DELETED:
                assert isinstance(value, bytes)
                yield key, value

    def items(self) -> Iterator[tuple[bytes, bytes]]:
        """Committed entries plus the overlay (for timers that scan a task's state)."""
        seen = set()
        for key, value in self._overlay.items():
            seen.add(key)
            if value is not _DELETED:
                assert isinstance(value, bytes)
                yield key, value
        for key, value in self.backend.items():
            if key not in seen:
                yield key, value


class KeyValue(Protocol):
    """A key-value view: a TaskStore, or one Keyspace of it."""

    def get(self, key: bytes) -> bytes | None: ...
    def put(self, key: bytes, value: bytes) -> None: ...
    def delete(self, key: bytes) -> None: ...
    def items(self) -> Iterator[tuple[bytes, bytes]]: ...


class Keyspace:
    """The entries of one kind in a shared store, told apart by a key prefix and seen without
    it. One store with several keyspaces restores faster than several stores (each store of
    each task is a changelog partition to read at assignment)."""

    def __init__(self, store: TaskStore, prefix: bytes) -> None:
        self.store = store
        self.prefix = prefix

    def get(self, key: bytes) -> bytes | None:
        return self.store.get(self.prefix + key)

    def put(self, key: bytes, value: bytes) -> None:
        self.store.put(self.prefix + key, value)

    def delete(self, key: bytes) -> None:
        self.store.delete(self.prefix + key)

    @property
    def rollbacks(self) -> int:
        return self.store.rollbacks

    def items(self, start: bytes = b"") -> Iterator[tuple[bytes, bytes]]:
        """This keyspace's entries in key order (an ordered scan, never the whole store), from
        key `start` on."""
        n = len(self.prefix)
        for key, value in self.store.scan(self.prefix, self.prefix + start):
            yield key[n:], value
