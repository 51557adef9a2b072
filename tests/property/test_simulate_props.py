"""For any seed and size, the simulator's ground truth is internally consistent and its records
are a well-behaved platform feed (small programs: a handful of examples keeps this fast)."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from referrals.contract.records import AdvocateProfile
from referrals.programs.document import parse_document, validate
from referrals.tools.simulate import DEMO_PROGRAM, simulate

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
    assert truth["rewards_owed"] == f["referrals_won"] and truth["won_without_tax_form"] == 0
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
