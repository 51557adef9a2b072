"""Finance's and SREs' figures from the rewards service's metrics: money paid and failed by
currency and recipient, rewards on hold now by reason (with their amount and since when), and
how long holds lasted; counted once per committed decision, read back after a restart."""

from __future__ import annotations

from datetime import timedelta

from rewards_builders import won
from test_rewards_adapter_processor import NOW, Loop, _command, payout_of, program

from referrals.contract.records import (
    PayoutCommand,
    PayoutResult,
    PayoutStatus,
    Recipient,
    RewardAction,
)
from referrals.contract.topics import PAYOUT_RESULTS, PAYOUTS_V2, REWARDS_BY_PAYOUT, STATUS

FRIEND = {"amount": "25.00", "reward_type": "BILL_CREDIT"}


def _result(payout_id: str, status: PayoutStatus, attempt: int = 1) -> PayoutResult:
    return PayoutResult(
        payout_id, attempt, status, NOW, None if status is PayoutStatus.PAID else "X"
    )


def test_paid_and_failed_money_is_counted_by_currency_and_recipient_once() -> None:
    loop = Loop()
    loop.program(program(friend_reward=FRIEND))
    loop.send(STATUS, "adv-1", won("r1"))
    loop.send(STATUS, "adv-1", won("r2"))
    friend = next(
        p
        for p in loop.out[PAYOUTS_V2]
        if isinstance(p, PayoutCommand) and p.recipient is Recipient.FRIEND
    )
    for payout_id in (payout_of("r1"), friend.payout_id, payout_of("r1")):  # r1 PAID twice
        loop.send(PAYOUT_RESULTS, payout_id, _result(payout_id, PayoutStatus.PAID))
    loop.send(PAYOUT_RESULTS, payout_of("r2"), _result(payout_of("r2"), PayoutStatus.FAILED))

    advocate = {"currency": "USD", "recipient": "ADVOCATE"}
    assert loop.metric("rewards_payouts_paid_total", **advocate) == 1
    assert loop.metric("rewards_payouts_paid_amount_minor_total", **advocate) == 5_000
    assert loop.metric("rewards_payouts_paid_total", currency="USD", recipient="FRIEND") == 1
    assert (
        loop.metric("rewards_payouts_paid_amount_minor_total", currency="USD", recipient="FRIEND")
        == 2_500
    )
    assert loop.metric("rewards_payouts_failed_total", **advocate) == 1
    assert loop.metric("rewards_payouts_failed_amount_minor_total", **advocate) == 5_000


def test_a_result_in_an_aborted_transaction_is_not_counted() -> None:
    loop = Loop()
    loop.program(program())
    loop.send(STATUS, "adv-1", won("r1"))
    loop.queue.append(
        (PAYOUT_RESULTS, payout_of("r1"), _result(payout_of("r1"), PayoutStatus.PAID))
    )
    loop.drain(NOW, commit=False)
    assert loop.metric("rewards_payouts_paid_total", currency="USD", recipient="ADVOCATE") == 0


def test_rewards_on_hold_are_gauged_by_reason_with_amount_and_start_until_released() -> None:
    loop = Loop()
    loop.program(program(approval_threshold="50.00"))
    loop.send(STATUS, "adv-1", won("r1"))  # 50.00: held NEEDS_APPROVAL
    later = NOW + timedelta(hours=2)
    loop.send(STATUS, "adv-1", won("r2"), later)
    held = {"reason": "NEEDS_APPROVAL", "currency": "USD"}
    assert loop.metric("rewards_on_hold", **held) == 2
    assert loop.metric("rewards_on_hold_amount_minor", **held) == 10_000
    oldest = {"reason": "NEEDS_APPROVAL"}
    assert loop.metric("rewards_on_hold_oldest_timestamp_seconds", **oldest) == NOW.timestamp()

    approved = NOW + timedelta(hours=5)
    loop.send(REWARDS_BY_PAYOUT, payout_of("r1"), _command(RewardAction.APPROVE, "r1"), approved)
    assert loop.metric("rewards_on_hold", **held) == 1
    assert loop.metric("rewards_on_hold_amount_minor", **held) == 5_000
    assert loop.metric("rewards_on_hold_oldest_timestamp_seconds", **oldest) == later.timestamp()
    assert loop.metric("rewards_hold_duration_seconds_count", **oldest) == 1
    assert loop.metric("rewards_hold_duration_seconds_sum", **oldest) == 5 * 3600

    again = Loop(loop.backends)  # another process over the committed state sees the same
    assert again.metric("rewards_on_hold", **held) == 1
    loop.send(REWARDS_BY_PAYOUT, payout_of("r2"), _command(RewardAction.DENY, "r2"), approved)
    assert loop.metric("rewards_on_hold", **held) == 0
    assert loop.metric("rewards_on_hold_oldest_timestamp_seconds", **oldest) == 0  # no series
    assert loop.metric("rewards_hold_duration_seconds_count", **oldest) == 2


def test_a_hold_in_an_aborted_transaction_leaves_no_trace() -> None:
    loop = Loop()
    loop.program(program(approval_threshold="50.00"))
    loop.queue.append((STATUS, "adv-1", won("r1")))
    loop.drain(NOW, commit=False)
    assert loop.metric("rewards_on_hold", reason="NEEDS_APPROVAL", currency="USD") == 0
    loop.send(STATUS, "adv-1", won("r1"))  # processed again: counted once
    assert loop.metric("rewards_on_hold", reason="NEEDS_APPROVAL", currency="USD") == 1


def test_a_hold_that_changes_reason_ends_one_hold_and_begins_another() -> None:
    loop = Loop()
    loop.program(program(approval_threshold="50.00", tax_threshold="40.00"))
    loop.send(STATUS, "adv-1", won("r1"))
    approved = NOW + timedelta(hours=1)
    loop.send(REWARDS_BY_PAYOUT, payout_of("r1"), _command(RewardAction.APPROVE, "r1"), approved)
    assert loop.metric("rewards_on_hold", reason="NEEDS_APPROVAL", currency="USD") == 0
    assert loop.metric("rewards_on_hold", reason="TAX_INFO_REQUIRED", currency="USD") == 1
    tax = {"reason": "TAX_INFO_REQUIRED"}
    assert loop.metric("rewards_on_hold_oldest_timestamp_seconds", **tax) == approved.timestamp()
    assert loop.metric("rewards_hold_duration_seconds_sum", reason="NEEDS_APPROVAL") == 3600
