"""Due-time timers of a task: one per id, fired in due order, durable, before-1970 means now."""

from __future__ import annotations

import pytest

from referrals.streams.state import Keyspace, MemoryBackend, TaskStore
from referrals.streams.timers import Timer, TimerIndex, parse_timer_key, timer_key


def _store() -> TaskStore:
    return TaskStore("index", 0, MemoryBackend())


def _timer_keys(store: TaskStore) -> list[bytes]:
    """The keyspace's timer keys (the index's id and count keys start at 0x80 and above)."""
    return [k for k, _ in Keyspace(store, b"w").items() if k[0] < 0x80]


def test_timer_keys_round_trip_and_sort_by_due_time_then_id() -> None:
    assert parse_timer_key(timer_key(1_767_225_600_000, "adv-é")) == (1_767_225_600_000, "adv-é")
    keys = [timer_key(2_000, "a"), timer_key(1_000, "zzz"), timer_key(1_000, "b")]
    keys += [timer_key(due, "b") for due in (10, 2**40)]
    assert [parse_timer_key(k) for k in sorted(keys)] == [
        (10, "b"),
        (1_000, "b"),
        (1_000, "zzz"),
        (2_000, "a"),
        (2**40, "b"),
    ]
    with pytest.raises(ValueError):
        parse_timer_key(b"\x00" * 8)  # no id


def test_a_due_time_before_1970_is_due_now_never_an_error() -> None:
    assert timer_key(-1, "a") == timer_key(0, "a")
    index = TimerIndex(Keyspace(_store(), b"w"))
    index.set("old", -86_400_000)
    assert index.due_ms("old") == 0
    assert index.pop_due(0, limit=10) == [Timer(0, "old")]


def test_timers_pop_in_due_order_and_replaced_or_cancelled_ones_do_not_fire() -> None:
    store = _store()
    index = TimerIndex(Keyspace(store, b"w"))
    index.set("a", 300)
    index.set("b", 100)
    index.set("c", 200)
    index.set("c", 500)  # rescheduled: the old time must not fire
    index.set("b", None)  # cancelled
    assert len(index) == 2
    assert index.pop_due(250, limit=10) == []
    assert index.pop_due(400, limit=10) == [Timer(300, "a")]
    assert _timer_keys(store) == [timer_key(500, "c")]
    assert len(index) == 1


def test_there_is_one_timer_per_id() -> None:
    store = _store()
    index = TimerIndex(Keyspace(store, b"w"))
    index.set("a", 100)
    index.set("a", 50)
    index.set("a", 50)
    assert len(index) == 1 and _timer_keys(store) == [timer_key(50, "a")]
    assert index.pop_due(1_000, limit=10) == [Timer(50, "a")]
    assert index.pop_due(1_000, limit=10) == []


def test_at_most_the_limit_fires_per_call_earliest_first() -> None:
    index = TimerIndex(Keyspace(_store(), b"w"))
    for i in range(5):
        index.set(f"adv-{i}", 10 - i)
    assert [t.id for t in index.pop_due(10, limit=3)] == ["adv-4", "adv-3", "adv-2"]
    assert [t.id for t in index.pop_due(10, limit=3)] == ["adv-1", "adv-0"]


def test_the_index_is_rebuilt_from_the_store_alone() -> None:
    store = _store()
    index = TimerIndex(Keyspace(store, b"w"))
    index.set("a", 300)
    index.set("c", 500)
    store.commit()
    rebuilt = TimerIndex(Keyspace(store, b"w"))  # after a restart or a move
    assert len(rebuilt) == 2 and rebuilt.due_ms("c") == 500
    assert rebuilt.pop_due(10_000, limit=10) == [Timer(300, "a"), Timer(500, "c")]


def test_an_aborted_transactions_timers_do_not_survive() -> None:
    store = _store()
    index = TimerIndex(Keyspace(store, b"w"))
    for n in range(3):
        index.set(f"adv-{n}", 1_000 + n)
    store.commit()
    index.set("late", 500)
    index.set("adv-0", None)
    store.abort()  # the transaction never happened: rebuild from what committed
    rebuilt = TimerIndex(Keyspace(store, b"w"))
    assert len(rebuilt) == 3 and rebuilt.due_ms("late") is None
    assert [t.id for t in rebuilt.pop_due(10_000, limit=10)] == ["adv-0", "adv-1", "adv-2"]


def test_nothing_is_held_in_memory_two_indexes_over_one_store_agree() -> None:
    store = _store()
    first, second = TimerIndex(Keyspace(store, b"w")), TimerIndex(Keyspace(store, b"w"))
    for n in range(1_000):
        first.set(f"adv-{n}", 10_000 + n)
    assert len(second) == 1_000 and second.due_ms("adv-999") == 10_999
    assert [t.id for t in second.pop_due(10_001, limit=10)] == ["adv-0", "adv-1"]
    assert len(first) == 998 and first.due_ms("adv-0") is None


def test_a_records_undone_writes_undo_its_timers_too() -> None:
    store = _store()
    index = TimerIndex(Keyspace(store, b"w"))
    index.set("kept", 100)
    store.commit()
    store.begin_record()
    index.set("kept", 900)
    index.set("failed", 50)
    store.undo_record()  # the record's handler failed: none of its writes happened
    assert len(index) == 1 and index.due_ms("kept") == 100 and index.due_ms("failed") is None
    assert index.pop_due(1_000, limit=10) == [Timer(100, "kept")]


def test_a_store_with_timer_keys_only_is_indexed_when_the_task_opens() -> None:
    store = _store()
    space = Keyspace(store, b"w")
    for due, timer_id in ((300, "a"), (100, "b"), (200, "a")):  # "a" twice: keeps 200
        space.put(timer_key(due, timer_id), b"")
    store.commit()
    index = TimerIndex(space)
    assert len(index) == 2 and index.due_ms("a") == 200 and index.due_ms("b") == 100
    assert _timer_keys(store) == [timer_key(100, "b"), timer_key(200, "a")]
    assert index.pop_due(1_000, limit=10) == [Timer(100, "b"), Timer(200, "a")]


def test_indexing_an_old_store_undone_with_its_record_is_done_again() -> None:
    store = _store()
    space = Keyspace(store, b"w")
    space.put(timer_key(300, "a"), b"")
    store.commit()
    store.begin_record()
    index = TimerIndex(space)  # a task context opened while a record is handled
    store.undo_record()  # that record failed: the index's own writes are gone too
    index.set("a", 500)  # must replace a's timer, not add a second one
    assert _timer_keys(store) == [timer_key(500, "a")] and len(index) == 1


def test_reading_or_emptying_an_index_writes_nothing_it_does_not_need() -> None:
    store = _store()
    index = TimerIndex(Keyspace(store, b"w"))
    assert len(index) == 0 and index.due_ms("a") is None and index.pop_due(10, limit=5) == []
    assert store.changes() == []  # an empty index costs no changelog entry per transaction
    index.set("a", 5)
    store.commit()
    assert index.pop_due(10, limit=5) == [Timer(5, "a")]
    store.commit()
    assert len(index) == 0 and list(Keyspace(store, b"w").items()) == []
    assert store.changes() == []


class _CountingScans(TaskStore):
    scans = 0

    def scan(self, prefix: bytes, start: bytes = b""):  # type: ignore[no-untyped-def]
        self.scans += 1
        return super().scan(prefix, start)


def test_an_index_with_no_timers_reads_its_count_without_scanning_the_store() -> None:
    # The count is read by every `set`, once per record or more: a scan there made each record
    # cost a pass over the transaction's writes (found in a profile of notifications).
    store = _CountingScans("index", 0, MemoryBackend())
    index = TimerIndex(Keyspace(store, b"w"))
    opened = store.scans
    for n in range(100):
        index.set(f"adv-{n}", None)
        assert len(index) == 0
    index.set("a", 5)
    assert index.pop_due(10, limit=5) == [Timer(5, "a")]  # one ordered scan, as ever
    index.set("b", None)
    assert len(index) == 0 and store.scans == opened + 1


class _Seeks(Keyspace):
    """A keyspace that records where each ordered scan starts."""

    def __init__(self, store: TaskStore, prefix: bytes) -> None:
        super().__init__(store, prefix)
        self.starts: list[bytes] = []

    def items(self, start: bytes = b""):  # type: ignore[no-untyped-def]
        self.starts.append(start)
        return super().items(start)


def test_a_scan_starts_at_the_earliest_live_timer_not_at_the_deleted_ones_before_it() -> None:
    store = _store()
    space = _Seeks(store, b"w")
    index = TimerIndex(space)
    for i in range(5):
        index.set(f"t{i}", 100 + i)
    store.commit()
    assert [t.id for t in index.pop_due(102, 10)] == ["t0", "t1", "t2"]
    store.commit()  # t0..t2 are deleted keys now: the next scan seeks past them
    assert [t.id for t in index.pop_due(103, 10)] == ["t3"]
    assert space.starts[-1] == timer_key(103, "t3")
    index.set("early", 50)  # set before the floor: the floor moves down to it
    assert [t.id for t in index.pop_due(103, 10)] == ["early"]
    assert space.starts[-1] == timer_key(50, "early")
    assert [t.id for t in index.pop_due(200, 10)] == ["t4"]
    assert index.pop_due(10**12, 10) == []  # empty: the next timer set is found
    index.set("late", 10**9)
    assert [t.id for t in index.pop_due(10**12, 10)] == ["late"]


def test_timers_an_aborted_transaction_popped_fire_again_from_the_same_index() -> None:
    store = _store()
    index = TimerIndex(Keyspace(store, b"w"))
    for i in range(3):
        index.set(f"t{i}", 100 + i)
    store.commit()
    assert len(index.pop_due(101, 10)) == 2  # the floor moves past t0 and t1
    store.abort()  # their keys are back, below the floor
    assert [t.id for t in index.pop_due(101, 10)] == ["t0", "t1"]


def test_a_timer_an_undone_record_brings_back_below_the_floor_still_fires() -> None:
    store = _store()
    index = TimerIndex(Keyspace(store, b"w"))
    index.set("a", 100)
    index.set("b", 200)
    store.commit()
    store.begin_record()
    index.set("a", 300)  # the record moves a's timer later, past b...
    assert [t.id for t in index.pop_due(250, 10)] == ["b"]  # ...and the floor to a's new key
    store.undo_record()  # the record failed: a is due at 100 again, b is back too
    assert [t.id for t in index.pop_due(250, 10)] == ["a", "b"]


def test_no_seek_before_the_earliest_live_timer_is_due_and_a_set_is_always_seen() -> None:
    store = _store()
    space = _Seeks(store, b"w")
    index = TimerIndex(space)
    index.set("a", 100)
    index.set("b", 200)
    store.commit()
    assert index.pop_due(50, 10) == []  # a scan: stops at a, due at 100
    scans = len(space.starts)
    assert index.pop_due(99, 10) == []  # nothing can be due before 100: no seek
    index.set("b", None)  # clearing a timer never makes another due sooner
    assert index.pop_due(99, 10) == [] and len(space.starts) == scans
    index.set("early", 60)  # a timer set below the earliest is found
    assert [t.id for t in index.pop_due(99, 10)] == ["early"]
    assert [t.id for t in index.pop_due(100, 10)] == ["a"]
    assert index.pop_due(10**12, 10) == []  # none left: nothing looked for until a set
    scans = len(space.starts)
    assert index.pop_due(10**13, 10) == [] and len(space.starts) == scans
    index.set("late", 10**12)
    assert [t.id for t in index.pop_due(10**13, 10)] == ["late"]
