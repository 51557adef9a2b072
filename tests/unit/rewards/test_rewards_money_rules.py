"""The money rules of the contract's wave 2, one behaviour per test, on the pure core:
two-sided rewards, fraud velocity, moderation (approve / deny) with command ids, clawbacks,
and paused programs."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from rewards_builders import (
    ADVOCATE,
    PROGRAM,
    T0,
    ledger,
    result,
    reversal,
    rules,
    statuses,
    win_all,
    won,
)

from referrals.contract.records import (
    PayoutCommand,
    PayoutKind,
    PayoutStatus,
    Recipient,
    ReferralStatus,
    RewardAction,
    RewardCommand,
    RewardType,
)
from services.rewards.domain import ids
from services.rewards.domain.decide import (
    on_command,
    on_payout_result,
    on_resume,
    on_reversed,
    on_tick,
    on_won,
)
from services.rewards.domain.ledger import Ledger, State
from services.rewards.domain.outputs import Decision, Outcome
from services.rewards.domain.rules import FriendReward, Lifecycle, Tier

FRIEND = FriendReward(2_500, RewardType.BILL_CREDIT)


def payouts(decision: Decision) -> list[PayoutCommand]:
    return [o for o in decision.outputs if isinstance(o, PayoutCommand)]


def friend_id(referral: str) -> str:
    return ids.payout_id(PROGRAM, referral, "friend", PayoutKind.PAYOUT, Recipient.FRIEND)


def command(action: RewardAction, payout_id: str, command_id: str = "c1") -> RewardCommand:
    return RewardCommand(command_id, payout_id, action, "ops", T0)


def entry_of(book: Ledger, referral: str) -> object:
    found = book.find(referral)
    assert found is not None
    return found


# -- two-sided rewards -----------------------------------------------------------------------
def test_a_won_referral_pays_its_friend_once_with_its_own_payout_id() -> None:
    two_sided = rules(friend_reward=FRIEND)
    decision = on_won(ledger(), two_sided, won("r1"), T0)
    advocate, friend = payouts(decision)
    assert (advocate.recipient, advocate.kind, advocate.amount_minor) == (
        Recipient.ADVOCATE,
        PayoutKind.PAYOUT,
        5_000,
    )
    assert (friend.recipient, friend.rule_id, friend.tier, friend.amount_minor) == (
        Recipient.FRIEND,
        "friend",
        0,
        2_500,
    )
    assert friend.payout_id == friend_id("r1") != advocate.payout_id
    assert (friend.prospect_id, friend.reward_type) == ("prospect-r1", RewardType.BILL_CREDIT)
    again = on_won(decision.ledger, two_sided, won("r1"), T0)
    assert (again.outcome, payouts(again)) == (Outcome.DUPLICATE_STATUS, [])


def test_a_friend_reward_is_paid_even_below_the_first_tier_and_never_moves_a_tier() -> None:
    from_second = (Tier(2, RewardType.GIFT_CARD, amount_minor=5_000),)
    two_sided = rules(tiers=from_second, friend_reward=FRIEND)
    _, decisions = win_all(ledger(), two_sided, ["r1", "r2"])
    first, second = (payouts(d) for d in decisions)
    assert [p.recipient for p in first] == [Recipient.FRIEND]
    assert [(p.recipient, p.tier) for p in second] == [
        (Recipient.ADVOCATE, 2),  # the 2nd win: the friend's reward did not count as one
        (Recipient.FRIEND, 0),
    ]


def test_the_friend_reward_waits_for_its_referrals_review_and_hold_period() -> None:
    review = rules(friend_reward=FRIEND, approval_threshold_minor=5_000, hold_days=10)
    held = on_won(ledger(), review, won("r1"), T0)
    assert payouts(held) == []
    approved = on_command(held.ledger, review, command(RewardAction.APPROVE, friend_id("r1")), T0)
    assert payouts(approved) == [] and approved.state == "friend reward REWARD_PENDING"
    due = on_tick(approved.ledger, T0 + timedelta(days=10))
    assert sorted(p.recipient for p in payouts(due)) == [Recipient.ADVOCATE, Recipient.FRIEND]


def test_the_friend_reward_does_not_wait_for_the_advocates_own_tax_or_cap_holds() -> None:
    taxed = rules(friend_reward=FRIEND, tax_threshold_minor=1)
    decision = on_won(ledger(), taxed, won("r1"), T0)
    assert statuses(decision) == [(ReferralStatus.REWARD_HELD, "TAX_INFO_REQUIRED")]
    assert [p.recipient for p in payouts(decision)] == [Recipient.FRIEND]


def test_a_friends_payout_result_and_retry_address_the_friends_payout_only() -> None:
    book = on_won(ledger(), rules(friend_reward=FRIEND), won("r1"), T0).ledger
    failed = on_payout_result(book, result(friend_id("r1"), PayoutStatus.FAILED), T0)
    assert failed.outputs == ()  # no status: the referral is the advocate's
    retried = on_command(failed.ledger, None, command(RewardAction.RETRY, friend_id("r1")), T0)
    [again] = payouts(retried)
    assert (again.payout_id, again.attempt, again.recipient) == (
        friend_id("r1"),
        2,
        Recipient.FRIEND,
    )
    advocate = entry_of(retried.ledger, "r1")
    assert advocate.state is State.REWARDED and advocate.attempt == 1  # type: ignore[attr-defined]


# -- fraud velocity --------------------------------------------------------------------------
def test_wins_past_the_daily_limit_are_held_by_the_programs_local_day() -> None:
    ny = ZoneInfo("America/New_York")
    day = datetime(2026, 3, 2, tzinfo=ny)
    times = [day + timedelta(hours=h) for h in (9, 12, 23.5, 24.5)]  # 23:30 NY is next day UTC
    limited = rules(max_wins_per_day=2)
    book = ledger()
    held = []
    for n, at in enumerate(times):
        decision = on_won(book, limited, won(f"r{n}", at.astimezone(UTC)), T0)
        book = decision.ledger
        held.append(statuses(decision)[0])
    assert held == [
        (ReferralStatus.REWARD_PENDING, None),
        (ReferralStatus.REWARD_PENDING, None),
        (ReferralStatus.REWARD_HELD, "FRAUD_REVIEW"),
        (ReferralStatus.REWARD_PENDING, None),  # a new New York day
    ]


def test_an_approved_fraud_hold_is_paid_and_a_denied_one_never_and_stops_counting() -> None:
    limited = rules(max_wins_per_day=1, friend_reward=FRIEND)
    book, decisions = win_all(ledger(), limited, ["r1", "r2", "r3"])
    assert [statuses(d)[0][1] for d in decisions[1:]] == ["FRAUD_REVIEW", "FRAUD_REVIEW"]
    r2, r3 = (ids.payout_id(PROGRAM, r, "referral-reward") for r in ("r2", "r3"))
    approved = on_command(book, limited, command(RewardAction.APPROVE, r2, "c-approve"), T0)
    assert [p.payout_id for p in payouts(approved)] == [r2, friend_id("r2")]
    denied = on_command(approved.ledger, limited, command(RewardAction.DENY, r3, "c-deny"), T0)
    assert statuses(denied) == [(ReferralStatus.REJECTED, "DENIED")]
    assert payouts(denied) == []
    gone = entry_of(denied.ledger, "r3")
    assert (gone.state, gone.friend.state) == (State.DENIED, State.DENIED)  # type: ignore[attr-defined]
    later = on_won(denied.ledger, limited, won("r4", T0 + timedelta(days=1)), T0)
    assert entry_of(later.ledger, "r4").ordinal == 3  # type: ignore[attr-defined]  # r3 denied


# -- moderation --------------------------------------------------------------------------------
def test_commands_the_state_does_not_allow_are_refused_with_the_state() -> None:
    review = rules(approval_threshold_minor=5_000)
    book = on_won(ledger(), review, won("r1"), T0).ledger
    po = ids.payout_id(PROGRAM, "r1", "referral-reward")
    denied = on_command(book, review, command(RewardAction.DENY, po, "c1"), T0)
    assert denied.state == "REJECTED (DENIED)"
    again = on_command(denied.ledger, review, command(RewardAction.DENY, po, "c2"), T0)
    approve = on_command(denied.ledger, review, command(RewardAction.APPROVE, po, "c3"), T0)
    repeat = on_command(denied.ledger, review, command(RewardAction.DENY, po, "c1"), T0)
    assert (again.outcome, approve.outcome, repeat.outcome) == (
        Outcome.ALREADY_DENIED,
        Outcome.ALREADY_DENIED,
        Outcome.REPEATED_COMMAND,
    )
    assert repeat.ledger == denied.ledger and repeat.outputs == ()
    assert "REJECTED (DENIED)" in approve.message


def test_deny_after_approve_and_a_second_approve_are_refused() -> None:
    review = rules(approval_threshold_minor=5_000)
    book = on_won(ledger(), review, won("r1"), T0).ledger
    po = ids.payout_id(PROGRAM, "r1", "referral-reward")
    approved = on_command(book, review, command(RewardAction.APPROVE, po, "c1"), T0)
    assert approved.outcome is Outcome.APPLIED and len(payouts(approved)) == 1
    for action in (RewardAction.APPROVE, RewardAction.DENY):
        refused = on_command(approved.ledger, review, command(action, po, "c2"), T0)
        assert (refused.outcome, refused.outputs) == (Outcome.ALREADY_APPROVED, ())
    pending = on_won(ledger(), rules(), won("r1"), T0).ledger
    not_held = on_command(pending, rules(), command(RewardAction.DENY, po), T0)
    assert not_held.outcome is Outcome.NOT_AWAITING_REVIEW
    assert on_command(pending, rules(), command(RewardAction.DENY, "po-x"), T0).outcome is (
        Outcome.UNKNOWN_PAYOUT
    )


# -- clawbacks ---------------------------------------------------------------------------------
def test_a_refund_after_payment_claws_back_both_sides_once() -> None:
    refunds = rules(friend_reward=FRIEND, clawback=True)
    book = on_won(ledger(), refunds, won("r1"), T0).ledger
    po = ids.payout_id(PROGRAM, "r1", "referral-reward")
    book = on_payout_result(book, result(po, PayoutStatus.PAID), T0).ledger
    decision = on_reversed(book, reversal("r1"), T0, clawback_on=True)
    assert statuses(decision) == [(ReferralStatus.REVERSED, "CLAWED_BACK")]
    back = {p.original_payout_id: p for p in payouts(decision)}
    assert set(back) == {po, friend_id("r1")}
    assert all(p.kind is PayoutKind.CLAWBACK for p in back.values())
    assert (back[po].amount_minor, back[friend_id("r1")].amount_minor) == (5_000, 2_500)
    assert back[po].payout_id == ids.payout_id(
        PROGRAM, "r1", "referral-reward", PayoutKind.CLAWBACK, Recipient.ADVOCATE
    )
    again = on_reversed(
        decision.ledger, replace(reversal("r1"), status_id="x"), T0, clawback_on=True
    )
    assert (again.outcome, again.outputs) == (Outcome.ALREADY_REVERSED, ())


def test_a_clawback_gives_the_amount_back_to_the_cap_and_the_tax_year() -> None:
    capped = rules(period_cap_minor=5_000, clawback=True)
    book = on_won(ledger(), capped, won("r1"), T0).ledger
    assert book.year_total(2026) == 5_000
    book = on_reversed(book, reversal("r1"), T0, clawback_on=True).ledger
    assert book.year_total(2026) == 0
    later = T0 + timedelta(hours=1)
    decision = on_won(book, capped, won("r2", later), later)
    assert [p.amount_minor for p in payouts(decision)] == [5_000]  # not CAP_REACHED


def test_a_failed_payout_reversed_is_cancelled_not_clawed_back_and_without_clawback_kept() -> None:
    book = on_won(ledger(), rules(clawback=True), won("r1"), T0).ledger
    po = ids.payout_id(PROGRAM, "r1", "referral-reward")
    failed = on_payout_result(book, result(po, PayoutStatus.FAILED), T0).ledger
    cancelled = on_reversed(failed, reversal("r1"), T0, clawback_on=True)
    assert (statuses(cancelled), payouts(cancelled)) == (
        [(ReferralStatus.REVERSED, "CANCELLED")],
        [],
    )
    kept = on_reversed(book, reversal("r1"), T0, clawback_on=False)
    assert (kept.outcome, kept.outputs) == (Outcome.REVERSED_AFTER_PAYOUT, ())
    assert book.year_total(2026) == kept.ledger.year_total(2026) == 5_000


# -- program lifecycle ---------------------------------------------------------------------------
def test_a_paused_program_holds_new_rewards_until_it_is_active_again() -> None:
    paused = rules(lifecycle=Lifecycle.PAUSED, friend_reward=FRIEND)
    held = on_won(ledger(), paused, won("r1"), T0)
    assert (statuses(held), payouts(held)) == ([(ReferralStatus.REWARD_HELD, "PROGRAM_PAUSED")], [])
    assert on_resume(held.ledger, paused, T0).outputs == ()
    for lifecycle in (Lifecycle.ACTIVE, Lifecycle.ENDED):  # an ended program pays what was earned
        resumed = on_resume(held.ledger, replace(paused, lifecycle=lifecycle), T0)
        assert [p.recipient for p in payouts(resumed)] == [Recipient.ADVOCATE, Recipient.FRIEND]
    assert held.ledger.advocate_id == ADVOCATE


def test_a_second_hold_with_the_same_reason_is_a_new_status_with_a_new_id() -> None:
    """Found by Hypothesis: paused, released into review, paused again, then approved: the
    referral is held PROGRAM_PAUSED a second time, which consumers must not drop as a repeat."""
    review = rules(approval_threshold_minor=5_000)
    paused = replace(review, lifecycle=Lifecycle.PAUSED)
    first = on_won(ledger(), paused, won("r1"), T0)
    reviewed = on_resume(first.ledger, review, T0)
    po = ids.payout_id(PROGRAM, "r1", "referral-reward")
    again = on_command(reviewed.ledger, paused, command(RewardAction.APPROVE, po), T0)
    assert [statuses(d) for d in (first, reviewed, again)] == [
        [(ReferralStatus.REWARD_HELD, "PROGRAM_PAUSED")],
        [(ReferralStatus.REWARD_HELD, "NEEDS_APPROVAL")],
        [(ReferralStatus.REWARD_HELD, "PROGRAM_PAUSED")],
    ]
    ids_seen = [o.status_id for d in (first, reviewed, again) for o in d.outputs]
    assert len(set(ids_seen)) == 3
    resumed = on_resume(again.ledger, review, T0)
    assert [p.payout_id for p in payouts(resumed)] == [po]  # approved before: paid, not re-held
