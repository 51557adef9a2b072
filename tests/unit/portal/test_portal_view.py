"""The portal's fold: statuses into referral views, payouts and results into money, wins into
the period's count and the next tier."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from decimal import Decimal

from portal_builders import T0, at, payout, program, result, status

from referrals.contract.records import PayoutKind, PayoutStatus, Recipient, ReferralStatus
from services.api.portal.view import (
    Money,
    PayoutView,
    ReferralView,
    ResultView,
    fold_payout,
    fold_result,
    fold_status,
    money,
    next_tier,
    won_in_period,
)

S = ReferralStatus


def fold_all(*records: object) -> ReferralView:
    view: ReferralView | None = None
    for record in records:
        view = fold_status(view, record) or view  # type: ignore[arg-type]
    assert view is not None
    return view


def test_a_referral_shows_its_latest_status_and_the_payout_last_named() -> None:
    view = fold_all(
        status("r1", S.LEAD, 0),
        status("r1", S.WON, 5),
        status("r1", S.REWARDED, 6, payout_id="p1", amount_minor=5_000, currency="USD"),
        status("r1", S.PAID, 9, payout_id="p1"),
    )
    assert (view.status, view.reason, view.payout_id) == (S.PAID, None, "p1")
    assert (view.amount_minor, view.currency) == (5_000, "USD")
    assert [h.status for h in view.history] == [S.LEAD, S.WON, S.REWARDED, S.PAID]
    assert (view.created_at, view.updated_at, view.won_at) == (at(0), at(9), at(5))


def test_a_repeated_status_changes_nothing() -> None:
    lead = status("r1", S.LEAD, 0)
    view = fold_all(lead)
    assert fold_status(view, lead) is None
    assert fold_status(view, replace(lead, occurred_at=at(3))) is None  # same status_id


def test_the_history_stays_bounded() -> None:
    view = fold_all(*(status("r1", S.PAYOUT_FAILED, m, f"try {m}") for m in range(200)))
    assert len(view.history) == 64
    assert view.history[-1].reason == "try 199"


def test_issued_counts_only_the_advocates_own_payouts_once_per_payout_id() -> None:
    own = fold_payout(None, payout("p1", 5_000))
    assert own is not None
    assert fold_payout(own, payout("p1", 5_000)) is None  # a repeat
    assert fold_payout(None, payout("f1", 2_500, recipient=Recipient.FRIEND)) is None
    assert fold_payout(None, payout("c1", 5_000, kind=PayoutKind.CLAWBACK)) is None
    retried = fold_payout(own, payout("p1", 5_000, attempt=2))
    assert retried is not None and retried.attempt == 2


def test_paid_and_failed_follow_the_latest_result_of_the_attempt_issued_last() -> None:
    p1 = PayoutView("p1", 1, "r1", 5_000, "USD", T0)
    p2 = PayoutView("p2", 2, "r2", 7_500, "USD", T0)  # retried: attempt 1 failed
    p3 = PayoutView("p3", 1, "r3", 1_000, "EUR", T0)
    failed_once = fold_result(None, result("p2", PayoutStatus.FAILED, 1))
    paid = fold_result(None, result("p1", PayoutStatus.FAILED))
    paid = fold_result(paid, result("p1", PayoutStatus.PAID))  # finance corrected itself
    assert paid is not None and failed_once is not None
    assert fold_result(paid, result("p1", PayoutStatus.PAID, attempt=0)) is None
    results: dict[str, ResultView] = {"p1": paid, "p2": failed_once}
    held = fold_all(status("r4", S.REWARD_HELD, 1, "NEEDS_APPROVAL", amount_minor=900_00))
    no_amount = fold_all(status("r5", S.REWARD_HELD, 1, "MISSING_AMOUNT"))
    assert money([p1, p2, p3], results, [held, no_amount], "USD") == (
        Money("EUR", issued_minor=1_000),
        Money("USD", issued_minor=12_500, paid_minor=5_000, held_minor=900_00),
    )


def test_held_is_what_is_held_and_not_yet_issued() -> None:
    issued = fold_all(
        status(
            "r1",
            S.REWARD_HELD,
            1,
            "TAX_INFO_REQUIRED",
            payout_id="p1",
            amount_minor=700_00,
            currency="USD",
        )
    )
    p1 = PayoutView("p1", 1, "r1", 700_00, "USD", T0)
    assert money([p1], {}, [issued], "USD") == (Money("USD", issued_minor=700_00),)
    assert money([], {}, [issued], "USD") == (Money("USD", held_minor=700_00),)


def test_won_in_period_counts_wins_this_calendar_year_in_the_programs_zone() -> None:
    doc = program(time_zone="America/New_York")
    new_year_local = datetime(2026, 1, 1, 3, 0, tzinfo=UTC)  # still 2025 in New York
    last_year = replace(fold_all(status("r1", S.WON, 0)), won_at=new_year_local)
    this_year = fold_all(status("r2", S.WON, 0))
    denied = fold_all(status("r3", S.WON, 0), status("r3", S.REJECTED, 1, "DENIED"))
    reversed_ = fold_all(status("r4", S.WON, 0), status("r4", S.REVERSED, 1, "CLAWED_BACK"))
    lead = fold_all(status("r5", S.LEAD, 0))
    views = [last_year, this_year, denied, reversed_, lead]
    assert won_in_period(views, at(60), doc) == 1
    assert won_in_period(views, at(60), program(period="LIFETIME")) == 2


def test_a_rolling_period_counts_the_last_365_days() -> None:
    doc = program(period="ROLLING_365_DAYS")
    win = fold_all(status("r1", S.WON, 0))
    assert won_in_period([win], datetime(2027, 3, 1, tzinfo=UTC), doc) == 1
    assert won_in_period([win], datetime(2027, 3, 3, tzinfo=UTC), doc) == 0


def test_the_next_tier_says_how_many_more_wins_reach_it() -> None:
    doc = program()
    first = next_tier(0, doc)
    assert first is not None and (first.from_referral, first.referrals_to_go) == (1, 1)
    assert first.amount_minor == 5_000
    second = next_tier(1, doc)
    assert second is not None and (second.from_referral, second.referrals_to_go) == (3, 2)
    third = next_tier(4, doc)
    assert third is not None and (third.referrals_to_go, third.percent) == (2, Decimal("5"))
    assert next_tier(6, doc) is None
    assert next_tier(0, None) is None
