"""The rewards adapter's pure helpers: program -> rules, routing. (Its timers and waiting
records are the runtime's: tests/unit/streams.)"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest
from rewards_builders import T0, reversal, rules, won

from referrals.contract.records import (
    PayoutResult,
    PayoutStatus,
    ReferralStatus,
    RewardAction,
    RewardCommand,
    RewardType,
)
from referrals.platform.errors import PermanentError
from referrals.programs.catalog import Program, ProgramCatalog
from referrals.programs.model import Fraud, ProgramStatus
from referrals.programs.put import load_program
from services.rewards.adapters.ledgers import new_owners, to_outbound
from services.rewards.adapters.processor import is_reward_input
from services.rewards.adapters.program_rules import RulesCache, rules_for
from services.rewards.adapters.routing import Forward, Wait, route
from services.rewards.domain.decide import new_ledger, on_won
from services.rewards.domain.rules import FriendReward, Lifecycle, Period, Tier

REPO = Path(__file__).resolve().parents[3]
ACME = REPO / "deploy" / "programs" / "acme-b2b.yaml"
NOW = datetime(2026, 3, 20, tzinfo=UTC)


# -- program -> rules ---------------------------------------------------------------------------
def test_acme_program_maps_to_its_rules_in_minor_units() -> None:
    got = rules_for(Program("acme-b2b", 4, load_program(ACME)))
    assert got.program_id == "acme-b2b" and got.config_version == 4
    assert (got.currency, got.time_zone, got.period) == (
        "USD",
        "America/New_York",
        Period.CALENDAR_YEAR,
    )
    assert got.tiers == (
        Tier(1, RewardType.GIFT_CARD, amount_minor=5_000),
        Tier(3, RewardType.GIFT_CARD, amount_minor=7_500),
        Tier(6, RewardType.CHECK, percent=Decimal("5")),
    )
    assert got.period_cap_minor == 250_000
    assert got.approval_threshold_minor == 100_000
    assert got.tax_threshold_minor == 60_000
    assert got.hold_days == 14
    assert got.rule_id == "referral-reward"
    assert got.friend_reward == FriendReward(2_500, RewardType.BILL_CREDIT)
    assert got.friend_reward.rule_id == "friend"
    assert got.clawback is True
    assert got.lifecycle is Lifecycle.ACTIVE
    assert got.max_wins_per_day == 10


def test_the_further_keys_map_to_the_core_and_are_off_when_left_out() -> None:
    doc = load_program(ACME)
    plain = replace(
        doc,
        rewards=replace(doc.rewards, friend_reward=None, clawback=False),
        status=ProgramStatus.ACTIVE,
        fraud=Fraud(),
    )
    got = rules_for(Program("acme-b2b", 1, plain))
    assert (got.friend_reward, got.clawback, got.max_wins_per_day) == (None, False, None)
    assert got.lifecycle is Lifecycle.ACTIVE
    for status, lifecycle in [
        (ProgramStatus.PAUSED, Lifecycle.PAUSED),
        (ProgramStatus.ENDED, Lifecycle.ENDED),
    ]:
        assert rules_for(Program("acme-b2b", 2, replace(doc, status=status))).lifecycle is lifecycle


def test_rules_cache_builds_once_per_version_and_follows_new_versions() -> None:
    catalog = ProgramCatalog()
    cache = RulesCache(catalog)
    assert cache.get("acme-b2b") is None
    doc = load_program(ACME)
    catalog._programs["acme-b2b"] = Program("acme-b2b", 1, doc)
    first = cache.get("acme-b2b")
    assert first is not None and cache.get("acme-b2b") is first
    changed = replace(doc, rewards=replace(doc.rewards, hold_days=0))
    catalog._programs["acme-b2b"] = Program("acme-b2b", 2, changed)
    second = cache.get("acme-b2b")
    assert second is not None and (second.config_version, second.hold_days) == (2, 0)


def test_rules_the_core_refuses_are_bad_input_not_a_crash() -> None:
    catalog = ProgramCatalog()
    doc = load_program(ACME)
    broken = replace(doc, time_zone="Mars/Olympus_Mons")  # the catalogue would never allow it
    catalog._programs["acme-b2b"] = Program("acme-b2b", 1, broken)
    with pytest.raises(PermanentError) as err:
        RulesCache(catalog).get("acme-b2b")
    assert err.value.reason == "BAD_PROGRAM_RULES"


# -- which statuses are inputs -------------------------------------------------------------------
def test_only_won_and_foreign_reversals_are_reward_inputs() -> None:
    assert is_reward_input(won("r1"))
    assert is_reward_input(reversal("r1"))
    own_cancel = replace(reversal("r1"), reason="REWARD_CANCELLED")
    assert not is_reward_input(own_cancel)
    for status in (ReferralStatus.REWARDED, ReferralStatus.REWARD_PENDING, ReferralStatus.LEAD):
        assert not is_reward_input(replace(won("r1"), status=status))


# -- routing -------------------------------------------------------------------------------------
def test_results_and_commands_wait_for_an_unknown_owner_and_go_to_a_known_one() -> None:
    result = PayoutResult("po-1", 1, PayoutStatus.PAID, T0)
    command = RewardCommand("cmd-1", "po-1", RewardAction.APPROVE, "ops", T0)
    assert route(None, result) == Wait("po-1")
    assert route(None, command) == Wait("po-1")
    assert route("adv-9", result) == Forward("adv-9", result)
    assert route("adv-9", command) == Forward("adv-9", replace(command, advocate_id="adv-9"))


def test_a_decided_reward_announces_its_owner_and_outputs_go_to_their_topics() -> None:
    before = new_ledger("acme-b2b", "adv-1")
    decision = on_won(before, rules(), won("r1"), NOW)
    owners = new_owners(before, decision.ledger, NOW)
    [entry] = decision.ledger.entries
    assert [(o.topic, o.key) for o in owners] == [("rewards.by-payout.v1", entry.payout_id)]
    assert owners[0].value.advocate_id == "adv-1"  # type: ignore[union-attr]
    assert new_owners(decision.ledger, decision.ledger, NOW) == []
    topics = [o.topic for o in to_outbound("adv-1", decision.outputs)]
    # the advocate's payout goes to both payout topics (one transaction), statuses first
    assert topics == [
        "referral.status.v1",
        "referral.status.v1",
        "rewards.payouts.v1",
        "rewards.payouts.v2",
    ]


def test_a_win_below_the_first_tier_gets_no_owner_record() -> None:
    before = new_ledger("acme-b2b", "adv-1")
    late_start = rules(tiers=(Tier(2, RewardType.GIFT_CARD, amount_minor=100),))
    decision = on_won(before, late_start, won("r1"), NOW)
    assert decision.changed and new_owners(before, decision.ledger, NOW) == []
