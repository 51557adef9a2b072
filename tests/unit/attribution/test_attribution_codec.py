"""The adapter's stored values: a referral state and the index values come back exactly, equal
values give equal bytes, and anything else is refused loudly, naming what was corrupt."""

from __future__ import annotations

import msgspec
import pytest
from attribution_builders import KEY, PROGRAM, PROSPECT, PROSPECT_EMAIL, T0, busy_engine, share

from referrals.contract.records import Channel
from services.attribution.adapters.codec import (
    ADVOCATES,
    CHANGES,
    POSITIONS,
    REFERRALS,
    TOUCHES,
    WAITING,
)
from services.attribution.adapters.keys import advocate_wait, code_wait
from services.attribution.domain.model import Advocate, Touch
from services.attribution.domain.referral import new_state


def test_state_survives_encode_and_decode_unchanged() -> None:
    state = busy_engine().state(KEY)
    assert state is not None and state.final and state.rejected
    assert REFERRALS.decode(REFERRALS.encode(state)) == state
    assert REFERRALS.encode(REFERRALS.decode(REFERRALS.encode(state))) == REFERRALS.encode(state)


def test_a_fresh_state_round_trips_too() -> None:
    state = new_state(PROGRAM, PROSPECT)
    assert REFERRALS.decode(REFERRALS.encode(state)) == state


@pytest.mark.parametrize(
    "data",
    [
        b"",
        msgspec.json.encode([]),
        msgspec.json.encode([99, ["p", "q"]]),  # a format version this code does not know
        msgspec.json.encode([1, ["p"]]),
        b"not json",
        b'[1,"p","q",[],[],[],[],null,[],[],0,null,0]',  # the positional JSON of before
        msgspec.json.encode({"a": 1}),
    ],
)
def test_corrupt_state_bytes_are_refused_loudly(data: bytes) -> None:
    with pytest.raises(ValueError, match=r"corrupt referral state at key b'k': "):
        REFERRALS.decode(data, b"k")


def test_directory_values_read_back_exactly() -> None:
    event = share("sh-1", "adv-a", channel=Channel.EMAIL, email=PROSPECT_EMAIL, at=T0)
    touch = Touch.from_share(event)
    assert TOUCHES.decode(TOUCHES.encode(touch)) == touch
    assert TOUCHES.decode(TOUCHES.encode(touch)).occurred_at == T0
    advocate = Advocate("adv-a", PROGRAM, PROSPECT_EMAIL, owner_rep_id=None)
    assert ADVOCATES.decode(ADVOCATES.encode(advocate)) == advocate
    keys = [advocate_wait("adv-a"), code_wait(PROGRAM, "\x00B")]
    assert CHANGES.decode(CHANGES.encode(keys)) == keys


def test_index_values_read_back_exactly() -> None:
    refs = ['["acme","p-1"]', '["acme","p-2"]']
    assert WAITING.decode(WAITING.encode(refs)) == refs
    positions = {"referral.shares.v1": {0: 10, 3: 2**40}, "referral.advocates.v1": {}}
    assert POSITIONS.decode(POSITIONS.encode(positions)) == positions


def test_a_mistyped_directory_value_names_what_it_is() -> None:
    with pytest.raises(ValueError, match="corrupt directory touch at key b'c1'"):
        TOUCHES.decode(ADVOCATES.encode(Advocate("adv-a", PROGRAM, PROSPECT_EMAIL)), b"c1")
