"""How much each successful referral earns: tiers, percentages, periods, caps, duplicates."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from rewards_builders import (
    ADVOCATE,
    PROGRAM,
    T0,
    ledger,
    paid_amounts,
    payouts,
    reversal,
    rules,
    statuses,
    win_all,
    won,
)

from referrals.contract.records import ReferralStatus, ReferralStatusChanged, RewardType
from services.rewards.domain import ids
from services.rewards.domain.decide import on_reversed, on_won
from services.rewards.domain.ledger import Ledger, State
from services.rewards.domain.outputs import Outcome
from services.rewards.domain.rules import Period, RewardRules, Tier

LADDER = (
    Tier(1, RewardType.GIFT_CARD, amount_minor=1_000),
    Tier(2, RewardType.GIFT_CARD, amount_minor=2_000),
    Tier(3, RewardType.GIFT_CARD, amount_minor=3_000),
)


def feed(book: Ledger, reward_rules: RewardRules, *moments: datetime) -> Ledger:
    for index, moment in enumerate(moments):
        book = on_won(book, reward_rules, won(f"r{index}", moment), T0).ledger
    return book


def ordinals(book: Ledger) -> list[int]:
    return [entry.ordinal for entry in book.entries]


def test_payouts_climb_tier_by_tier_with_tiers_at_one_three_and_six() -> None:
    _, decisions = win_all(ledger(), rules(), [f"r{n}" for n in range(1, 8)])
    commands = [payouts(d)[0] for d in decisions]
    assert [c.tier for c in commands] == [1, 1, 3, 3, 3, 6, 6]
    # the 6th referral on: 5% of the 2,000.00 deal
    assert [c.amount_minor for c in commands] == [5_000, 5_000, 7_500, 7_500, 7_500, 10_000, 10_000]
    assert commands[5].reward_type is RewardType.CHECK


def test_a_reward_due_at_once_passes_through_pending_to_rewarded_with_its_payout() -> None:
    decision = on_won(ledger(), rules(), won("r1"), T0)
    assert statuses(decision) == [
        (ReferralStatus.REWARD_PENDING, None),
        (ReferralStatus.REWARDED, None),
    ]
    (command,) = payouts(decision)
    assert command.payout_id == ids.payout_id(PROGRAM, "r1", "referral-reward")
    assert (command.attempt, command.amount_minor, command.currency) == (1, 5_000, "USD")
    assert (command.config_version, command.rule_id, command.issued_at) == (
        7,
        "referral-reward",
        T0,
    )


def test_statuses_copy_the_referral_identity_from_the_won_status() -> None:
    status = on_won(ledger(), rules(), won("r1"), T0).outputs[0]
    assert isinstance(status, ReferralStatusChanged)
    assert status.referral_id == "r1"
    assert (status.program_id, status.advocate_id) == (PROGRAM, ADVOCATE)
    assert (status.prospect_id, status.deal_id, status.owner_rep_id) == (
        "prospect-r1",
        "deal-r1",
        "rep-9",
    )
    assert (status.amount_minor, status.currency, status.reward_type, status.tier) == (
        5_000,
        "USD",
        "GIFT_CARD",
        1,
    )
    assert status.config_version == 7


@pytest.mark.parametrize(("deal", "reward"), [(1_010, 51), (1_009, 50), (1_030, 52), (0, 0)])
def test_percentage_rewards_round_half_up_to_the_minor_unit(deal: int, reward: int) -> None:
    five_percent = rules(tiers=(Tier(1, RewardType.CHECK, percent=Decimal("5")),))
    decision = on_won(ledger(), five_percent, won("r1", amount=deal), T0)
    assert paid_amounts([decision]) == [reward]


def test_a_percentage_tier_without_a_deal_amount_is_held_missing_amount() -> None:
    percent = rules(tiers=(Tier(1, RewardType.CHECK, percent=Decimal("5")),))
    decision = on_won(ledger(), percent, won("r1", amount=None, currency=None), T0)
    assert statuses(decision) == [(ReferralStatus.REWARD_HELD, "MISSING_AMOUNT")]
    assert decision.outputs[0].amount_minor is None
    assert payouts(decision) == []


def test_a_percentage_tier_on_a_deal_in_another_currency_is_held_currency_mismatch() -> None:
    percent = rules(tiers=(Tier(1, RewardType.CHECK, percent=Decimal("5")),))
    decision = on_won(ledger(), percent, won("r1", currency="EUR"), T0)
    assert statuses(decision) == [(ReferralStatus.REWARD_HELD, "CURRENCY_MISMATCH")]


def test_a_fixed_tier_ignores_the_deal_amount_and_currency() -> None:
    decision = on_won(ledger(), rules(), won("r1", amount=None, currency="EUR"), T0)
    assert paid_amounts([decision]) == [5_000]


def test_held_wins_still_count_towards_the_next_tier() -> None:
    percent_first = rules(tiers=(Tier(1, RewardType.CHECK, percent=Decimal("5")), *LADDER[1:]))
    book = on_won(ledger(), percent_first, won("r1", amount=None), T0).ledger
    decision = on_won(book, percent_first, won("r2"), T0)
    assert paid_amounts([decision]) == [2_000]


def test_wins_below_the_first_tier_are_counted_but_emit_nothing() -> None:
    from_third = rules(tiers=(Tier(3, RewardType.CHECK, amount_minor=10_000),))
    book, decisions = win_all(ledger(), from_third, ["r1", "r2", "r3"])
    assert [d.outputs for d in decisions[:2]] == [(), ()]
    assert paid_amounts(decisions) == [10_000]
    assert [e.state for e in book.entries[:2]] == [State.UNREWARDED, State.UNREWARDED]


def test_the_cap_reduces_the_reward_that_reaches_it_and_holds_the_next() -> None:
    capped = rules(tiers=LADDER[:1], period_cap_minor=2_500)
    _, decisions = win_all(ledger(), capped, ["r1", "r2", "r3"])
    assert paid_amounts(decisions) == [1_000, 1_000, 500]
    _, fourth = win_all(decisions[-1].ledger, capped, ["r4"])
    assert statuses(fourth[0]) == [(ReferralStatus.REWARD_HELD, "CAP_REACHED")]
    assert payouts(fourth[0]) == []


def test_a_reward_exactly_reaching_the_cap_is_paid_in_full() -> None:
    capped = rules(tiers=LADDER[:1], period_cap_minor=2_000)
    _, decisions = win_all(ledger(), capped, ["r1", "r2", "r3"])
    assert paid_amounts(decisions) == [1_000, 1_000]
    assert statuses(decisions[2]) == [(ReferralStatus.REWARD_HELD, "CAP_REACHED")]


def test_the_cap_is_per_period_and_a_new_year_starts_afresh() -> None:
    capped = rules(tiers=LADDER[:1], period_cap_minor=1_000)
    later = datetime(2026, 7, 1, tzinfo=UTC)
    book = on_won(ledger(), capped, won("r1", datetime(2025, 6, 1, tzinfo=UTC)), later).ledger
    decision = on_won(book, capped, won("r2", datetime(2026, 6, 1, tzinfo=UTC)), later)
    assert paid_amounts([decision]) == [1_000]


def test_calendar_years_roll_over_at_local_midnight_in_new_york() -> None:
    book = feed(
        ledger(),
        rules(tiers=LADDER),
        datetime(2025, 12, 31, 12, 0, tzinfo=UTC),
        datetime(2026, 1, 1, 3, 0, tzinfo=UTC),  # 22:00 on Dec 31 in New York: still 2025
        datetime(2026, 1, 1, 5, 30, tzinfo=UTC),  # 00:30 on Jan 1 in New York: 2026
    )
    assert ordinals(book) == [1, 2, 1]
    assert [e.year for e in book.entries] == [2025, 2025, 2026]
    assert [e.tier for e in book.entries] == [1, 2, 1]


def test_a_rolling_period_counts_the_wins_of_the_365_days_up_to_this_one() -> None:
    start = datetime(2025, 1, 10, tzinfo=UTC)
    book = feed(
        ledger(),
        rules(tiers=LADDER, period=Period.ROLLING_365_DAYS),
        start,
        start + timedelta(days=200),
        start + timedelta(days=364),  # both earlier wins are within 365 days
        start + timedelta(days=366),  # the first win has left the window
    )
    assert ordinals(book) == [1, 2, 3, 3]


def test_a_lifetime_period_counts_every_win_ever() -> None:
    book = feed(
        ledger(),
        rules(tiers=LADDER, period=Period.LIFETIME),
        datetime(2020, 1, 1, tzinfo=UTC),
        datetime(2023, 7, 1, tzinfo=UTC),
        datetime(2026, 1, 1, tzinfo=UTC),
    )
    assert ordinals(book) == [1, 2, 3]


def test_a_duplicate_won_by_status_id_changes_nothing() -> None:
    first = on_won(ledger(), rules(), won("r1"), T0)
    again = on_won(first.ledger, rules(), won("r1"), T0)
    assert (again.outputs, again.outcome, again.ledger) == (
        (),
        Outcome.DUPLICATE_STATUS,
        first.ledger,
    )


def test_a_second_won_for_the_same_referral_earns_nothing() -> None:
    first = on_won(ledger(), rules(), won("r1"), T0)
    again = on_won(first.ledger, rules(), won("r1", status_id="won-again"), T0)
    assert (again.outputs, again.outcome, again.ledger) == (
        (),
        Outcome.DUPLICATE_REFERRAL,
        first.ledger,
    )
    assert not again.changed


def test_a_won_reversed_before_payout_and_won_again_is_not_rewarded_again() -> None:
    held = rules(hold_days=30)
    book = on_won(ledger(), held, won("r1"), T0).ledger
    book = on_reversed(book, reversal("r1"), T0).ledger
    again = on_won(book, held, won("r1", status_id="won-r1-again"), T0)
    assert again.outcome is Outcome.DUPLICATE_REFERRAL


def test_a_won_for_another_advocate_or_program_is_an_adapter_error() -> None:
    with pytest.raises(ValueError):
        on_won(ledger(), rules(program_id="other"), won("r1"), T0)
