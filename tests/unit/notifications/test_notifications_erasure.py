"""Erasure in the notifications core: the profile and every waiting message go, later statuses
are dropped (ADVOCATE_ERASED), erasing twice changes nothing, and a profile published after the
erasure enrols the advocate again."""

from __future__ import annotations

from dataclasses import replace

from notifications_builders import (
    ADVOCATE,
    DAY,
    NOW,
    known_advocate,
    profile,
    program,
    reasons,
    status,
    stored,
)

from referrals.contract.records import ReferralStatus
from referrals.programs.model import MessageKind
from services.notifications.adapters.codec import STATES
from services.notifications.domain.erasure import cancelled_outbox, on_erased
from services.notifications.domain.messages import Reason
from services.notifications.domain.plan import on_profile, on_status, on_tick
from services.notifications.domain.state import State, new_state, to_ms

S = ReferralStatus
NURTURE = program(nurture_days=[3, 10], rate_limit={"max_per_day": 20})
AT = to_ms(NOW)


def _with_waiting_messages() -> State:
    """An advocate with a message planned and unconfirmed (outbox) and two nurture steps."""
    state, plan = on_status(known_advocate(NURTURE), status("r1", S.WON), NURTURE, NOW)
    assert len(plan.messages) == 1 and len(state.pending) == 2 and len(state.outbox) == 1
    return state


def test_erasure_drops_the_profile_and_cancels_every_waiting_message() -> None:
    state = _with_waiting_messages()
    cancelled = cancelled_outbox(state)
    erased, plan = on_erased(state, AT)
    assert erased.profile is None and erased.erased_at == AT
    assert erased.pending == () and erased.outbox == ()
    assert reasons(plan) == [Reason.ADVOCATE_ERASED] * 3
    assert cancelled == (state.outbox[0].notification_id(ADVOCATE),)
    encoded = STATES.encode(erased)
    assert b"alex@example.com" not in encoded and b"Alex Doe" not in encoded
    assert stored(erased) == erased


def test_what_stays_names_no_person_and_keeps_the_rules() -> None:
    state = _with_waiting_messages()
    erased, _ = on_erased(state, AT)
    assert erased.advocate_id == ADVOCATE
    assert erased.messaged == state.messaged  # a notification_id is never reused
    assert erased.sends == state.sends


def test_a_status_after_the_erasure_is_dropped_not_held_for_a_profile() -> None:
    erased, _ = on_erased(known_advocate(), AT)
    after, plan = on_status(erased, status("r2", S.LEAD), program(), NOW)
    assert plan.messages == () and reasons(plan) == [Reason.ADVOCATE_ERASED]
    assert after.pending == ()


def test_a_tick_after_the_erasure_plans_nothing() -> None:
    erased, _ = on_erased(_with_waiting_messages(), AT)
    later, plan = on_tick(erased, NURTURE, NOW + 11 * DAY)
    assert plan.messages == () and plan.suppressed == ()
    assert later.pending == () and later.profile is None


def test_erasing_twice_keeps_the_first_time_and_cancels_nothing_more() -> None:
    once, _ = on_erased(_with_waiting_messages(), AT)
    twice, plan = on_erased(once, AT + 60_000)
    assert twice == once and plan.suppressed == ()


def test_an_advocate_never_seen_can_be_erased() -> None:
    erased, plan = on_erased(new_state("adv-unknown"), AT)
    assert erased.erased and plan.suppressed == () and plan.messages == ()


def test_a_profile_after_the_erasure_enrols_the_advocate_again() -> None:
    erased, _ = on_erased(known_advocate(), AT)
    again, _ = on_profile(erased, profile(), program(), NOW)
    assert not again.erased and again.profile is not None
    _, plan = on_status(again, status("r3", S.LEAD), program(), NOW)
    assert [m.kind for m in plan.messages] == [MessageKind.LEAD]


def test_an_opt_out_outlives_the_erasure_and_a_re_enrolment() -> None:
    opted = replace(known_advocate(), opted_out_at=AT - 1)
    erased, _ = on_erased(opted, AT)
    again, _ = on_profile(erased, profile(), program(), NOW)
    _, plan = on_status(again, status("r4", S.LEAD), program(), NOW)
    assert plan.messages == () and reasons(plan) == [Reason.OPTED_OUT]
