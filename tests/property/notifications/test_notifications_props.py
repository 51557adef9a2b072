"""Properties of the notifications core over any interleaving of one advocate's inputs.

Statuses (with exact repeats and other statuses of the same kind), shares, profile updates,
unsubscribes, delivery confirmations and wall-clock ticks in any order: no message is planned
twice, the daily limit holds in every 24 hours, nothing is planned after an opt-out nor when
stale, and the plans depend only on the inputs, whether or not the state went through
the adapter's codec (`STATES`) between any two of them.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from referrals.contract.records import (
    AdvocateProfile,
    Channel,
    MatchedBy,
    ReferralStatus,
    ReferralStatusChanged,
    ShareEvent,
)
from referrals.programs.document import validate
from referrals.programs.model import MessageKind, ProgramDocument
from services.notifications.adapters.codec import STATES
from services.notifications.domain.messages import Plan
from services.notifications.domain.plan import (
    on_delivered,
    on_profile,
    on_share,
    on_status,
    on_tick,
    on_unsubscribe,
)
from services.notifications.domain.state import State, new_state

ADVOCATE = "adv-1"
START = datetime(2026, 6, 1, 9, tzinfo=UTC)
HOUR = timedelta(hours=1)
DAY = timedelta(days=1)
TIERS = [
    {"from_referral": 1, "amount": "50.00", "reward_type": "GIFT_CARD"},
    {"from_referral": 3, "percent": "5", "reward_type": "CHECK"},
]
KINDS = [
    ReferralStatus.LEAD,
    ReferralStatus.IN_PROGRESS,
    ReferralStatus.WON,
    ReferralStatus.REWARDED,
    ReferralStatus.PAID,
    ReferralStatus.PAYOUT_FAILED,
]


def _program(max_per_day: int, staleness_days: int, nurture_days: list[int]) -> ProgramDocument:
    notifications = {
        "rate_limit": {"max_per_day": max_per_day},
        "staleness_days": staleness_days,
        "nurture_days": nurture_days,
    }
    return validate(
        {
            "program_id": "p",
            "currency": "USD",
            "rewards": {"tiers": TIERS},
            "notifications": notifications,
        }
    )


PROGRAMS = [_program(1, 2, [1]), _program(2, 7, [1, 3]), _program(3, 7, [3, 14])]

Op = tuple[object, ...]
# status: referral, kind, occurred hours from the clock (mostly recent, some stale, a few just
# ahead of the clock), variant (another status of the same kind, e.g. a second payout attempt)
status_st = st.tuples(
    st.just("status"),
    st.integers(0, 3),
    st.sampled_from([*KINDS, ReferralStatus.WON]),
    st.one_of(st.integers(-48, 2), st.integers(-400, -48)),
    st.integers(0, 1),
)
op_st = st.one_of(
    status_st,
    status_st,
    status_st,
    st.tuples(st.just("repeat"), st.integers(0, 60)),  # an earlier status, delivered again
    st.tuples(st.just("share"), st.integers(-72, 0)),
    # opting out ends every scenario's interest, so it is rare
    st.tuples(st.just("profile"), st.sampled_from(["in"] * 8 + ["out", "unsubscribe"])),
    st.tuples(st.just("tick")),
    st.tuples(st.just("advance"), st.integers(0, 40)),
    st.tuples(st.just("advance"), st.integers(0, 40)),
    st.tuples(st.just("delivered"), st.integers(0, 9)),
)
# Mostly the profile is known from the start; otherwise statuses wait for it.
ops_st = st.builds(
    lambda known, ops: [("profile", "in"), *ops] if known else ops,
    st.sampled_from([True, True, True, False]),
    st.lists(op_st, min_size=10, max_size=50),
)


@dataclass
class Run:
    """What one pass over the inputs planned: (wall clock, plan) per input, and the end state."""

    plans: list[tuple[datetime, Plan]]
    state: State
    opted_out_after: int | None  # index of the first input that opted the advocate out


def run(doc: ProgramDocument, ops: list[Op], roundtrip: bool) -> Run:
    state, clock = new_state(ADVOCATE), START
    seen: list[ReferralStatusChanged] = []
    plans: list[tuple[datetime, Plan]] = []
    opted_out_after = None
    for index, op in enumerate(ops):
        if roundtrip:
            state = STATES.decode(STATES.encode(state))
        state, plan, clock = apply(state, doc, op, clock, seen)
        plans.append((clock, plan))
        if opted_out_after is None and op in (("profile", "out"), ("profile", "unsubscribe")):
            opted_out_after = index
    return Run(plans, state, opted_out_after)


def apply(
    state: State, doc: ProgramDocument, op: Op, clock: datetime, seen: list[ReferralStatusChanged]
) -> tuple[State, Plan, datetime]:
    match op:
        case ("status", int(ref), ReferralStatus() as kind, int(hours), int(variant)):
            change = status(f"r{ref}", kind, clock + hours * HOUR, variant)
            seen.append(change)
            return (*on_status(state, change, doc, clock), clock)
        case ("repeat", int(index)) if seen:
            return (*on_status(state, seen[index % len(seen)], doc, clock), clock)
        case ("share", int(hours)):
            return (*on_share(state, share(clock + hours * HOUR)), clock)
        case ("profile", "unsubscribe"):
            return (*on_unsubscribe(state, clock), clock)
        case ("profile", str(choice)):
            return (*on_profile(state, profile(choice == "out", clock), doc, clock), clock)
        case ("tick",):
            return (*on_tick(state, doc, clock), clock)
        case ("advance", int(hours)):
            return (*on_tick(state, doc, clock + hours * HOUR), clock + hours * HOUR)
        case ("delivered", int(index)) if state.outbox:
            delivered = state.outbox[index % len(state.outbox)].notification_id(state.advocate_id)
            return on_delivered(state, delivered), Plan(), clock
    return state, Plan(), clock


def status(
    referral: str, kind: ReferralStatus, at: datetime, variant: int
) -> ReferralStatusChanged:
    return ReferralStatusChanged(
        status_id=f"{referral}|{kind.value}|{variant}|{at.isoformat()}",
        referral_id=referral,
        program_id="p",
        advocate_id=ADVOCATE,
        prospect_id=f"prospect-{referral}",
        channel=Channel.EMAIL,
        matched_by=MatchedBy.CODE,
        status=kind,
        config_version=1,
        occurred_at=at,
        reason="ACCOUNT_CLOSED" if kind is ReferralStatus.PAYOUT_FAILED else None,
        amount_minor=5_000 if kind in (ReferralStatus.REWARDED, ReferralStatus.PAID) else None,
        currency="USD",
        reward_type="GIFT_CARD",
        period_referrals=variant + 1,
    )


def share(at: datetime) -> ShareEvent:
    return ShareEvent(f"sh-{at.isoformat()}", "p", ADVOCATE, Channel.SOCIAL, "CODE-1", at)


def profile(opted_out: bool, at: datetime) -> AdvocateProfile:
    return AdvocateProfile(
        "p", ADVOCATE, "alex@example.com", "Alex", "0" * 64, opted_out, False, at, locale="en-US"
    )


scenario = given(st.sampled_from(PROGRAMS), ops_st)


@settings(max_examples=100, deadline=None)
@scenario
def test_no_notification_id_is_ever_planned_twice(doc: ProgramDocument, ops: list[Op]) -> None:
    ids = [m.notification_id for _, plan in run(doc, ops, False).plans for m in plan.messages]
    assert len(ids) == len(set(ids))


@settings(max_examples=100, deadline=None)
@scenario
def test_no_24_hours_hold_more_messages_than_the_daily_limit(
    doc: ProgramDocument, ops: list[Op]
) -> None:
    times = [at for at, plan in run(doc, ops, False).plans for _ in plan.messages]
    limit = doc.notifications.rate_limit.max_per_day
    for start in times:
        assert sum(1 for at in times if start <= at < start + DAY) <= limit


@settings(max_examples=100, deadline=None)
@scenario
def test_nothing_is_planned_after_an_opt_out_nor_stale_nor_before_it_is_due(
    doc: ProgramDocument, ops: list[Op]
) -> None:
    result = run(doc, ops, False)
    staleness = doc.notifications.staleness_days * DAY
    for index, (at, plan) in enumerate(result.plans):
        if result.opted_out_after is not None and index >= result.opted_out_after:
            assert plan.messages == ()
        assert all(m.trigger_time >= at - staleness for m in plan.messages)
        assert all(m.trigger_time <= at for m in plan.messages if m.kind is MessageKind.NURTURE)


@settings(max_examples=100, deadline=None)
@scenario
def test_replaying_the_same_inputs_plans_the_same_messages(
    doc: ProgramDocument, ops: list[Op]
) -> None:
    first, second = run(doc, ops, False), run(doc, ops, False)
    assert first.plans == second.plans
    assert first.state == second.state


@settings(max_examples=100, deadline=None)
@scenario
def test_persisting_and_restoring_the_state_at_any_point_changes_nothing(
    doc: ProgramDocument, ops: list[Op]
) -> None:
    kept, restored = run(doc, ops, False), run(doc, ops, True)
    assert restored.plans == kept.plans
    assert restored.state == kept.state
    assert STATES.decode(STATES.encode(kept.state)) == kept.state
