"""Operator commands without a broker: who may be approved or retried, and reconciliation."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from types import SimpleNamespace

import pytest
from aiokafka.partitioner import murmur2
from rewards_builders import won

from referrals.contract.avro import AvroCodec
from referrals.contract.records import (
    PayoutCommand,
    PayoutResult,
    PayoutStatus,
    ReferralStatus,
    ReferralStatusChanged,
    RewardAction,
    RewardType,
)
from referrals.platform.errors import PermanentError, ReferralsError
from referrals.streams.dlq import dead_letter
from services.rewards.adapters.operator import (
    check_unique,
    decoded,
    partition_for,
    reconcile_messages,
)
from services.rewards.domain.commands import (
    Refused,
    check,
    command_id,
    reconcile,
    report_data,
    report_text,
)

T = datetime(2026, 3, 2, tzinfo=UTC)


def _status(status: ReferralStatus, reason: str | None = None, n: int = 1) -> ReferralStatusChanged:
    return replace(
        won("r1"), status=status, reason=reason, payout_id="po-1", status_id=f"st-{status}-{n}"
    )


HELD = _status(ReferralStatus.REWARD_HELD, "NEEDS_APPROVAL")
REWARDED = _status(ReferralStatus.REWARDED)
FAILED = _status(ReferralStatus.PAYOUT_FAILED, "BOUNCED")


def test_approve_needs_a_reward_held_for_approval() -> None:
    assert check(RewardAction.APPROVE, "po-1", [HELD]) == 1
    with pytest.raises(Refused, match=r"po-1 is REWARDED; only a reward held for approval"):
        check(RewardAction.APPROVE, "po-1", [HELD, REWARDED])
    cap = _status(ReferralStatus.REWARD_HELD, "CAP_REACHED")
    with pytest.raises(Refused, match=r"is REWARD_HELD \(CAP_REACHED\)"):
        check(RewardAction.APPROVE, "po-1", [cap])


def test_retry_needs_a_failed_payout_and_leads_to_the_next_attempt() -> None:
    assert check(RewardAction.RETRY, "po-1", [REWARDED, REWARDED, FAILED]) == 2
    second = _status(ReferralStatus.REWARDED, n=2)
    assert check(RewardAction.RETRY, "po-1", [REWARDED, FAILED, second, FAILED]) == 3
    paid = _status(ReferralStatus.PAID)
    with pytest.raises(Refused, match=r"po-1 is PAID; only a payout whose latest status is"):
        check(RewardAction.RETRY, "po-1", [REWARDED, paid])


def test_an_unknown_payout_is_refused() -> None:
    for action in RewardAction:
        with pytest.raises(Refused, match="unknown payout po-x"):
            check(action, "po-x", [])


def test_command_ids_are_deterministic_per_action_payout_and_attempt() -> None:
    one = command_id(RewardAction.RETRY, "po-1", 2)
    assert one == command_id(RewardAction.RETRY, "po-1", 2)
    assert len({one, command_id(RewardAction.RETRY, "po-1", 3)}) == 2
    assert one != command_id(RewardAction.APPROVE, "po-1", 2)


def _payout(payout_id: str, amount: int, attempt: int = 1, program: str = "acme") -> PayoutCommand:
    return PayoutCommand(
        payout_id,
        attempt,
        program,
        "adv-1",
        f"ref-{payout_id}",
        RewardType.GIFT_CARD,
        amount,
        "USD",
        "referral-reward",
        1,
        1,
        T,
    )


def _result(payout_id: str, status: PayoutStatus, attempt: int = 1) -> PayoutResult:
    return PayoutResult(payout_id, attempt, status, T)


def test_reconcile_splits_issued_into_paid_failed_and_outstanding() -> None:
    payouts = [
        _payout("a", 5_000),
        _payout("b", 5_000),
        _payout("c", 7_500),
        _payout("b", 5_000, attempt=2),  # b failed, was retried: outstanding again
        _payout("z", 100, program="other"),
    ]
    results = [
        _result("a", PayoutStatus.PAID),
        _result("b", PayoutStatus.FAILED),
        _result("c", PayoutStatus.FAILED),
        _result("ghost", PayoutStatus.PAID),
    ]
    report = reconcile(payouts, results)
    data = report_data(report)
    [acme, other] = data["programs"]  # type: ignore[misc]
    assert (acme["program_id"], acme["currency"], acme["attempts"]) == ("acme", "USD", 4)
    assert acme["issued"] == {"count": 3, "amount_minor": 17_500, "amount": "175.00"}
    assert acme["paid"]["count"] == 1 and acme["paid"]["amount"] == "50.00"
    assert acme["failed"] == {"count": 1, "amount_minor": 7_500, "amount": "75.00"}
    assert acme["outstanding"] == {"count": 1, "amount_minor": 5_000, "amount": "50.00"}
    assert other["outstanding"]["count"] == 1
    assert data["errors"] == []
    assert data["unmatched_results"] == [{"payout_id": "ghost", "attempt": 1, "status": "PAID"}]


def test_reconcile_flags_a_payout_attempt_issued_twice() -> None:
    report = reconcile([_payout("a", 5_000), _payout("a", 5_000)], [])
    assert report.duplicates == [("a", 1, 2)]
    text = report_text(report)
    assert "ERROR: payout a attempt 1 was issued 2 times" in text
    assert report.lines[0].issued.count == 1


def test_reconcile_text_is_a_table_per_program_and_currency() -> None:
    text = report_text(reconcile([_payout("a", 5_000)], [_result("a", PayoutStatus.PAID)]))
    head, row = text.splitlines()
    assert head.split() == [
        "program",
        "currency",
        "issued",
        "paid",
        "failed",
        "outstanding",
        "attempts",
    ]
    assert row.split() == [
        "acme",
        "USD",
        "1",
        "/",
        "50.00",
        "1",
        "/",
        "50.00",
        "0",
        "/",
        "0.00",
        "0",
        "/",
        "0.00",
        "1",
    ]
    assert report_text(reconcile([], [])).endswith("(no payouts issued)")


def test_commands_find_the_partition_the_service_s_producer_used() -> None:
    # aiokafka's default partitioner is Kafka's murmur2: the same key, the same partition number.
    for key in ("po-1", "adv-42", "é"):
        expected = (murmur2(key.encode()) & 0x7FFFFFFF) % 6
        assert partition_for(key, [5, 3, 1, 0, 2, 4]) == expected


def test_operator_reads_skip_records_that_do_not_decode() -> None:
    class Msg:
        def __init__(self, value: bytes) -> None:
            self.value = value

    codec = AvroCodec()
    good = codec.encode(_result("a", PayoutStatus.PAID))
    records, skipped = decoded([Msg(b"garbage"), Msg(good)], codec)
    assert records == [_result("a", PayoutStatus.PAID)] and skipped == 1
    report = reconcile([], [])
    report.skipped = 1
    assert report_text(report).endswith("1 record(s) could not be decoded and were skipped")
    assert report_data(report)["undecodable_records"] == 1


def test_a_payout_paid_on_two_attempts_is_flagged_not_counted_once() -> None:
    """Attempt 1's PAID arrived late, after a retry's attempt 2 was PAID too: the money moved
    twice, and reconcile showed one paid payout and no error."""
    payouts = [_payout("a", 5_000), _payout("a", 5_000, attempt=2), _payout("b", 700)]
    results = [
        _result("a", PayoutStatus.FAILED),
        _result("a", PayoutStatus.PAID, attempt=2),
        _result("a", PayoutStatus.PAID),
        _result("b", PayoutStatus.PAID),
    ]
    report = reconcile(payouts, results)
    assert report.paid_twice == [("a", (1, 2))]
    [line] = report.lines
    assert (line.paid.count, line.paid_twice.count, line.paid_twice.amount_minor) == (2, 1, 5_000)
    assert "ERROR: payout a was PAID on attempts 1, 2 (PAID_TWICE)" in report_text(report)
    data = report_data(report)
    assert {"payout_id": "a", "paid_attempts": [1, 2], "error": "PAID_TWICE"} in data["errors"]  # type: ignore[operator]
    with pytest.raises(ReferralsError) as caught:
        check_unique(report)  # the CLI prints the report, then exits 1
    assert caught.value.reason == "PAID_TWICE"


def test_the_same_attempt_answered_paid_twice_is_not_paid_twice() -> None:
    results = [_result("a", PayoutStatus.PAID), _result("a", PayoutStatus.PAID)]
    report = reconcile([_payout("a", 5_000)], results)
    assert report.paid_twice == [] and report.lines[0].paid_twice.count == 0
    check_unique(report)


def _consumed(value: bytes, partition: int, offset: int, headers: object = ()) -> SimpleNamespace:
    return SimpleNamespace(value=value, partition=partition, offset=offset, headers=headers)


def test_results_the_rewards_service_dead_lettered_are_not_counted() -> None:
    """A result the service refused (here a key mismatch) never marked anything PAID; reconcile
    read the results topic whole and counted it."""
    codec = AvroCodec()
    topic = "t1.rewards.payout-results.v1"
    issued = [_consumed(codec.encode(_payout(p, 5_000)), 0, n) for n, p in enumerate("ab")]
    refused = _consumed(codec.encode(_result("a", PayoutStatus.PAID)), 2, 7)
    accepted = _consumed(codec.encode(_result("b", PayoutStatus.PAID)), 2, 8)
    letter = dead_letter(
        service="rewards",
        topic=topic,
        partition=2,
        offset=7,
        timestamp_ms=0,
        key=b"x",
        value=refused.value,
        error=PermanentError("key", reason="KEY_MISMATCH"),
    )
    elsewhere = dead_letter(  # the same coordinates on another topic: not this one
        service="rewards",
        topic="t1.referral.status.v1",
        partition=2,
        offset=8,
        timestamp_ms=0,
        key=None,
        value=b"",
        error=PermanentError("x"),
    )
    dead = [
        _consumed(d.value or b"", 0, i, list(d.headers)) for i, d in enumerate([letter, elsewhere])
    ]
    report = reconcile_messages(issued, [refused, accepted], dead, topic, codec)
    [line] = report.lines
    assert (line.paid.count, line.outstanding.count) == (1, 1)
    assert report.dead_lettered == 1
    assert "1 payout result(s) the rewards service dead-lettered" in report_text(report)
    assert report_data(report)["dead_lettered_results"] == 1
