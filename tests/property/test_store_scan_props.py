"""A task store's ordered scan agrees with a plain model of its contents, whatever mix of
writes, deletes, undone records, commits and aborts came before it and between scans.

The store keeps its uncommitted keys sorted once a scan has needed them (so a scan is a
bisection, not a sort of every write in the transaction); this checks that index against the
simplest possible model: a dict of committed values and a dict of the transaction's writes.
"""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from referrals.streams.state import MemoryBackend, TaskStore

KEYS = st.binary(min_size=1, max_size=3).map(lambda b: bytes(x % 4 + 97 for x in b))
PREFIXES = st.sampled_from([b"", b"a", b"b", b"ab", b"ba", b"ccc", b"d"])
OPS = st.one_of(
    st.tuples(st.just("put"), KEYS, st.binary(max_size=2)),
    st.tuples(st.just("delete"), KEYS),
    st.tuples(st.just("record"), st.booleans()),  # begin a record; True: undo it at the end
    st.tuples(st.just("end")),
    st.tuples(st.just("scan"), PREFIXES),
    st.tuples(st.just("commit")),
    st.tuples(st.just("abort")),
)


class Model:
    def __init__(self) -> None:
        self.committed: dict[bytes, bytes] = {}
        self.writes: dict[bytes, bytes | None] = {}
        self.record: tuple[dict[bytes, bytes | None], bool] | None = None

    def view(self) -> dict[bytes, bytes]:
        merged: dict[bytes, bytes | None] = {**self.committed, **self.writes}
        return {k: v for k, v in merged.items() if v is not None}


@settings(max_examples=300, deadline=None)
@given(st.lists(OPS, max_size=60))
def test_a_scan_returns_the_model_s_entries_under_the_prefix_in_key_order(
    ops: list[tuple[Any, ...]],
) -> None:
    store, model = TaskStore("s", 0, MemoryBackend()), Model()

    def end_record() -> None:
        if model.record is not None:
            before, undo = model.record
            if undo:
                store.undo_record()
                model.writes = before
            else:
                store.end_record()
            model.record = None

    for op in ops:
        kind = op[0]
        if kind == "put":
            store.put(op[1], op[2])
            model.writes[op[1]] = op[2]
        elif kind == "delete":
            store.delete(op[1])
            model.writes[op[1]] = None
        elif kind == "record":
            end_record()
            store.begin_record()
            model.record = (dict(model.writes), op[1])
        elif kind == "end":
            end_record()
        elif kind == "scan":
            prefix = op[1]
            expected = sorted((k, v) for k, v in model.view().items() if k.startswith(prefix))
            assert list(store.scan(prefix)) == expected
        elif kind == "commit":
            end_record()
            store.commit()
            model.committed = model.view()
            model.writes = {}
        else:
            end_record()
            store.abort()
            model.writes = {}
    end_record()
    assert list(store.scan(b"")) == sorted(model.view().items())


def test_a_scan_sees_keys_written_after_an_earlier_scan_built_the_index() -> None:
    store = TaskStore("s", 0, MemoryBackend())
    store.put(b"k2", b"2")
    assert list(store.scan(b"k")) == [(b"k2", b"2")]
    store.put(b"k1", b"1")
    store.put(b"k3", b"3")
    store.delete(b"k2")
    assert list(store.scan(b"k")) == [(b"k1", b"1"), (b"k3", b"3")]
    store.begin_record()
    store.put(b"k0", b"0")
    store.undo_record()
    assert list(store.scan(b"k")) == [(b"k1", b"1"), (b"k3", b"3")]
