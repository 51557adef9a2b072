"""Records waiting for a missing dependency: arrival order, release, expiry, ordering keys."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
import pytest

from referrals.platform.errors import PermanentError, UnknownProgram
from referrals.streams.processor import DeadLetterOut, Inbound
from referrals.streams.state import Keyspace, MemoryBackend, TaskStore
from referrals.streams.waiting import Dependency, Waiting, WaitingLot, rerun

T0 = datetime(2026, 1, 1, tzinfo=UTC)
SECOND = timedelta(seconds=1)


def _store() -> TaskStore:
    return TaskStore("state", 0, MemoryBackend())


def _unknown(waiting: Waiting) -> PermanentError:
    return UnknownProgram(f"no config for program {waiting.dependency[1]!r}")


def _lot(store: TaskStore, wait_s: int = 60) -> WaitingLot:
    return WaitingLot(Keyspace(store, b"p"), wait_ms=wait_s * 1000, expired=_unknown)


def _record(offset: int, key: str = "adv-1") -> Inbound:
    raw = b"\xc3\x01raw-%d" % offset
    return Inbound("referral.status.v1", 0, offset, key, None, 1_000 + offset, key.encode(), raw)  # type: ignore[arg-type]


def program(program_id: str) -> Dependency:
    return ("program", program_id)


def test_records_are_released_in_arrival_order_when_their_dependency_arrives() -> None:
    lot = _lot(_store())
    lot.park(_record(7), program("p1"), T0)
    lot.park(_record(3), program("p1"), T0 + SECOND)
    lot.park(_record(5), program("p2"), T0 - SECOND)  # a clock step back: still after 7 and 3
    assert len(lot) == 3 and lot.count("program") == 3 and lot.count("payout") == 0
    assert lot.waiting_for(program("p1")) and not lot.waiting_for(program("p3"))
    assert [w.offset for w in lot.release(program("p1"))] == [7, 3]
    assert lot.release(program("p1")) == [] and lot.dependencies() == [program("p2")]


def test_a_released_record_is_the_record_as_consumed() -> None:
    lot = _lot(_store())
    lot.park(_record(9), ("payout", "po-1\x01x"), T0)
    [waiting] = lot.release(("payout", "po-1\x01x"))
    expected = _record(9)
    assert waiting.inbound(expected.value) == expected
    assert waiting.since_ms == int(T0.timestamp() * 1000)


def test_a_sweep_releases_what_arrived_and_dead_letters_what_waited_too_long() -> None:
    lot = _lot(_store(), wait_s=60)
    lot.park(_record(1), program("never"), T0)
    lot.park(_record(2), program("known"), T0 + SECOND)
    lot.park(_record(3), program("never"), T0 + 30 * SECOND)
    swept = lot.sweep(lambda d: d == program("known"), T0 + 59 * SECOND)
    assert [w.offset for w in swept.ready] == [2] and swept.dead == []
    assert not lot.due(T0 + 59 * SECOND)
    assert lot.due(T0 + 60 * SECOND)  # waited the whole wait: expires
    swept = lot.sweep(lambda d: False, T0 + 60 * SECOND)
    [letter] = swept.dead
    assert swept.ready == [] and len(lot) == 1
    assert isinstance(letter.error, UnknownProgram) and letter.error.reason == "UNKNOWN_PROGRAM"
    assert "'never'" in str(letter.error)
    record = letter.record
    assert (record.topic, record.offset, record.key) == ("referral.status.v1", 1, "adv-1")
    assert (record.raw_key, record.raw_value) == (b"adv-1", b"\xc3\x01raw-1")  # unchanged


def test_an_arrived_dependency_wins_over_expiry() -> None:
    lot = _lot(_store(), wait_s=60)
    lot.park(_record(1), program("late"), T0)
    swept = lot.sweep(lambda d: True, T0 + 3600 * SECOND)
    assert [w.offset for w in swept.ready] == [1] and swept.dead == []


def test_a_sweep_is_due_only_when_told_of_an_arrival_or_when_a_record_is_too_old() -> None:
    lot = _lot(_store(), wait_s=60)
    lot.sweep(lambda d: False, T0)  # nothing yet
    lot.park(_record(1), program("p1"), T0)
    assert not lot.due(T0 + SECOND)
    lot.arrived(program("other"))  # nothing waits for it
    assert not lot.due(T0 + SECOND)
    lot.arrived(program("p1"))
    assert lot.due(T0 + SECOND)
    assert [w.offset for w in lot.sweep(lambda d: True, T0 + SECOND).ready] == [1]
    assert not lot.due(T0 + 3600 * SECOND)  # empty


def test_a_record_waits_behind_an_earlier_waiting_record_of_its_ordering_key() -> None:
    store = _store()
    lot = _lot(store, wait_s=1)
    lot.park(_record(1, "a"), program("late"), T0, order_key="a")
    lot.park(_record(2, "a"), program("known"), T0, order_key="a")  # behind a's first record
    lot.park(_record(3, "b"), program("known"), T0, order_key="b")
    lot.park(_record(4, "c"), program("never"), T0, order_key="c")
    assert lot.holds("a") and not lot.holds("d")
    known = {program("known")}
    assert [w.offset for w in lot.sweep(known.__contains__, T0).ready] == [3]
    assert [w.offset for w in lot.release(program("known"))] == []  # still behind a's first
    store.commit()
    again = _lot(store, wait_s=1)  # durable
    known |= {program("late")}
    assert [w.offset for w in again.sweep(known.__contains__, T0).ready] == [1, 2]
    swept = again.sweep(lambda d: False, T0 + 2 * SECOND)
    assert (swept.ready, [d.record.offset for d in swept.dead]) == ([], [4])
    assert swept.dead[0].record.raw_key == b"c" and len(again) == 0 and not again.holds("c")


def test_records_without_an_ordering_key_never_block_each_other() -> None:
    lot = _lot(_store())
    lot.park(_record(1), program("late"), T0)
    lot.park(_record(2), program("known"), T0)
    assert [w.offset for w in lot.release(program("known"))] == [2]


def test_the_index_is_rebuilt_from_the_store_and_arrival_order_goes_on() -> None:
    store = _store()
    lot = _lot(store)
    for offset in (5, 6, 7):
        lot.park(_record(offset), program("p1"), T0)
    lot.release(program("nothing"))
    store.commit()
    again = _lot(store)  # on assignment, on another instance
    assert len(again) == 3 and again.waiting_for(program("p1"))
    again.park(_record(1), program("p1"), T0 + SECOND)
    assert [w.offset for w in again.release(program("p1"))] == [5, 6, 7, 1]
    assert list(Keyspace(store, b"p").items()) == []


def test_an_aborted_transactions_parking_and_releases_do_not_survive() -> None:
    store = _store()
    lot = _lot(store)
    lot.park(_record(1), program("p1"), T0)
    store.commit()
    lot.park(_record(2), program("p2"), T0)
    assert [w.offset for w in lot.release(program("p1"))] == [1]
    store.abort()  # the transaction never happened: the lot is made again from the store
    again = _lot(store)
    assert len(again) == 1 and again.waiting_for(program("p1"))
    assert not again.waiting_for(program("p2"))


def test_a_record_whose_parking_was_undone_is_skipped() -> None:
    store = _store()
    lot = _lot(store)
    store.begin_record()
    lot.park(_record(1), program("p1"), T0)
    store.undo_record()  # its handler failed after parking it: the runtime dead-letters it
    assert lot.release(program("p1")) == [] and len(lot) == 0


def test_a_key_of_another_layout_is_refused() -> None:
    store = _store()
    Keyspace(store, b"p").put(b"S", b"")
    with pytest.raises(ValueError):
        _lot(store)


class _Codec:
    """Decodes b"\xc3\x01raw-N" to "record-N"; anything else is undecodable."""

    def decode(self, data: bytes, expected: str | None = None) -> str:
        if not data.startswith(b"\xc3\x01raw-"):
            raise PermanentError("not a record", reason="UNDECODABLE")
        return "record-" + data.removeprefix(b"\xc3\x01raw-").decode()

    def encode(self, record: object) -> bytes:
        raise NotImplementedError


def _released(*offsets: int) -> list[Waiting]:
    lot = _lot(_store())
    for offset in offsets:
        lot.park(_record(offset), program("p1"), T0)
    return lot.release(program("p1"))


def test_rerun_hands_each_released_record_over_decoded_and_in_order() -> None:
    seen: list[tuple[int, str]] = []

    def handle(record: Inbound) -> list[Any]:
        seen.append((record.offset, record.value))
        return [f"out-{record.offset}"]

    assert rerun(_released(4, 2), _Codec(), handle) == ["out-4", "out-2"]
    assert seen == [(4, "record-4"), (2, "record-2")]


def test_a_released_record_that_fails_is_dead_lettered_unchanged_and_the_next_one_runs() -> None:
    def handle(record: Inbound) -> list[Any]:
        if record.offset == 1:
            raise PermanentError("bad", reason="PROGRAM_MISMATCH")
        if record.offset == 2:
            raise KeyError("a bug")
        return ["ok"]

    out = rerun(_released(1, 2, 3), _Codec(), handle)
    assert out[2] == "ok"
    dead = [o for o in out[:2] if isinstance(o, DeadLetterOut)]
    assert [(d.record.offset, d.error.reason) for d in dead] == [
        (1, "PROGRAM_MISMATCH"),
        (2, "KeyError"),
    ]
    assert dead[0].record.raw_value == _record(1).raw_value  # the bytes as consumed


def test_a_released_record_that_no_longer_decodes_is_dead_lettered() -> None:
    [waiting] = _released(5)
    broken = msgspec.structs.replace(waiting, raw_value=b"garbage")
    [dead] = rerun([broken], _Codec(), lambda record: ["never"])
    assert isinstance(dead, DeadLetterOut) and dead.error.reason == "UNDECODABLE"


def _big(offset: int, size: int) -> Inbound:
    raw = b"\xc3\x01" + b"v" * size
    return Inbound("referral.status.v1", 0, offset, "adv-1", None, 1_000, b"adv-1", raw)  # type: ignore[arg-type]


def test_a_record_too_large_to_park_is_refused_and_nothing_is_written() -> None:
    from referrals.streams.waiting import MAX_PARKED_BYTES

    store = _store()
    lot = _lot(store)
    lot.park(_record(1), program("p1"), T0)
    with pytest.raises(PermanentError) as refused:
        lot.park(_big(2, 1_000_000), program("p1"), T0)  # near Kafka's 1 MiB record limit
    assert refused.value.reason == "TOO_LARGE" and str(MAX_PARKED_BYTES) in str(refused.value)
    assert len(lot) == 1 and len(list(store.scan(b"p"))) == 1
    lot.park(_record(3), program("p1"), T0)  # the lot goes on, arrival order intact
    assert [w.offset for w in lot.release(program("p1"))] == [1, 3]


def test_parked_records_are_stored_as_raw_bytes_up_to_the_bound() -> None:
    from referrals.streams.waiting import MAX_PARKED_BYTES

    store = _store()
    lot = _lot(store)
    size = MAX_PARKED_BYTES - 1_000  # base64 would make this a third larger, past the bound
    lot.park(_big(1, size), program("p1"), T0)
    [(_, stored)] = list(store.scan(b"p"))
    assert size < len(stored) <= MAX_PARKED_BYTES
    [waiting] = lot.release(program("p1"))
    assert waiting.raw_value == _big(1, size).raw_value
