"""The task's referral table: the deadline index that expiry reads, and stores written before it."""

from __future__ import annotations

import struct

from referrals.streams.state import MemoryBackend, TaskStore
from services.attribution.adapters.table import DEADLINE, LEGACY_DEADLINE, ReferralTable


def test_due_reads_deadlines_in_time_order_and_keeps_the_next_one() -> None:
    store = TaskStore("referrals", 0, MemoryBackend())
    table = ReferralTable(store)
    for key, deadline in ((b"b", 5_000), (b"a", 9_000), (b"c", 1_000), (b"d", -5)):
        table._set_entry(key, None, (deadline, 1, 0))
    store.commit()
    assert table.due(6_000) == [b"b", b"c", b"d"]  # in key order
    assert table.next_due == 9_000
    for key, deadline in ((b"b", 5_000), (b"c", 1_000), (b"d", -5)):  # expired: nothing left
        table._set_entry(key, (deadline, 1, 0), None)
    table._set_entry(b"a", (9_000, 1, 0), (12_000, 0, 2))  # waits for something else now
    assert table.due(10_000) == []
    assert table.next_due == 12_000
    assert table.waiting == [0, 2]


def test_deadline_entries_of_an_older_store_are_converted_when_the_task_is_assigned() -> None:
    backend = MemoryBackend()
    backend.apply([(LEGACY_DEADLINE + b"k1", struct.pack(">qHH", 7_000, 2, 1))])
    store = TaskStore("referrals", 0, backend)
    table = ReferralTable(store)
    assert table.waiting == [2, 1]
    assert table.next_due == 7_000
    store.commit()
    assert [k for k, _ in backend.scan(LEGACY_DEADLINE)] == []
    assert [k[:1] for k, _ in backend.scan(DEADLINE)] == [DEADLINE]
    assert ReferralTable(store).due(8_000) == [b"k1"]
