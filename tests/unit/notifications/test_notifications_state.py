"""The per-advocate state: a compact round trip through bytes, and bounded whatever the history."""

from __future__ import annotations

import json

import pytest
from notifications_builders import ADVOCATE, DAY, HOUR, NOW, known_advocate, program, share, status

from referrals.contract.records import ReferralStatus
from referrals.programs.model import MessageKind
from services.notifications.domain.plan import on_share, on_status, on_tick, on_unsubscribe
from services.notifications.domain.state import (
    MAX_REFERRALS,
    Facts,
    Pending,
    Profile,
    State,
    from_bytes,
    new_state,
    to_bytes,
)

S = ReferralStatus


def test_a_busy_state_survives_to_bytes_and_from_bytes_unchanged() -> None:
    state = State(
        advocate_id=ADVOCATE,
        profile=Profile("acme-b2b", "zoë@example.com", "Zoë Ünal", "de-DE"),
        messaged=(("r0", 0b100011), ("r3", 1 << 40)),
        pending=(
            Pending("r1", MessageKind.NURTURE, 1, 5_000, won_at=1_000),
            Pending("r2", MessageKind.REWARDED, 0, 3_000, facts=Facts("REWARDED", 5_000, "USD")),
        ),
        outbox=(
            Pending(
                "r3",
                MessageKind.PAYOUT_FAILED,
                0,
                4_000,
                facts=Facts("PAYOUT_FAILED", None, None, "CHECK", "po-1", "ACCOUNT_CLOSED", 3),
            ),
        ),
        sends=(4_000,),
        last_share_at=2_500,
    )
    assert from_bytes(to_bytes(state)) == state


@pytest.mark.parametrize(
    "state",
    [new_state(ADVOCATE), State(ADVOCATE, opted_out_at=123), known_advocate()],
)
def test_simple_states_survive_the_round_trip(state: State) -> None:
    assert from_bytes(to_bytes(state)) == state


@pytest.mark.parametrize(
    "data",
    [
        b"not json",
        b"[]",
        json.dumps([99, ADVOCATE, None, None, [], [], [], [], None]).encode(),
        json.dumps([1, ADVOCATE, None, None, [], [], [], ["x"], None]).encode(),
        json.dumps(
            [1, ADVOCATE, None, None, [], [["r", "NOPE", 0, 1, None, None]], [], [], None]
        ).encode(),
    ],
)
def test_anything_else_is_refused_with_a_value_error(data: bytes) -> None:
    with pytest.raises(ValueError, match="not a notifications state"):
        from_bytes(data)


def test_opted_out_state_keeps_only_who_the_advocate_is() -> None:
    state, _ = on_status(known_advocate(), status("r1", S.WON), program(), NOW)
    state, _ = on_unsubscribe(state, NOW + HOUR)
    assert state == State(ADVOCATE, state.profile, opted_out_at=state.opted_out_at)


def test_state_stays_small_over_a_year_of_busy_history() -> None:
    doc, state = program(rate_limit={"max_per_day": 5}), known_advocate()
    for day in range(365):
        now = NOW + day * DAY
        for kind in (S.LEAD, S.WON, S.REWARDED, S.PAID):
            state, _ = on_status(state, status(f"r{day}", kind, now), doc, now)
        state, _ = on_tick(state, doc, now + 12 * HOUR)
        if day % 10 == 0:
            state, _ = on_share(state, share(now + HOUR))

    assert len(state.messaged) == 365  # one entry per referral
    assert len(state.sends) <= 5
    assert len(state.pending) <= 2 * 15  # nurture of the last 14 days' wins
    assert len(state.outbox) <= 5 * 8  # undelivered in the last staleness_days
    assert len(to_bytes(state)) < 32_000


def test_only_the_most_recently_messaged_referrals_are_remembered_beyond_the_cap() -> None:
    doc, state = program(channels=[]), known_advocate()  # NO_CHANNEL: decided, nothing sent
    for index in range(MAX_REFERRALS + 10):
        state, _ = on_status(state, status(f"r{index}", S.LEAD), doc, NOW)
    assert len(state.messaged) == MAX_REFERRALS
    assert state.messaged[0][0] == "r10"
    assert state.messaged[-1][0] == f"r{MAX_REFERRALS + 9}"
