"""Persisted state, deterministic ids and the bounds that keep a referral's state small."""

from __future__ import annotations

import hashlib
from collections import Counter

import pytest
from attribution_builders import (
    PROGRAM,
    PROSPECT,
    busy_engine,
    conversion,
    deal,
    directory,
)

from referrals.contract.records import DealStage
from services.attribution.domain.ids import referral_id
from services.attribution.domain.referral import new_state, on_conversion, on_deal
from services.attribution.domain.state import MAX_DEALS, MAX_SEEN, MAX_SOURCES


def test_referral_id_derives_from_program_and_prospect() -> None:
    digest = hashlib.sha256(f"{PROGRAM}|{PROSPECT}".encode()).hexdigest()
    assert referral_id(PROGRAM, PROSPECT) == "rf-" + digest[:32]


def test_replaying_the_same_inputs_gives_the_same_records_and_status_ids() -> None:
    first, second = busy_engine().outputs, busy_engine().outputs
    assert first == second
    assert len({o.status_id for o in first}) == len(first)


def test_persisting_the_state_at_every_step_changes_nothing() -> None:
    assert busy_engine(persist=True).outputs == busy_engine(persist=False).outputs


def test_an_event_routed_to_another_referral_is_a_bug() -> None:
    state = on_conversion(None, conversion(), directory()).state
    with pytest.raises(ValueError, match="routed"):
        on_conversion(state, conversion("cv-9", prospect="someone-else"), directory())


def test_seen_event_ids_are_bounded() -> None:
    dir_ = directory()
    state = new_state(PROGRAM, PROSPECT)
    for n in range(MAX_SEEN + 10):
        step = on_conversion(state, conversion(f"cv-{n}"), dir_)
        assert step.state is not None
        state = step.state
    assert len(state.seen) == MAX_SEEN
    assert state.seen[-1] == f"cv-{MAX_SEEN + 9}"


def test_claims_and_deals_beyond_their_bounds_are_counted_and_ignored() -> None:
    dir_ = directory()
    state = new_state(PROGRAM, PROSPECT)
    counted: Counter[str] = Counter()
    for n in range(MAX_SOURCES + 3):
        step = on_conversion(state, conversion(f"cv-{n}", code=f"CODE-{n}"), dir_)
        assert step.state is not None
        state = step.state
        counted.update(step.counters)
    for n in range(MAX_DEALS + 2):
        step = on_deal(state, deal(f"dl-{n}", DealStage.OPEN, deal_id=f"deal-{n}"), dir_)
        assert step.state is not None
        state = step.state
        counted.update(step.counters)
    assert (len(state.sources), len(state.deals)) == (MAX_SOURCES, MAX_DEALS)
    assert counted["claims_over_limit"] == 3
    assert counted["deals_over_limit"] == 2
