"""Reward rules and deterministic ids, without any ledger."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
from rewards_builders import ESCALATING, rules

from referrals.contract.records import ReferralStatus, RewardType
from services.rewards.domain import ids
from services.rewards.domain.rules import Tier


@pytest.mark.parametrize(
    ("ordinal", "from_referral"), [(1, 1), (2, 1), (3, 3), (4, 3), (5, 3), (6, 6), (7, 6), (99, 6)]
)
def test_nth_referral_earns_the_tier_with_the_largest_start_not_above_n(
    ordinal: int, from_referral: int
) -> None:
    tier = rules().tier_for(ordinal)
    assert tier is not None
    assert tier.from_referral == from_referral


def test_referrals_below_the_first_tier_earn_no_tier() -> None:
    starts_at_three = rules(tiers=(Tier(3, RewardType.CHECK, amount_minor=10_000),))
    assert starts_at_three.tier_for(2) is None


def test_year_rolls_over_at_local_midnight_in_the_program_time_zone() -> None:
    new_york = rules(time_zone="America/New_York")
    assert new_york.local_year(datetime(2026, 1, 1, 3, 0, tzinfo=UTC)) == 2025
    assert new_york.local_year(datetime(2026, 1, 1, 5, 0, tzinfo=UTC)) == 2026
    assert rules(time_zone="UTC").local_year(datetime(2026, 1, 1, 3, 0, tzinfo=UTC)) == 2026


@pytest.mark.parametrize(
    "changes",
    [
        {"tiers": ()},
        {"tiers": (ESCALATING[1], ESCALATING[0])},
        {"tiers": (ESCALATING[0], ESCALATING[0])},
        {"hold_days": -1},
        {"period_cap_minor": -5},
        {"time_zone": "Mars/Olympus_Mons"},
    ],
)
def test_impossible_rules_are_refused_at_construction(changes: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        rules(**changes)


@pytest.mark.parametrize(
    "tier_args",
    [
        {"from_referral": 0, "amount_minor": 1},
        {"from_referral": 1},
        {"from_referral": 1, "amount_minor": 1, "percent": Decimal(1)},
        {"from_referral": 1, "amount_minor": -1},
        {"from_referral": 1, "percent": Decimal("100.5")},
    ],
)
def test_impossible_tiers_are_refused(tier_args: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        Tier(reward_type=RewardType.GIFT_CARD, **tier_args)


def test_payout_id_depends_only_on_program_referral_and_rule() -> None:
    first = ids.payout_id("acme", "ref-1", "referral-reward")
    assert first == ids.payout_id("acme", "ref-1", "referral-reward")
    assert first.startswith("po-")
    assert len(first) == 35
    assert first != ids.payout_id("acme", "ref-2", "referral-reward")
    assert first != ids.payout_id("acme", "ref-1", "other-rule")


def test_status_id_is_stable_per_state_change_and_distinct_across_changes() -> None:
    base = ("ref-1", ReferralStatus.REWARDED, "po-x", 1, None)
    assert ids.status_id(*base) == ids.status_id(*base)
    variants = {
        ids.status_id("ref-1", ReferralStatus.REWARDED, "po-x", 1, None),
        ids.status_id("ref-1", ReferralStatus.REWARDED, "po-x", 2, None),
        ids.status_id("ref-1", ReferralStatus.PAID, "po-x", 1, None),
        ids.status_id("ref-1", ReferralStatus.REWARD_HELD, "po-x", 1, "CAP_REACHED"),
        ids.status_id("ref-1", ReferralStatus.REWARD_HELD, "po-x", 1, "NEEDS_APPROVAL"),
        ids.status_id("ref-2", ReferralStatus.REWARDED, "po-x", 1, None),
    }
    assert len(variants) == 6
