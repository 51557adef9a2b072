"""The rewards adapter's pure helpers: program -> rules, timer keys, parking keys, routing."""

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
from referrals.contract.topics import STATUS
from referrals.platform.errors import PermanentError
from referrals.programs.catalog import Program, ProgramCatalog
from referrals.programs.put import load_program
from referrals.streams.processor import Inbound
from referrals.streams.state import MemoryBackend, TaskStore
from services.rewards.adapters.ledgers import new_owners, to_outbound
from services.rewards.adapters.parking import Kind, Parked, Parking, parked_key, parse_parked_key
from services.rewards.adapters.processor import is_reward_input
from services.rewards.adapters.program_rules import RulesCache, rules_for
from services.rewards.adapters.routing import Forward, Wait, route
from services.rewards.adapters.timers import TimerIndex, parse_timer_key, timer_key
from services.rewards.domain.decide import new_ledger, on_won
from services.rewards.domain.rules import Period, Tier

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


# -- timers --------------------------------------------------------------------------------------
def test_timer_keys_round_trip_and_sort_by_due_time_first() -> None:
    key = timer_key(1_767_225_600_000, "adv-é")
    assert parse_timer_key(key) == (1_767_225_600_000, "adv-é")
    keys = [timer_key(2_000, "a"), timer_key(1_000, "zzz"), timer_key(1_000, "b")]
    assert [parse_timer_key(k) for k in sorted(keys)] == [
        (1_000, "b"),
        (1_000, "zzz"),
        (2_000, "a"),
    ]
    with pytest.raises(ValueError):
        timer_key(-1, "a")


def _stores() -> dict[int, TaskStore]:
    return {0: TaskStore("t", 0, MemoryBackend())}


def test_timer_index_pops_only_due_live_timers_and_mirrors_the_store() -> None:
    stores = _stores()
    index = TimerIndex(stores.__getitem__)
    index.load(0)
    index.move(0, "a", None, 1_000)
    index.move(0, "b", None, 3_000)
    index.move(0, "a", 1_000, 2_000)  # a's next due moved: the old heap entry is stale
    assert index.pending() == 2
    assert index.due(0, 2_500, limit=10) == [(2_000, "a")]
    index.remove(0, "a", 2_000)
    assert sorted(k for k, _ in stores[0].items()) == [timer_key(3_000, "b")]
    assert index.due(0, 2_500, limit=10) == []


def test_timer_index_reloads_from_committed_state_and_respects_the_limit() -> None:
    stores = _stores()
    index = TimerIndex(stores.__getitem__)
    index.load(0)
    for n in range(5):
        index.move(0, f"adv-{n}", None, 1_000 + n)
    stores[0].commit()
    index.move(0, "late", None, 500)
    stores[0].abort()  # an aborted transaction: "late" never happened
    index.load(0)
    assert index.pending() == 5
    assert [a for _, a in index.due(0, 10_000, limit=3)] == ["adv-0", "adv-1", "adv-2"]


# -- keyspaces ----------------------------------------------------------------------------------
# -- parking -------------------------------------------------------------------------------------
def test_parked_keys_parse_back_to_kind_and_group() -> None:
    key = parked_key(Kind.PAYOUT, "po-1\x01x", "R", 42)
    assert parse_parked_key(key) == (Kind.PAYOUT, "po-1\x01x")
    with pytest.raises(ValueError):
        parse_parked_key(b"S")


def _inbound(offset: int, value: object = None) -> Inbound:
    record = value or won(f"r{offset}")
    return Inbound(STATUS, 0, offset, "adv-1", record, 1_000, b"adv-1", b"raw-%d" % offset)  # type: ignore[arg-type]


def test_parking_takes_a_group_in_arrival_order_and_expires_old_records() -> None:
    stores = _stores()
    parking = Parking(stores.__getitem__)
    parking.load(0)
    parking.park(Kind.PROGRAM, "p1", _inbound(7), now_ms=100)
    parking.park(Kind.PROGRAM, "p1", _inbound(3), now_ms=200)
    parking.park(Kind.PROGRAM, "p2", _inbound(5), now_ms=50)
    assert parking.groups(0, Kind.PROGRAM) == ["p1", "p2"]
    assert parking.count(Kind.PROGRAM) == 3 and parking.count(Kind.PAYOUT) == 0
    assert [p.offset for p in parking.take(0, Kind.PROGRAM, "p1")] == [7, 3]
    assert parking.expired(0, Kind.PROGRAM, parked_before_ms=40) == []
    [old] = parking.expired(0, Kind.PROGRAM, parked_before_ms=60)
    assert (old.offset, old.raw_key, old.raw_value, old.parked_ms) == (5, b"adv-1", b"raw-5", 50)
    assert list(stores[0].items()) == []


def test_a_parked_record_round_trips_through_bytes() -> None:
    parked = Parked("referral.status.v1", 2, 9, 1_234, None, b"\xc3\x01abc", 99)
    assert Parked.from_bytes(parked.to_bytes()) == parked


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
    assert topics == ["referral.status.v1", "referral.status.v1", "rewards.payouts.v1"]


def test_a_win_below_the_first_tier_gets_no_owner_record() -> None:
    before = new_ledger("acme-b2b", "adv-1")
    late_start = rules(tiers=(Tier(2, RewardType.GIFT_CARD, amount_minor=100),))
    decision = on_won(before, late_start, won("r1"), NOW)
    assert decision.changed and new_owners(before, decision.ledger, NOW) == []
