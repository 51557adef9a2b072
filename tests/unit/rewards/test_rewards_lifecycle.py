"""A reward's life after the win: hold period, reversal, approval, tax hold, payout, retry."""

from __future__ import annotations

from datetime import timedelta

from rewards_builders import (
    T0,
    ledger,
    paid_amounts,
    payouts,
    profile,
    result,
    reversal,
    rules,
    statuses,
    win_all,
    won,
)

from referrals.contract.records import (
    PayoutStatus,
    ReferralStatus,
    ReferralStatusChanged,
    RewardType,
)
from services.rewards.domain.decide import (
    on_approve,
    on_payout_result,
    on_profile,
    on_retry,
    on_reversed,
    on_tick,
    on_won,
)
from services.rewards.domain.ledger import Entry, Ledger, State
from services.rewards.domain.outputs import Outcome
from services.rewards.domain.rules import Tier

LADDER = (
    Tier(1, RewardType.GIFT_CARD, amount_minor=1_000),
    Tier(2, RewardType.GIFT_CARD, amount_minor=2_000),
    Tier(3, RewardType.GIFT_CARD, amount_minor=3_000),
)
PENDING = [(ReferralStatus.REWARD_PENDING, None)]
RELEASED = [(ReferralStatus.REWARD_PENDING, None), (ReferralStatus.REWARDED, None)]


def entry(book: Ledger, referral: str) -> Entry:
    found = book.find(referral)
    assert found is not None
    return found


def rewarded(book: Ledger, referral: str = "r1") -> tuple[Ledger, str]:
    """The ledger after `referral` won and was paid out at once, and its payout id."""
    decision = on_won(book, rules(), won(referral), T0)
    (command,) = payouts(decision)
    return decision.ledger, command.payout_id


def failed(book: Ledger) -> tuple[Ledger, str]:
    book, payout_id = rewarded(book)
    decision = on_payout_result(
        book, result(payout_id, PayoutStatus.FAILED, reason="CARD_VOID"), T0
    )
    return decision.ledger, payout_id


def test_a_reward_waits_pending_until_its_hold_period_has_passed_by_the_wall_clock() -> None:
    held = rules(hold_days=30)
    decision = on_won(ledger(), held, won("r1"), T0)
    assert statuses(decision) == PENDING
    assert decision.ledger.next_due() == T0 + timedelta(days=30)
    early = on_tick(decision.ledger, T0 + timedelta(days=29, hours=23))
    assert early.outputs == ()
    due = on_tick(early.ledger, T0 + timedelta(days=30))
    assert statuses(due) == [(ReferralStatus.REWARDED, None)]
    assert paid_amounts([due]) == [5_000]
    assert due.ledger.next_due() is None
    assert on_tick(due.ledger, T0 + timedelta(days=31)).outputs == ()


def test_a_backfilled_old_win_with_a_30_day_hold_is_due_at_once() -> None:
    decision = on_won(ledger(), rules(hold_days=30), won("r1", T0 - timedelta(days=45)), T0)
    assert statuses(decision) == RELEASED
    assert paid_amounts([decision]) == [5_000]


def test_a_tick_releases_every_due_reward_in_the_order_they_were_won() -> None:
    held = rules(hold_days=10, tiers=LADDER)
    book = on_won(ledger(), held, won("r1", T0), T0).ledger
    book = on_won(book, held, won("r2", T0 + timedelta(days=1)), T0).ledger
    book = on_won(book, held, won("r3", T0 + timedelta(days=5)), T0).ledger
    decision = on_tick(book, T0 + timedelta(days=12))
    assert [c.referral_id for c in payouts(decision)] == ["r1", "r2"]
    assert decision.ledger.next_due() == T0 + timedelta(days=15)


def test_a_reversal_before_payout_cancels_the_reward_and_corrects_the_next_tier() -> None:
    held = rules(hold_days=30, tiers=LADDER)
    book, _ = win_all(ledger(), held, ["r1", "r2"])
    cancelled = on_reversed(book, reversal("r2"), T0)
    assert statuses(cancelled) == [(ReferralStatus.REVERSED, "REWARD_CANCELLED")]
    assert entry(cancelled.ledger, "r2").state is State.CANCELLED
    nothing_due = on_tick(cancelled.ledger, T0 + timedelta(days=30))
    assert [c.referral_id for c in payouts(nothing_due)] == ["r1"]
    third = on_won(nothing_due.ledger, held, won("r3"), T0 + timedelta(days=30))
    assert third.outputs[0].tier == 2  # r3 is now the 2nd successful referral
    assert entry(third.ledger, "r3").ordinal == 2


def test_a_reversal_of_a_held_reward_cancels_it_too() -> None:
    book = on_won(ledger(), rules(approval_threshold_minor=1), won("r1"), T0).ledger
    decision = on_reversed(book, reversal("r1"), T0)
    assert statuses(decision) == [(ReferralStatus.REVERSED, "REWARD_CANCELLED")]
    payout_id = book.entries[0].payout_id
    assert (
        on_approve(decision.ledger, rules(), payout_id, T0).outcome is Outcome.NOT_AWAITING_REVIEW
    )


def test_a_reversal_after_the_payout_without_clawback_keeps_the_money_but_stops_counting() -> None:
    book, payout_id = rewarded(ledger())
    book = on_payout_result(book, result(payout_id, PayoutStatus.PAID), T0).ledger
    decision = on_reversed(book, reversal("r1"), T0)
    assert (decision.outcome, decision.outputs) == (Outcome.REVERSED_AFTER_PAYOUT, ())
    assert decision.changed
    assert entry(decision.ledger, "r1").state is State.PAID
    again = on_reversed(decision.ledger, reversal("r1"), T0)
    assert again.outcome is Outcome.ALREADY_REVERSED
    book, _ = win_all(decision.ledger, rules(tiers=LADDER), ["r2"])
    assert entry(book, "r2").ordinal == 1  # contract: "not ... reversed ... at that moment"


def test_a_reversal_of_a_failed_payout_cancels_it_and_it_cannot_be_retried() -> None:
    book, payout_id = failed(ledger())
    decision = on_reversed(book, reversal("r1"), T0)
    assert statuses(decision) == [(ReferralStatus.REVERSED, "CANCELLED")]  # contract's code
    assert on_retry(decision.ledger, payout_id, T0).outcome is Outcome.NOT_FAILED


def test_a_reversal_of_a_referral_never_won_here_is_ignored() -> None:
    decision = on_reversed(ledger(), reversal("r9"), T0)
    assert (decision.outcome, decision.outputs) == (Outcome.UNKNOWN_REFERRAL, ())


def test_our_own_cancellation_status_coming_back_changes_nothing() -> None:
    book = on_won(ledger(), rules(hold_days=30), won("r1"), T0).ledger
    cancelled = on_reversed(book, reversal("r1"), T0)
    (own,) = cancelled.outputs
    assert isinstance(own, ReferralStatusChanged)
    echo = on_reversed(cancelled.ledger, own, T0)
    assert (echo.outcome, echo.ledger) == (Outcome.ALREADY_REVERSED, cancelled.ledger)


def test_a_reward_at_the_approval_threshold_waits_for_approval() -> None:
    approving = rules(approval_threshold_minor=7_500)
    book, decisions = win_all(ledger(), approving, ["r1", "r2", "r3"])
    assert paid_amounts(decisions[:2]) == [5_000, 5_000]
    assert statuses(decisions[2]) == [(ReferralStatus.REWARD_HELD, "NEEDS_APPROVAL")]
    payout_id = entry(book, "r3").payout_id
    approved = on_approve(book, approving, payout_id, T0)
    assert statuses(approved) == RELEASED
    assert paid_amounts([approved]) == [7_500]
    again = on_approve(approved.ledger, approving, payout_id, T0)
    assert again.outcome is Outcome.ALREADY_APPROVED
    assert "REWARDED" in again.message
    assert on_approve(book, approving, "po-nope", T0).outcome is Outcome.UNKNOWN_PAYOUT


def test_an_approved_reward_still_waits_for_its_hold_period() -> None:
    approving = rules(approval_threshold_minor=1, hold_days=30)
    book = on_won(ledger(), approving, won("r1"), T0).ledger
    approved = on_approve(book, approving, book.entries[0].payout_id, T0)
    assert statuses(approved) == PENDING
    assert paid_amounts([on_tick(approved.ledger, T0 + timedelta(days=30))]) == [5_000]


def test_a_reward_bringing_the_year_to_the_tax_threshold_waits_for_the_tax_form() -> None:
    taxed = rules(tax_threshold_minor=10_000)
    book, decisions = win_all(ledger(), taxed, ["r1", "r2"])
    assert paid_amounts(decisions) == [5_000]
    assert statuses(decisions[1]) == [(ReferralStatus.REWARD_HELD, "TAX_INFO_REQUIRED")]
    still = on_profile(book, profile(tax_form_on_file=False), T0)
    assert still.outputs == ()
    released = on_profile(still.ledger, profile(tax_form_on_file=True), T0)
    assert statuses(released) == RELEASED
    assert paid_amounts([released]) == [5_000]
    _, later = win_all(released.ledger, taxed, ["r3"])
    assert paid_amounts(later) == [7_500]


def test_once_the_threshold_is_reached_every_later_reward_of_the_year_is_held() -> None:
    taxed = rules(tax_threshold_minor=10_000)
    _, decisions = win_all(ledger(), taxed, ["r1", "r2", "r3"])
    assert [s for d in decisions[1:] for s in statuses(d)] == [
        (ReferralStatus.REWARD_HELD, "TAX_INFO_REQUIRED"),
        (ReferralStatus.REWARD_HELD, "TAX_INFO_REQUIRED"),
    ]


def test_no_tax_hold_when_the_form_is_already_on_file() -> None:
    book = on_profile(ledger(), profile(tax_form_on_file=True), T0).ledger
    _, decisions = win_all(book, rules(tax_threshold_minor=1), ["r1"])
    assert paid_amounts(decisions) == [5_000]


def test_an_approved_reward_can_still_be_held_for_tax_information() -> None:
    both = rules(approval_threshold_minor=5_000, tax_threshold_minor=5_000)
    book = on_won(ledger(), both, won("r1"), T0).ledger
    approved = on_approve(book, both, book.entries[0].payout_id, T0)
    assert statuses(approved) == [(ReferralStatus.REWARD_HELD, "TAX_INFO_REQUIRED")]


def test_finance_paying_marks_the_referral_paid() -> None:
    book, payout_id = rewarded(ledger())
    decision = on_payout_result(book, result(payout_id, PayoutStatus.PAID), T0)
    assert statuses(decision) == [(ReferralStatus.PAID, None)]
    repeat = on_payout_result(decision.ledger, result(payout_id, PayoutStatus.PAID), T0)
    assert (repeat.outcome, repeat.outputs) == (Outcome.ALREADY_SETTLED, ())


def test_finance_failing_marks_the_payout_failed_with_its_reason() -> None:
    book, payout_id = rewarded(ledger())
    decision = on_payout_result(book, result(payout_id, PayoutStatus.FAILED, reason="VOID"), T0)
    assert statuses(decision) == [(ReferralStatus.PAYOUT_FAILED, "VOID")]
    assert entry(decision.ledger, "r1").state is State.FAILED
    no_reason = on_payout_result(book, result(payout_id, PayoutStatus.FAILED), T0)
    assert statuses(no_reason) == [(ReferralStatus.PAYOUT_FAILED, "UNSPECIFIED")]


def test_a_result_for_an_unknown_payout_is_ignored_and_reported() -> None:
    decision = on_payout_result(ledger(), result("po-unknown", PayoutStatus.PAID), T0)
    assert (decision.outcome, decision.outputs, decision.changed) == (
        Outcome.UNKNOWN_PAYOUT,
        (),
        False,
    )


def test_a_retry_reissues_a_failed_payout_with_the_same_id_and_the_next_attempt() -> None:
    book, payout_id = failed(ledger())
    retried = on_retry(book, payout_id, T0)
    assert statuses(retried) == [(ReferralStatus.REWARDED, None)]
    (command,) = payouts(retried)
    assert (command.payout_id, command.attempt, command.amount_minor) == (payout_id, 2, 5_000)
    stale = on_payout_result(retried.ledger, result(payout_id, PayoutStatus.PAID, attempt=1), T0)
    assert stale.outcome is Outcome.STALE_ATTEMPT
    paid = on_payout_result(retried.ledger, result(payout_id, PayoutStatus.PAID, attempt=2), T0)
    assert statuses(paid) == [(ReferralStatus.PAID, None)]


def test_a_retry_of_a_payout_that_has_not_failed_is_refused_with_a_clear_message() -> None:
    book, payout_id = failed(ledger())
    retried = on_retry(book, payout_id, T0).ledger
    refused = on_retry(retried, payout_id, T0)
    assert (refused.outcome, refused.outputs, refused.ledger) == (Outcome.NOT_FAILED, (), retried)
    assert refused.message == (
        f"RETRY of payout {payout_id}: it is REWARDED (attempt 2); "
        "only a FAILED payout can be retried"
    )
    pending = on_won(ledger(), rules(hold_days=30), won("r1"), T0).ledger
    assert on_retry(pending, payout_id, T0).outcome is Outcome.NOT_FAILED
    assert on_retry(ledger(), payout_id, T0).outcome is Outcome.UNKNOWN_PAYOUT


def test_every_state_change_of_a_referral_gets_its_own_status_id() -> None:
    first = on_won(ledger(), rules(), won("r1"), T0)
    payout_id = payouts(first)[0].payout_id
    fail = on_payout_result(first.ledger, result(payout_id, PayoutStatus.FAILED, reason="X"), T0)
    retried = on_retry(fail.ledger, payout_id, T0)
    paid = on_payout_result(retried.ledger, result(payout_id, PayoutStatus.PAID, attempt=2), T0)
    ids = [
        o.status_id
        for d in (first, fail, retried, paid)
        for o in d.outputs
        if isinstance(o, ReferralStatusChanged)
    ]
    assert len(ids) == 5
    assert len(set(ids)) == 5
