"""Over time: "refer again" nurture after a WON, shares that cancel it, the daily rate limit,
the sticky opt-out and resending what was planned but never confirmed delivered."""

from __future__ import annotations

from notifications_builders import (
    ADVOCATE,
    DAY,
    HOUR,
    NOW,
    kinds,
    known_advocate,
    only,
    profile,
    program,
    reasons,
    share,
    status,
    stored,
)

from referrals.contract.records import ReferralStatus
from referrals.programs.model import MessageKind
from services.notifications.domain.messages import Plan, Reason
from services.notifications.domain.plan import (
    next_wakeup,
    on_dead_lettered,
    on_delivered,
    on_profile,
    on_share,
    on_status,
    on_tick,
    on_unsubscribe,
    unsent,
)
from services.notifications.domain.state import State, new_state

S = ReferralStatus
DOC = program(nurture_days=[3, 14])


def won(state: State) -> State:
    state, plan = on_status(state, status("r1", S.WON, NOW), DOC, NOW)
    assert kinds(plan) == ["WON:0"]
    return state


def test_won_schedules_nurture_at_each_nurture_day_sent_by_the_tick_when_due() -> None:
    state = won(known_advocate(DOC))

    state, early = on_tick(state, DOC, NOW + 3 * DAY - HOUR)
    state, first = on_tick(state, DOC, NOW + 3 * DAY)
    state, quiet = on_tick(state, DOC, NOW + 10 * DAY)
    state, second = on_tick(state, DOC, NOW + 14 * DAY + HOUR)

    assert (early, quiet) == (Plan(), Plan())
    assert kinds(first) == ["NURTURE:1"]
    assert only(first).trigger_time == NOW + 3 * DAY
    assert only(first).context["kind"] == "NURTURE"
    assert kinds(second) == ["NURTURE:2"]
    assert state.pending == ()


def test_nurture_schedule_survives_a_restart() -> None:
    state = stored(won(known_advocate(DOC)))
    _, plan = on_tick(state, DOC, NOW + 3 * DAY)
    assert kinds(plan) == ["NURTURE:1"]


def test_sharing_again_after_the_won_cancels_its_pending_nurture() -> None:
    state = won(known_advocate(DOC))
    state, plan = on_share(state, share(NOW + DAY))

    assert reasons(plan) == [Reason.SUPERSEDED_BY_SHARE] * 2
    for day in (3, 14):
        state, later = on_tick(state, DOC, NOW + day * DAY)
        assert later == Plan()


def test_a_share_after_the_first_nurture_cancels_only_what_is_still_pending() -> None:
    state = won(known_advocate(DOC))
    state, first = on_tick(state, DOC, NOW + 3 * DAY)
    state, plan = on_share(state, share(NOW + 4 * DAY))
    assert kinds(first) == ["NURTURE:1"]
    assert [(s.step, s.reason) for s in plan.suppressed] == [(2, Reason.SUPERSEDED_BY_SHARE)]


def test_a_share_before_the_won_does_not_cancel_its_nurture() -> None:
    state, _ = on_share(known_advocate(DOC), share(NOW - HOUR))
    state = won(state)
    state, _ = on_share(state, share(NOW - HOUR))  # the same share again, late
    _, plan = on_tick(state, DOC, NOW + 3 * DAY)
    assert kinds(plan) == ["NURTURE:1"]


def test_a_share_that_arrives_before_the_won_it_followed_supersedes_its_nurture() -> None:
    state, _ = on_share(known_advocate(DOC), share(NOW + HOUR))
    state, plan = on_status(state, status("r1", S.WON, NOW), DOC, NOW + 2 * HOUR)
    assert kinds(plan) == ["WON:0"]
    assert reasons(plan) == [Reason.SUPERSEDED_BY_SHARE] * 2
    assert state.pending == ()


def test_a_backfilled_won_has_its_nurture_due_at_once_unless_stale() -> None:
    recent = status("r1", S.WON, NOW - 5 * DAY)  # step 1 was due 2 days ago
    state, plan = on_status(known_advocate(DOC), recent, DOC, NOW)
    state, due = on_tick(state, DOC, NOW)
    assert kinds(plan) == ["WON:0"]
    assert kinds(due) == ["NURTURE:1"]
    assert only(due).trigger_time == NOW - 2 * DAY

    old = status("r2", S.WON, NOW - 12 * DAY)  # WON and step 1 stale, step 2 due in 2 days
    state, plan = on_status(state, old, DOC, NOW)
    assert plan.messages == ()
    assert [(s.kind, s.step, s.reason) for s in plan.suppressed] == [
        (MessageKind.WON, 0, Reason.STALE),
        (MessageKind.NURTURE, 1, Reason.STALE),
    ]
    _, later = on_tick(state, DOC, NOW + 2 * DAY)
    assert [(m.referral_id, m.step) for m in later.messages] == [("r2", 2)]


def test_thank_yous_over_the_daily_limit_are_dropped_as_rate_limited() -> None:
    state, plans = known_advocate(DOC), []
    for index in range(4):
        at = NOW + index * HOUR
        state, plan = on_status(state, status(f"r{index}", S.LEAD, at), DOC, at)
        plans.append(plan)
    # 24 hours after the first, there is room for one again: any 24 hours, not calendar days
    state, full = on_status(state, status("r8", S.LEAD, NOW + 23 * HOUR), DOC, NOW + 23 * HOUR)
    _, room = on_status(state, status("r9", S.LEAD, NOW + 24 * HOUR), DOC, NOW + 24 * HOUR)

    assert [len(p.messages) for p in plans] == [1, 1, 1, 0]
    assert reasons(plans[3]) == reasons(full) == [Reason.RATE_LIMITED]
    assert kinds(room) == ["LEAD:0"]


def test_thank_yous_come_before_nurture_which_waits_for_room() -> None:
    state = new_state(ADVOCATE)
    for referral, kind in (("r1", S.WON), ("r2", S.LEAD), ("r3", S.LEAD)):
        state, _ = on_status(state, status(referral, kind, NOW - 4 * DAY), DOC, NOW)
    # the profile arrives late: three thank-yous and a due nurture step compete for 3 slots
    state, plan = on_profile(state, profile(), DOC, NOW)
    state, waiting = on_tick(state, DOC, NOW + 23 * HOUR)
    wakeup = next_wakeup(state, DOC)
    state, sent = on_tick(state, DOC, NOW + DAY)

    assert kinds(plan) == ["LEAD:0", "LEAD:0", "WON:0"]  # same trigger time: in kind order
    assert plan.suppressed == () and waiting == Plan()
    assert wakeup == NOW + DAY
    assert kinds(sent) == ["NURTURE:1"]


def test_a_nurture_still_waiting_for_room_when_it_goes_stale_is_dropped() -> None:
    doc = program(nurture_days=[2], staleness_days=1, rate_limit={"max_per_day": 1})
    state, _ = on_status(known_advocate(doc), status("r1", S.WON), doc, NOW)
    later = NOW + DAY + HOUR
    state, lead = on_status(state, status("r2", S.LEAD, later), doc, later)
    state, deferred = on_tick(state, doc, NOW + 2 * DAY)
    state, dropped = on_tick(state, doc, NOW + 3 * DAY + HOUR)

    assert kinds(lead) == ["LEAD:0"]
    assert deferred == Plan()
    assert reasons(dropped) == [Reason.STALE]
    assert state.pending == ()


def test_opted_out_advocate_gets_nothing() -> None:
    state = known_advocate(DOC, opted_out=True)
    state, plan = on_status(state, status("r1", S.WON), DOC, NOW)
    _, tick = on_tick(state, DOC, NOW + 3 * DAY)
    assert plan.messages == () and tick == Plan()
    assert reasons(plan) == [Reason.OPTED_OUT]


def test_opt_out_is_sticky_against_a_later_profile_saying_opted_in() -> None:
    state = known_advocate(DOC, opted_out=True)
    state, _ = on_profile(state, profile(opted_out=False, at=NOW + DAY), DOC, NOW + DAY)
    _, plan = on_status(state, status("r1", S.LEAD, NOW + DAY), DOC, NOW + DAY)
    assert state.opted_out
    assert reasons(plan) == [Reason.OPTED_OUT]


def test_unsubscribe_drops_waiting_nurture_and_resends_and_sticks() -> None:
    state = won(known_advocate(DOC))
    state, plan = on_unsubscribe(state, NOW + HOUR)
    state, _ = on_profile(state, profile(), DOC, NOW + 2 * HOUR)
    _, tick = on_tick(state, DOC, NOW + 3 * DAY)

    assert reasons(plan) == [Reason.OPTED_OUT] * 2
    assert unsent(state, DOC, NOW + 2 * HOUR) == ()
    assert tick == Plan()
    assert next_wakeup(state, DOC) is None


def test_a_planned_message_is_resent_with_its_id_until_delivered() -> None:
    state, plan = on_status(known_advocate(DOC), status("r1", S.LEAD), DOC, NOW)
    restarted = stored(state)

    assert unsent(restarted, DOC, NOW + HOUR) == plan.messages
    assert unsent(on_delivered(restarted, only(plan).notification_id), DOC, NOW) == ()
    assert unsent(on_dead_lettered(restarted, only(plan).notification_id), DOC, NOW) == ()
    # Staleness decides whether a message is planned, not how long a planned one may wait: the
    # adapter's delivery deadline ends a delivery that keeps failing (to the .dlq).
    assert unsent(restarted, DOC, NOW + 8 * DAY) == plan.messages
    later, _ = on_tick(restarted, DOC, NOW + 8 * DAY)
    assert unsent(later, DOC, NOW + 8 * DAY) == plan.messages


def test_next_wakeup_is_the_first_due_nurture_step() -> None:
    state = known_advocate(DOC)
    assert next_wakeup(state, DOC) is None
    assert next_wakeup(won(state), DOC) == NOW + 3 * DAY
