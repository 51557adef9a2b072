"""Reconciliation without a broker: v2 totals, clawbacks, friends, and the v1/v2 check."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from types import SimpleNamespace

import pytest

from referrals.contract.avro import AvroCodec
from referrals.contract.records import (
    PayoutCommand,
    PayoutKind,
    PayoutResult,
    PayoutStatus,
    Recipient,
    RewardType,
)
from referrals.platform.errors import PermanentError, ReferralsError
from referrals.streams.dlq import dead_letter
from services.rewards.adapters.operator import decoded
from services.rewards.adapters.payout_reports import check_consistent, reconcile_messages
from services.rewards.domain.reconcile import Mismatch, reconcile, report_data, report_text

T = datetime(2026, 3, 2, tzinfo=UTC)


def _payout(
    payout_id: str,
    amount: int,
    attempt: int = 1,
    program: str = "acme",
    *,
    kind: PayoutKind = PayoutKind.PAYOUT,
    recipient: Recipient = Recipient.ADVOCATE,
) -> PayoutCommand:
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
        kind=kind,
        recipient=recipient,
    )


def _friend(payout_id: str, amount: int) -> PayoutCommand:
    return replace(_payout(payout_id, amount, recipient=Recipient.FRIEND), rule_id="friend", tier=0)


def _clawback(payout_id: str, amount: int, original: str) -> PayoutCommand:
    return replace(
        _payout(payout_id, amount, kind=PayoutKind.CLAWBACK), original_payout_id=original
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
    report = reconcile(payouts, results, payouts)
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


def test_reconcile_flags_a_payout_attempt_issued_twice_on_either_topic() -> None:
    once, twice = [_payout("a", 5_000)], [_payout("a", 5_000), _payout("a", 5_000)]
    report = reconcile(twice, [], once)
    assert report.duplicates == [("rewards.payouts.v2", "a", 1, 2)]
    text = report_text(report)
    assert "ERROR: payout a attempt 1 is on rewards.payouts.v2 2 times (DUPLICATE_PAYOUT)" in text
    assert report.lines[0].issued.count == 1
    assert reconcile(once, [], twice).duplicates == [("rewards.payouts.v1", "a", 1, 2)]
    with pytest.raises(ReferralsError) as caught:
        check_consistent(report)
    assert caught.value.reason == "DUPLICATE_PAYOUT"
    [error] = report_data(report)["errors"]  # type: ignore[misc]
    assert error == {
        "topic": "rewards.payouts.v2",
        "payout_id": "a",
        "attempt": 1,
        "copies": 2,
        "error": "DUPLICATE_PAYOUT",
    }


def test_reconcile_text_is_a_table_per_program_and_currency() -> None:
    text = report_text(
        reconcile([_payout("a", 5_000)], [_result("a", PayoutStatus.PAID)], [_payout("a", 5_000)])
    )
    head, row = text.splitlines()
    assert head.split() == [
        "program",
        "currency",
        "issued",
        "paid",
        "failed",
        "outstanding",
        "attempts",
        "clawed_back",
        "friends",
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
        "0",
        "/",
        "0.00",
        "0",
        "/",
        "0.00",
    ]
    assert report_text(reconcile([], [], [])).endswith("(no payouts issued)")


def test_operator_reads_skip_records_that_do_not_decode() -> None:
    class Msg:
        def __init__(self, value: bytes) -> None:
            self.value = value

    codec = AvroCodec()
    good = codec.encode(_result("a", PayoutStatus.PAID))
    records, skipped = decoded([Msg(b"garbage"), Msg(good)], codec)
    assert records == [_result("a", PayoutStatus.PAID)] and skipped == 1
    report = reconcile([], [], [])
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
    report = reconcile(payouts, results, payouts)
    assert report.paid_twice == [("a", (1, 2))]
    [line] = report.lines
    assert (line.paid.count, line.paid_twice.count, line.paid_twice.amount_minor) == (2, 1, 5_000)
    assert "ERROR: payout a was PAID on attempts 1, 2 (PAID_TWICE)" in report_text(report)
    data = report_data(report)
    assert {"payout_id": "a", "paid_attempts": [1, 2], "error": "PAID_TWICE"} in data["errors"]  # type: ignore[operator]
    with pytest.raises(ReferralsError) as caught:
        check_consistent(report)  # the CLI prints the report, then exits 1
    assert caught.value.reason == "PAID_TWICE"


def test_the_same_attempt_answered_paid_twice_is_not_paid_twice() -> None:
    results = [_result("a", PayoutStatus.PAID), _result("a", PayoutStatus.PAID)]
    report = reconcile([_payout("a", 5_000)], results, [_payout("a", 5_000)])
    assert report.paid_twice == [] and report.lines[0].paid_twice.count == 0
    check_consistent(report)


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
    report = reconcile_messages(issued, issued, [refused, accepted], dead, topic, codec)
    [line] = report.lines
    assert (line.paid.count, line.outstanding.count) == (1, 1)
    assert report.dead_lettered == 1
    assert "1 payout result(s) the rewards service dead-lettered" in report_text(report)
    assert report_data(report)["dead_lettered_results"] == 1


def test_friends_count_in_the_totals_and_again_on_their_own() -> None:
    payouts = [_payout("a", 5_000), _friend("f-a", 2_500), _friend("f-b", 2_500)]
    results = [_result("a", PayoutStatus.PAID), _result("f-a", PayoutStatus.FAILED)]
    report = reconcile(payouts, results, [_payout("a", 5_000)])
    [line] = report_data(report)["programs"]  # type: ignore[misc]
    assert line["issued"] == {"count": 3, "amount_minor": 10_000, "amount": "100.00"}
    assert (line["paid"]["count"], line["failed"]["count"], line["outstanding"]["count"]) == (
        1,
        1,
        1,
    )
    friends = line["friends"]
    assert friends["issued"] == {"count": 2, "amount_minor": 5_000, "amount": "50.00"}
    assert (friends["paid"]["count"], friends["failed"]["count"]) == (0, 1)
    assert friends["outstanding"]["amount"] == "25.00"
    assert report.mismatches == []  # friends are on v2 only, by design
    _, row = report_text(report).splitlines()
    assert row.split()[-3:] == ["2", "/", "50.00"]  # the friends column: issued to friends


def test_clawbacks_are_counted_apart_from_the_payouts_they_recover() -> None:
    payouts = [_payout("a", 5_000), _clawback("cb-a", 5_000, "a"), _payout("b", 700)]
    results = [_result("a", PayoutStatus.PAID), _result("cb-a", PayoutStatus.PAID)]
    report = reconcile(payouts, results, [_payout("a", 5_000), _payout("b", 700)])
    [line] = report.lines
    assert (line.issued.count, line.issued.amount_minor) == (2, 5_700)
    assert (line.paid.count, line.outstanding.count, line.attempts) == (1, 1, 2)
    assert (line.clawed_back.count, line.clawed_back.amount_minor) == (1, 5_000)
    assert report.unmatched == [] and report.mismatches == []  # the clawback's result matches
    [data] = report_data(report)["programs"]  # type: ignore[misc]
    assert data["clawed_back"] == {"count": 1, "amount_minor": 5_000, "amount": "50.00"}
    check_consistent(report)


def test_v1_and_v2_must_carry_the_same_advocate_payouts() -> None:
    v2 = [
        _payout("both", 5_000),
        _payout("v2-only", 100),
        _payout("cheaper", 4_000),
        _friend("as-friend", 2_500),
        _friend("friend", 2_500),  # a friend reward on v2 only: as it should be
        _clawback("cb", 5_000, "both"),
    ]
    v1 = [
        _payout("both", 5_000),
        _payout("v1-only", 300),
        _payout("cheaper", 5_000),
        _payout("as-friend", 2_500),
    ]
    report = reconcile(v2, [], v1)
    assert report.mismatches == [
        Mismatch(
            "as-friend", 1, "on rewards.payouts.v2 as a FRIEND PAYOUT, not an advocate payout"
        ),
        Mismatch("cheaper", 1, "50.00 USD on rewards.payouts.v1, 40.00 USD on rewards.payouts.v2"),
        Mismatch("v1-only", 1, "on rewards.payouts.v1 but not on rewards.payouts.v2"),
        Mismatch("v2-only", 1, "on rewards.payouts.v2 but not on rewards.payouts.v1"),
    ]
    text = report_text(report)
    assert (
        "ERROR: payout v1-only attempt 1: on rewards.payouts.v1 but not on rewards.payouts.v2 "
        "(V1_V2_MISMATCH)" in text
    )
    errors = report_data(report)["errors"]
    assert {
        "payout_id": "v2-only",
        "attempt": 1,
        "problem": "on rewards.payouts.v2 but not on rewards.payouts.v1",
        "error": "V1_V2_MISMATCH",
    } in errors  # type: ignore[operator]
    with pytest.raises(ReferralsError) as caught:
        check_consistent(report)
    assert caught.value.reason == "V1_V2_MISMATCH"


def test_a_retry_must_be_on_both_topics_too() -> None:
    v2 = [_payout("a", 5_000), _payout("a", 5_000, attempt=2)]
    report = reconcile(v2, [], [_payout("a", 5_000)])
    assert report.mismatches == [
        Mismatch("a", 2, "on rewards.payouts.v2 but not on rewards.payouts.v1")
    ]
