"""A task store's reads see its uncommitted writes; its backend sees only committed ones."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from referrals.platform.settings import ServiceSettings
from referrals.streams.state import (
    Backend,
    Keyspace,
    MemoryBackend,
    RocksBackend,
    RocksMemory,
    TaskStore,
)


@pytest.fixture(params=["memory", "rocksdb"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    return MemoryBackend() if request.param == "memory" else RocksBackend(tmp_path / "db")


def test_uncommitted_writes_are_visible_to_reads_but_not_in_the_backend(backend: Backend) -> None:
    store = TaskStore("s", 0, backend)
    store.put(b"a", b"1")
    assert store.get(b"a") == b"1"
    assert backend.get(b"a") is None
    store.commit()
    assert backend.get(b"a") == b"1"


def test_an_abort_drops_writes_and_deletes_since_the_last_commit(backend: Backend) -> None:
    store = TaskStore("s", 0, backend)
    store.put(b"a", b"1")
    store.commit()
    store.put(b"a", b"2")
    store.delete(b"a")
    store.put(b"b", b"3")
    assert store.get(b"a") is None
    store.abort()
    assert store.get(b"a") == b"1" and store.get(b"b") is None


def test_changes_are_the_changelog_entries_with_none_for_deletes(backend: Backend) -> None:
    store = TaskStore("s", 0, backend)
    store.put(b"a", b"1")
    store.commit()
    store.delete(b"a")
    store.put(b"b", b"2")
    assert sorted(store.changes(), key=lambda kv: kv[0]) == [(b"a", None), (b"b", b"2")]
    store.commit()
    assert store.changes() == []
    assert dict(store.items()) == {b"b": b"2"}


def test_items_merge_the_overlay_over_committed_entries(backend: Backend) -> None:
    store = TaskStore("s", 0, backend)
    store.put(b"a", b"1")
    store.put(b"b", b"1")
    store.commit()
    store.put(b"b", b"2")
    store.delete(b"a")
    store.put(b"c", b"3")
    assert dict(store.items()) == {b"b": b"2", b"c": b"3"}


def test_rocksdb_keeps_committed_state_across_reopening(tmp_path: Path) -> None:
    first = RocksBackend(tmp_path / "db")
    TaskStore("s", 0, first).put(b"gone", b"x")  # never committed
    store = TaskStore("s", 0, first)
    store.put(b"kept", b"y")
    store.commit()
    first.close()
    again = RocksBackend(tmp_path / "db")
    assert again.get(b"kept") == b"y" and again.get(b"gone") is None
    again.close()


def test_undoing_a_record_restores_the_overlay_as_it_was_before_the_record() -> None:
    store = TaskStore("s", 0, MemoryBackend())
    store.put(b"kept", b"1")
    store.put(b"changed", b"old")
    store.begin_record()
    store.put(b"changed", b"new")
    store.put(b"added", b"x")
    store.delete(b"kept")
    store.undo_record()
    assert store.get(b"kept") == b"1"
    assert store.get(b"changed") == b"old"
    assert store.get(b"added") is None
    assert sorted(store.changes()) == [(b"changed", b"old"), (b"kept", b"1")]


def test_a_finished_record_is_not_undone_by_a_later_undo() -> None:
    store = TaskStore("s", 0, MemoryBackend())
    store.begin_record()
    store.put(b"a", b"1")
    store.end_record()
    store.begin_record()
    store.put(b"b", b"2")
    store.undo_record()
    assert store.get(b"a") == b"1" and store.get(b"b") is None


def test_keyspaces_of_one_store_never_see_each_other(backend: Backend) -> None:
    store = TaskStore("s", 0, backend)
    timers, ledgers, parked = (
        Keyspace(store, b"\x02"),
        Keyspace(store, b"\x11"),
        Keyspace(store, b"\x01"),
    )
    ledgers.put(b"adv-1", b"L1")
    timers.put(b"t-committed", b"")
    parked.put(b"p-1", b"P")
    store.commit()
    timers.put(b"t-pending", b"")
    timers.delete(b"t-committed")
    ledgers.put(b"adv-2", b"L2")
    assert list(timers.items()) == [(b"t-pending", b"")]
    assert list(ledgers.items()) == [(b"adv-1", b"L1"), (b"adv-2", b"L2")]  # in key order
    assert list(parked.items()) == [(b"p-1", b"P")]
    assert ledgers.get(b"adv-2") == b"L2" and timers.get(b"adv-1") is None


def test_a_scan_merges_uncommitted_writes_in_key_order_and_allows_writes_meanwhile(
    backend: Backend,
) -> None:
    store = TaskStore("s", 0, backend)
    for key in (b"k1", b"k3", b"k5", b"other"):
        store.put(key, b"old")
    store.commit()
    store.put(b"k2", b"new")
    store.put(b"k3", b"new")
    store.delete(b"k5")
    seen = []
    for key, value in store.scan(b"k"):
        seen.append((key, value))
        store.put(b"k9", b"written while scanning")
    assert seen == [(b"k1", b"old"), (b"k2", b"new"), (b"k3", b"new")]


def test_a_prefix_scan_on_rocksdb_never_walks_the_whole_store(tmp_path: Path) -> None:
    class NoFullWalk(RocksBackend):
        def items(self) -> Iterator[tuple[bytes, bytes]]:
            raise AssertionError("a prefix scan must seek, not iterate every key")

    db = NoFullWalk(tmp_path / "db")
    store = TaskStore("s", 0, db)
    for n in range(50):
        store.put(b"\x11adv-%d" % n, b"x")
    store.put(b"\x02t", b"")
    store.commit()
    assert list(Keyspace(store, b"\x02").items()) == [(b"t", b"")]
    assert len(list(Keyspace(store, b"\x11").items())) == 50
    db.close()


def test_a_state_value_over_the_record_limit_is_refused_as_bad_input() -> None:
    from referrals.platform.errors import PermanentError
    from referrals.streams.state import MAX_RECORD_BYTES, MemoryBackend, TaskStore

    store = TaskStore("ledgers", 0, MemoryBackend())
    store.put(b"k", b"x" * (MAX_RECORD_BYTES - 10))
    try:
        store.put(b"k", b"x" * (MAX_RECORD_BYTES + 1))
    except PermanentError as err:
        assert err.reason == "STATE_TOO_LARGE"
    else:
        raise AssertionError("a value over the limit was accepted")
    assert store.changes() == [(b"k", b"x" * (MAX_RECORD_BYTES - 10))]


def test_rocksdb_stores_of_a_process_share_one_bounded_cache(tmp_path: Path) -> None:
    RocksMemory.configure(cache_mb=8, write_buffer_mb=4)
    try:
        cache, _ = RocksMemory.shared()
        stores = [RocksBackend(tmp_path / f"task-{t}") for t in range(3)]
        for t, backend in enumerate(stores):
            backend.apply([(f"k{t}-{i}".encode(), b"v" * 100) for i in range(2000)])
        assert RocksMemory.shared()[0] is cache  # one cache, however many stores
        assert 0 < cache.get_usage() <= 8 * 1024 * 1024  # the memtables are charged to it
        for backend in stores:
            backend.close()
        again = RocksBackend(tmp_path / "task-2")  # written without a WAL, flushed at close
        assert again.get(b"k2-1999") == b"v" * 100
        again.close()
    finally:
        RocksMemory.configure(
            cache_mb=ServiceSettings().state_cache_mb,
            write_buffer_mb=ServiceSettings().state_write_buffer_mb,
        )


def test_a_scan_from_a_start_key_merges_committed_and_uncommitted_entries_from_it(
    backend: Backend,
) -> None:
    store = TaskStore("s", 0, backend)
    for key in (b"a1", b"a3", b"a5", b"b1"):
        store.put(key, b"c")
    store.commit()
    store.put(b"a4", b"u")
    store.delete(b"a5")
    assert list(store.scan(b"a", b"a3")) == [(b"a3", b"c"), (b"a4", b"u")]
    assert list(backend.scan(b"a", b"a2")) == [(b"a3", b"c"), (b"a5", b"c")]
    assert list(store.scan(b"a", b"")) == [(b"a1", b"c"), (b"a3", b"c"), (b"a4", b"u")]
