"""The per-advocate state: bounded whatever the history (its encoding: test_notifications_codec)."""

from __future__ import annotations

from notifications_builders import ADVOCATE, DAY, HOUR, NOW, known_advocate, program, share, status

from referrals.contract.records import ReferralStatus
from services.notifications.adapters.codec import STATES
from services.notifications.domain.plan import (
    on_delivered,
    on_share,
    on_status,
    on_tick,
    on_unsubscribe,
)
from services.notifications.domain.state import MAX_REFERRALS, State

S = ReferralStatus


def test_opted_out_state_keeps_only_who_the_advocate_is() -> None:
    state, _ = on_status(known_advocate(), status("r1", S.WON), program(), NOW)
    state, _ = on_unsubscribe(state, NOW + HOUR)
    assert state == State(ADVOCATE, state.profile, opted_out_at=state.opted_out_at)


def test_state_stays_small_over_a_year_of_busy_history() -> None:
    doc, state = program(rate_limit={"max_per_day": 5}), known_advocate()
    for day in range(365):
        now = NOW + day * DAY
        planned: list[str] = []
        for kind in (S.LEAD, S.WON, S.REWARDED, S.PAID):
            state, plan = on_status(state, status(f"r{day}", kind, now), doc, now)
            planned += [m.notification_id for m in plan.messages]
        state, plan = on_tick(state, doc, now + 12 * HOUR)
        planned += [m.notification_id for m in plan.messages]
        # The adapter settles each planned message within its delivery deadline (delivered
        # or dead-lettered); the last day's stay in the outbox.
        if day < 364:
            for notification_id in planned:
                state = on_delivered(state, notification_id)
        if day % 10 == 0:
            state, _ = on_share(state, share(now + HOUR))

    assert len(state.messaged) == 365  # one entry per referral
    assert len(state.sends) <= 5
    assert len(state.pending) <= 2 * 15  # nurture of the last 14 days' wins
    assert len(state.outbox) <= 5  # the last day's, not yet settled
    assert len(STATES.encode(state)) < 32_000


def test_only_the_most_recently_messaged_referrals_are_remembered_beyond_the_cap() -> None:
    doc, state = program(channels=[]), known_advocate()  # NO_CHANNEL: decided, nothing sent
    for index in range(MAX_REFERRALS + 10):
        state, _ = on_status(state, status(f"r{index}", S.LEAD), doc, NOW)
    assert len(state.messaged) == MAX_REFERRALS
    assert state.messaged[0][0] == "r10"
    assert state.messaged[-1][0] == f"r{MAX_REFERRALS + 9}"
