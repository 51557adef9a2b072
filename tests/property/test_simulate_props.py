"""For any seed and size, the simulator's ground truth is internally consistent and its records
are a well-behaved platform feed (small programs: a handful of examples keeps this fast)."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from referrals.contract.records import AdvocateProfile, DealEvent, DealStage
from referrals.programs.document import parse_document, validate
from referrals.tools.simulate import DEMO_PROGRAM, simulate
from referrals.tools.simulate_money import PAUSE_MARGIN_DAYS

NOW = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)
DEMO = validate(parse_document(DEMO_PROGRAM.read_text(encoding="utf-8")))
SETTINGS = settings(
    max_examples=12,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
SEEDS = st.integers(min_value=-(2**40), max_value=2**40)
SIZES = st.integers(min_value=1, max_value=160)


@SETTINGS
@given(seed=SEEDS, advocates=SIZES)
def test_truth_totals_add_up(seed: int, advocates: int) -> None:
    truth = simulate(advocates, seed, NOW, DEMO).truth
    f = truth["figures"]
    assert f["enrolled"] == advocates
    assert sum(f["referrals_per_advocate"].values()) == f["active"] <= advocates
    assert sum(c["referrals"] for c in f["channels"].values()) == f["referrals_attributed"]
    assert sum(c["won"] for c in f["channels"].values()) == f["referrals_won"]
    assert f["referrals_won"] <= f["referrals_attributed"]
    assert f["active"] <= f["referrals_attributed"]
    assert truth["rewards_owed"] == f["referrals_won"] - truth["denials"]
    assert truth["won_without_tax_form"] == 0
    top1, top10 = f["top_advocates"]["1%"], f["top_advocates"]["10%"]
    assert top1["advocates"] <= top10["advocates"] <= f["active"]
    assert top1["referrals"] <= top10["referrals"] <= f["referrals_attributed"]
    assert top1["won"] <= top10["won"] <= f["referrals_won"]
    prospects = truth["prospects"].values()
    credited = [p for p in prospects if p["advocate_id"] is not None]
    assert len(credited) == f["referrals_attributed"]
    assert sum(p["won"] for p in credited) == f["referrals_won"]
    assert len({p["advocate_id"] for p in credited}) == f["active"]
    rejected = Counter(r["reason"] for p in prospects for r in p["rejected"])
    assert rejected == Counter(truth["rejections"])
    assert all(p["status"] == "REJECTED" for p in prospects if p["advocate_id"] is None)
    assert sum(truth["statuses"].values()) == len(truth["prospects"])


@SETTINGS
@given(seed=SEEDS, advocates=SIZES)
def test_records_are_a_well_behaved_feed(seed: int, advocates: int) -> None:
    sim = simulate(advocates, seed, NOW, DEMO)
    assert sim.arrivals == simulate(advocates, seed, NOW, DEMO).arrivals  # replayable
    profiles = [a for a in sim.arrivals if isinstance(a.record, AdvocateProfile)]
    assert sim.arrivals[: len(profiles)] == tuple(profiles)  # the roster comes first
    assert len({a.key for a in profiles}) == advocates
    by_id: dict[str, object] = {}
    for arrival in sim.arrivals[len(profiles) :]:
        record = arrival.record
        assert not isinstance(record, AdvocateProfile)
        # a redelivered event is the same event
        assert by_id.setdefault(record.event_id, record) == record
        assert NOW - timedelta(days=365) <= record.occurred_at <= NOW
    events = sim.truth["events"]
    assert sum(events[t] for t in ("referral.shares.v1", "referral.conversions.v1")) + events[
        "referral.deals.v1"
    ] == len(sim.arrivals) - len(profiles)
    assert len(by_id) + events["duplicates"] == len(sim.arrivals) - len(profiles)


@SETTINGS
@given(seed=SEEDS, advocates=st.integers(min_value=1, max_value=600))
def test_money_events_follow_the_plan(seed: int, advocates: int) -> None:
    """Only the fraud bursts pass the daily limit, on their one day; refunds come after the
    won deal, on an advocate's only one, away from the pause; friend rewards and clawbacks
    follow the won and refunded deals."""
    sim = simulate(advocates, seed, NOW, DEMO)
    truth, limit = sim.truth, DEMO.fraud.max_wins_per_day
    assert limit is not None
    holder = {pid: p["advocate_id"] for pid, p in truth["prospects"].items()}
    stages: dict[str, dict[DealStage, datetime]] = {}
    for arrival in sim.arrivals:
        if isinstance(arrival.record, DealEvent):
            stages.setdefault(arrival.record.prospect_id, {})[arrival.record.stage] = (
                arrival.record.occurred_at
            )
    zone = ZoneInfo(DEMO.time_zone)
    wins = {pid: s[DealStage.WON] for pid, s in stages.items() if DealStage.WON in s}
    days = Counter((holder[pid], at.astimezone(zone).date()) for pid, at in wins.items())
    over = {key: n - limit for key, n in days.items() if n > limit}
    planned = set(truth["operator"]["deny"]) | set(truth["operator"]["approve"])
    assert {advocate for advocate, _ in over} == planned
    assert len(over) == len(planned)  # one day each
    for advocate, _ in over:  # a burst's advocate wins nothing else
        assert sum(n for (a, _), n in days.items() if a == advocate) == limit + over[advocate, _]
    assert sum(over.values()) == truth["fraud_holds"]
    assert (
        sum(n for (a, _), n in over.items() if a in truth["operator"]["deny"]) == (truth["denials"])
    )
    if advocates >= 300:
        assert truth["operator"]["deny"] and truth["operator"]["approve"]
    won_by = Counter(holder[pid] for pid in wins)
    pause_from = datetime.fromisoformat(truth["pause"]["from"])
    pause_until = datetime.fromisoformat(truth["pause"]["until"])
    margin = timedelta(days=PAUSE_MARGIN_DAYS)
    refunds = {pid: s for pid, s in stages.items() if DealStage.REVERSED in s}
    for pid, s in refunds.items():
        assert s[DealStage.REVERSED] - s[DealStage.WON] >= timedelta(days=3)
        assert won_by[holder[pid]] == 1
        for at in (s[DealStage.WON], s[DealStage.REVERSED]):
            assert not pause_from - margin <= at < pause_until + margin
    friends = truth["friend_rewards"]
    assert friends["count"] == len(wins) - truth["denials"]
    assert friends["amount_minor"] == 2_500 * friends["count"]
    assert (
        truth["clawbacks"]["count"] == 2 * len(refunds) == 2 * truth["statuses"].get("REVERSED", 0)
    )
    assert truth["clawbacks"]["amount_minor"] == (7_500 + 2_500) * len(refunds)
    assert 0 <= truth["pause"]["first_arrival"] <= truth["pause"]["end_arrival"]
    assert truth["pause"]["end_arrival"] <= len(sim.arrivals)
