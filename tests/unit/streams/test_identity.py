"""A stream process's transactional id: kept across restarts from the state directory, never
shared by two live processes; and the TxnOffsetCommit that carries its group metadata is never
sent at a version without it."""

from __future__ import annotations

from pathlib import Path

import pytest
from aiokafka.errors import IncompatibleBrokerVersion
from aiokafka.protocol.transaction import TxnOffsetCommitRequest_v0

from referrals.streams.identity import ProcessIdentity
from referrals.streams.txn_offsets import (
    GroupMetadata,
    GroupTxnOffsetCommit,
    TxnOffsetCommitRequest_v3,
)


def test_a_restart_takes_the_same_id_and_a_concurrent_process_another(tmp_path: Path) -> None:
    first = ProcessIdentity.claim(tmp_path, "referrals-rewards")
    twin = ProcessIdentity.claim(tmp_path, "referrals-rewards")  # the first still holds slot 0
    assert first.transactional_id.startswith("referrals-rewards-")
    assert twin.transactional_id != first.transactional_id and twin.slot == 1
    first.release()
    again = ProcessIdentity.claim(tmp_path, "referrals-rewards")
    assert (again.slot, again.transactional_id) == (0, first.transactional_id)
    twin.release()
    again.release()


def test_another_state_directory_makes_another_id(tmp_path: Path) -> None:
    a = ProcessIdentity.claim(tmp_path / "a", "g")
    b = ProcessIdentity.claim(tmp_path / "b", "g")
    assert a.transactional_id != b.transactional_id
    a.release()
    b.release()


def _request() -> GroupTxnOffsetCommit:
    return GroupTxnOffsetCommit(
        transactional_id="g-1",
        producer_id=7,
        producer_epoch=2,
        group=GroupMetadata("g", generation=5, member_id="m-1"),
        offsets={"t": [(0, 42, "")]},
    )


def test_the_offset_commit_carries_the_generation_and_member() -> None:
    built = _request().build(TxnOffsetCommitRequest_v3)
    assert (built.generation_id, built.member_id, built.group_id) == (5, "m-1", "g")
    decoded = TxnOffsetCommitRequest_v3.decode(built.encode())
    assert decoded.generation_id == 5 and decoded.topics[0][1][0][:2] == (0, 42)


def test_a_broker_without_v3_is_refused_rather_than_sent_an_unfenced_commit() -> None:
    with pytest.raises(IncompatibleBrokerVersion, match="fence zombies"):
        _request().build(TxnOffsetCommitRequest_v0)
