"""The planner: for each input of one advocate, the next state and the messages to deliver.

Every command takes the state and returns `(state, Plan)`; nothing is sent from here. The rules:

- LEAD, WON, REWARDED, PAID and PAYOUT_FAILED statuses each trigger one thank-you (step 0), a
  REJECTED with reason DENIED a REWARD_DENIED message and a REVERSED with reason CLAWED_BACK a
  REWARD_CLAWED_BACK one (courteous news of a denied or clawed-back reward); any other status
  triggers nothing. The program chooses which of these kinds are sent (`notifications.kinds`;
  NURTURE there enables the nurture schedule). A WON also schedules one NURTURE ("refer again")
  message per entry of the program's `nurture_days`, due at the WON's `occurred_at` plus that
  many days by the wall clock (steps 1, 2, ...). A share that happened after the WON cancels its
  pending nurture steps (SUPERSEDED_BY_SHARE), also when the share arrives before the WON does.
- One message per `notification_id` (advocate, referral, kind, step), ever: a repeated status,
  or another status of the same kind for the same referral (a second PAYOUT_FAILED after a
  retry, weeks later), is DUPLICATE. Thank-yous dropped as RATE_LIMITED or NO_CHANNEL count as
  decided too.
- A message whose trigger is older than `staleness_days` by the wall clock is STALE, so replaying
  history mails nobody; a backfilled WON's nurture steps are due at once unless they are stale.
- Opted-out advocates get nothing (OPTED_OUT), and the opt-out is sticky (see `state`).
- Statuses may arrive before the advocate's profile: their messages are held in the state and
  planned when the profile arrives, unless they went stale waiting (NO_PROFILE).
- At most `rate_limit.max_per_day` messages per advocate in any 24 hours of wall-clock time,
  counted when planned. Thank-yous come first: when several messages compete, they are planned
  before nurture. A thank-you over the limit is dropped (RATE_LIMITED): telling someone a day
  late that a friend signed up is noise. A nurture message over the limit waits for room (while
  it is not stale), since it is not tied to a moment.
- Programs may have no usable channel (no channels, or EMAIL only and no address): NO_CHANNEL.
- An erased advocate gets nothing: their statuses are ADVOCATE_ERASED (`erasure`).

- With a sales webhook, a LEAD is also POSTed to sales, whatever the opt-out (`leads`).

Statuses are planned on arrival; due nurture steps and held messages go out on `on_tick` (and
held ones on `on_profile`). `next_wakeup` tells the adapter when a tick can next do something.
"""

from __future__ import annotations

from datetime import datetime

from referrals.contract.records import (
    AdvocateProfile,
    ReferralStatus,
    ReferralStatusChanged,
    ShareEvent,
)
from referrals.platform.evolve import replace
from referrals.programs.model import MessageKind, ProgramDocument
from services.notifications.domain import leads
from services.notifications.domain.messages import (
    Message,
    Plan,
    Reason,
    build_message,
    channels_for,
    suppressed,
)
from services.notifications.domain.state import (
    DAY_MS,
    Facts,
    Pending,
    Profile,
    State,
    from_ms,
    to_ms,
)

KINDS = {
    ReferralStatus.LEAD: MessageKind.LEAD,
    ReferralStatus.WON: MessageKind.WON,
    ReferralStatus.REWARDED: MessageKind.REWARDED,
    ReferralStatus.PAID: MessageKind.PAID,
    ReferralStatus.PAYOUT_FAILED: MessageKind.PAYOUT_FAILED,
}
# Statuses whose message depends on their reason (status, reason code).
REASON_KINDS = {
    (ReferralStatus.REJECTED, "DENIED"): MessageKind.REWARD_DENIED,
    (ReferralStatus.REVERSED, "CLAWED_BACK"): MessageKind.REWARD_CLAWED_BACK,
}
_ORDER = {kind: index for index, kind in enumerate(MessageKind)}  # NURTURE last


def on_status(
    state: State, status: ReferralStatusChanged, program: ProgramDocument, now: datetime
) -> tuple[State, Plan]:
    """The thank-you a status change triggers (and, on WON, the nurture schedule); a LEAD's
    lead for sales."""
    _check(state, status.advocate_id)
    state, to_sales = leads.on_lead(state, status, program, now)
    state, plan = _on_status(state, status, program, now)
    return state, to_sales + plan


def message_kind(status: ReferralStatusChanged) -> MessageKind | None:
    """The message kind a status triggers, if any (whether the program sends it aside)."""
    return REASON_KINDS.get((status.status, status.reason or "")) or KINDS.get(status.status)


def _on_status(
    state: State, status: ReferralStatusChanged, program: ProgramDocument, now: datetime
) -> tuple[State, Plan]:
    kinds = program.notifications.kinds
    kind = message_kind(status)
    nurture = kind is MessageKind.WON and MessageKind.NURTURE in kinds
    if kind is None or (kind not in kinds and not nurture):
        return state, Plan()
    entry = Pending(status.referral_id, kind, 0, to_ms(status.occurred_at), facts=_facts(status))
    if state.opted_out:
        return state, suppressed(state.advocate_id, entry, Reason.OPTED_OUT)
    if state.erased:  # nobody to write to: not held for a profile either
        return state, suppressed(state.advocate_id, entry, Reason.ADVOCATE_ERASED)
    state, cut = _housekeep(state, program, to_ms(now))
    if state.knows(entry):
        return state, suppressed(state.advocate_id, entry, Reason.DUPLICATE)
    if kind not in kinds:  # a WON the program sends no message for, but nurture
        plan = Plan()
    elif entry.trigger_at < cut:
        plan = suppressed(state.advocate_id, entry, Reason.STALE)
    elif state.profile is None:
        state, plan = replace(state, pending=(*state.pending, entry)), Plan()
    else:
        state, plan = _admit(state, state.profile, entry, program, to_ms(now))
    if nurture:
        state, scheduled = _schedule_nurture(state, entry, program, cut)
        plan += scheduled
    return state, plan


def on_profile(
    state: State, profile: AdvocateProfile, program: ProgramDocument, now: datetime
) -> tuple[State, Plan]:
    """Keeps the profile's essentials; an opt-out sticks; held messages go out now. After an
    erasure, a profile enrols the advocate again (see `state`)."""
    _check(state, profile.advocate_id)
    essentials = Profile(profile.program_id, profile.email, profile.display_name, profile.locale)
    state = replace(state, profile=essentials, erased_at=None)
    if profile.opted_out:
        return _opt_out(state, to_ms(profile.updated_at))
    return on_tick(state, program, now)


def on_unsubscribe(state: State, at: datetime) -> tuple[State, Plan]:
    """The advocate used an unsubscribe link at `at`: nothing more, ever (sticky)."""
    return _opt_out(state, to_ms(at))


def on_share(state: State, share: ShareEvent) -> tuple[State, Plan]:
    """The advocate shared again: pending nurture of referrals won before the share is moot."""
    _check(state, share.advocate_id)
    at = to_ms(share.occurred_at)
    state = replace(state, last_share_at=max(at, state.last_share_at or at))
    moot = [e for e in state.pending if e.is_nurture and e.won_at is not None and e.won_at < at]
    if not moot:
        return state, Plan()
    plan = sum((suppressed(state.advocate_id, e, Reason.SUPERSEDED_BY_SHARE) for e in moot), Plan())
    return replace(state, pending=tuple(e for e in state.pending if e not in moot)), plan


def on_tick(state: State, program: ProgramDocument, now: datetime) -> tuple[State, Plan]:
    """Due nurture steps, deferred ones the rate limit now has room for, and held messages."""
    if state.opted_out:
        return state, Plan()
    state, cut = _housekeep(state, program, to_ms(now))
    plan = Plan()
    entries = sorted(state.pending, key=_priority)
    state = replace(state, pending=())
    for entry in entries:
        state, released = _release(state, entry, program, to_ms(now), cut)
        plan += released
    return state, plan


def on_delivered(state: State, notification_id: str) -> State:
    """A channel accepted the message: it is no longer resent after a crash."""
    return _settle(state, notification_id)


def on_dead_lettered(state: State, notification_id: str) -> State:
    """Delivery kept failing and the message went to the dead-letter topic: stop resending."""
    return _settle(state, notification_id)


def unsent(state: State, program: ProgramDocument, now: datetime) -> tuple[Message, ...]:
    """Messages planned but not confirmed delivered: to send again after a failure or a restart,
    with the same notification_id, so the receiver can drop what it already has. Staleness is
    not checked here: it decides whether a message is planned, and a planned message waits for
    its delivery (up to the adapter's delivery deadline) however old its trigger gets."""
    to_sales = leads.unsent(state)  # whatever the opt-out
    if state.opted_out or state.profile is None:
        return to_sales
    profile = state.profile
    return to_sales + tuple(
        build_message(state.advocate_id, profile, entry, program) for entry in state.outbox
    )


def next_wakeup(state: State, program: ProgramDocument) -> datetime | None:
    """The earliest time a tick may plan something (None: only a new input can).

    Ticking earlier is harmless; this is for the adapter's timer index, so that a million
    advocates need not be ticked every second.
    """
    due = [entry.trigger_at for entry in state.pending if entry.is_nurture]
    if state.opted_out or state.profile is None or not due:
        return None
    limit = program.notifications.rate_limit.max_per_day
    room_at = sorted(state.sends)[-limit] + DAY_MS if len(state.sends) >= limit else 0
    return from_ms(max(min(due), room_at))


def cutoff(program: ProgramDocument, now: int) -> int:
    """Triggers before this (epoch ms) are stale."""
    return now - program.notifications.staleness_days * DAY_MS


# --- steps -------------------------------------------------------------------------------------


def _housekeep(state: State, program: ProgramDocument, now: int) -> tuple[State, int]:
    cut = cutoff(program, now)
    return state.forget_before(cut, now), cut


def _admit(
    state: State, profile: Profile, entry: Pending, program: ProgramDocument, now: int
) -> tuple[State, Plan]:
    """Plans `entry` for delivery now if a channel and the rate limit allow."""
    if not channels_for(profile, program):
        return state.with_decided(entry), suppressed(state.advocate_id, entry, Reason.NO_CHANNEL)
    if state.sends_near(now) >= program.notifications.rate_limit.max_per_day:
        if entry.is_nurture:
            return replace(state, pending=(*state.pending, entry)), Plan()
        return state.with_decided(entry), suppressed(state.advocate_id, entry, Reason.RATE_LIMITED)
    message = build_message(state.advocate_id, profile, entry, program)
    state = replace(
        state,
        messaged=state.decided(entry),
        outbox=(*state.outbox, entry),
        sends=(*state.sends, now),
    )
    return state, Plan(messages=(message,))


def _release(
    state: State, entry: Pending, program: ProgramDocument, now: int, cut: int
) -> tuple[State, Plan]:
    """A pending entry: dropped if stale, kept if not due or no profile yet, else admitted."""
    if entry.trigger_at < cut:
        # A pending thank-you was only ever waiting for the profile; a nurture step was waiting
        # for its time or for room under the rate limit.
        waited_for_profile = state.profile is None or not entry.is_nurture
        return state, suppressed(
            state.advocate_id, entry, Reason.NO_PROFILE if waited_for_profile else Reason.STALE
        )
    if state.profile is None or (entry.is_nurture and entry.trigger_at > now):
        return replace(state, pending=(*state.pending, entry)), Plan()
    return _admit(state, state.profile, entry, program, now)


def _schedule_nurture(
    state: State, won: Pending, program: ProgramDocument, cut: int
) -> tuple[State, Plan]:
    plan = Plan()
    scheduled: list[Pending] = []  # added to the state at once (steps never repeat a message)
    for step, days in enumerate(program.notifications.nurture_days, start=1):
        at = won.trigger_at + days * DAY_MS
        entry = Pending(won.referral_id, MessageKind.NURTURE, step, at, won_at=won.trigger_at)
        if state.knows(entry):
            continue
        if state.last_share_at is not None and state.last_share_at > won.trigger_at:
            plan += suppressed(state.advocate_id, entry, Reason.SUPERSEDED_BY_SHARE)
        elif entry.trigger_at < cut:
            plan += suppressed(state.advocate_id, entry, Reason.STALE)
        else:
            scheduled.append(entry)
    if scheduled:
        state = replace(state, pending=(*state.pending, *scheduled))
    return state, plan


def _opt_out(state: State, at: int) -> tuple[State, Plan]:
    """Sticky: the earliest opt-out time is kept; waiting messages are dropped, none resent."""
    if state.opted_out:
        return state, Plan()
    plan = sum(
        (suppressed(state.advocate_id, entry, Reason.OPTED_OUT) for entry in state.pending), Plan()
    )
    # Nothing will be planned again: keep only who the advocate is and that they opted out (and
    # the leads for sales, which the opt-out does not concern).
    return State(state.advocate_id, state.profile, opted_out_at=at, leads=state.leads), plan


def _settle(state: State, notification_id: str) -> State:
    state = leads.settle(state, notification_id)
    outbox = tuple(
        e for e in state.outbox if e.notification_id(state.advocate_id) != notification_id
    )
    return replace(state, outbox=outbox)


def _facts(status: ReferralStatusChanged) -> Facts:
    return Facts(
        status=status.status.value,
        amount_minor=status.amount_minor,
        currency=status.currency,
        reward_type=status.reward_type,
        payout_id=status.payout_id,
        reason=status.reason,
        period_referrals=status.period_referrals,
    )


def _priority(entry: Pending) -> tuple[bool, int, int, int, str]:
    """Thank-yous before nurture; then oldest trigger first."""
    return (entry.is_nurture, entry.trigger_at, _ORDER[entry.kind], entry.step, entry.referral_id)


def _check(state: State, advocate_id: str) -> None:
    if advocate_id != state.advocate_id:
        raise ValueError(f"input for advocate {advocate_id!r} given to {state.advocate_id!r}")
