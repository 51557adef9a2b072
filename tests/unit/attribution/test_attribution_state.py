"""Persisted state, deterministic ids and the bounds that keep a referral's state small."""

from __future__ import annotations

import hashlib
from collections import Counter

import pytest
from attribution_builders import (
    DAY,
    KEY,
    PROGRAM,
    PROSPECT,
    PROSPECT_EMAIL,
    T0,
    code_of,
    conversion,
    deal,
    directory,
    share,
)

from referrals.contract.records import Channel, DealStage
from services.attribution.domain.codec import from_bytes, to_bytes
from services.attribution.domain.ids import referral_id
from services.attribution.domain.memory import InMemoryAttribution
from services.attribution.domain.referral import new_state, on_conversion, on_deal
from services.attribution.domain.state import MAX_DEALS, MAX_SEEN, MAX_SOURCES


def busy_engine(*, persist: bool = True) -> InMemoryAttribution:
    """A referral with every kind of state: claims, rejections, waits, deals, a WON."""
    shares = [
        share("sh-a", "adv-a", at=T0 - 3 * DAY),
        share("sh-b", "adv-b", channel=Channel.EMAIL, email=PROSPECT_EMAIL, at=T0 - DAY),
        share("sh-c", "adv-c", at=T0 - 300 * DAY),
    ]
    engine_ = InMemoryAttribution(directory(shares=shares), persist=persist)
    engine_.conversion(conversion("cv-1", code=code_of("adv-c"), email=PROSPECT_EMAIL))
    engine_.conversion(conversion("cv-2", code=code_of("adv-a")))
    engine_.conversion(conversion("cv-3", code="UNKNOWN", at=T0 + DAY))
    engine_.deal(deal("dl-1", DealStage.WON, amount_minor=None, currency=None))
    engine_.deal(deal("dl-2", DealStage.OPEN, deal_id="deal-2", declared="adv-z"))
    return engine_


def test_state_survives_to_bytes_and_from_bytes_unchanged() -> None:
    state = busy_engine().state(KEY)
    assert state is not None and state.final and state.rejected
    assert from_bytes(to_bytes(state)) == state
    assert to_bytes(from_bytes(to_bytes(state))) == to_bytes(state)


def test_a_fresh_state_round_trips_too() -> None:
    state = new_state(PROGRAM, PROSPECT)
    assert from_bytes(to_bytes(state)) == state


@pytest.mark.parametrize("data", [b"", b"[]", b"[99]", b'[1,"p"]', b"not json", b'{"a":1}'])
def test_corrupt_state_bytes_are_refused_loudly(data: bytes) -> None:
    with pytest.raises(ValueError, match="referral state"):
        from_bytes(data)


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
