"""Erasing an advocate (GDPR): what the notifications state keeps, and what it cancels.

A tombstone for the advocate on the advocates topic erases the person. The state's only
personal data is the profile (address, name, locale); it is dropped. Every message not yet out
is cancelled: pending ones (nurture steps, thank-yous held for a profile) and planned ones not
yet confirmed delivered (the outbox), each reported as suppressed ADVOCATE_ERASED so the adapter
counts them and settles their outbox entries and retry timers. What stays names no person and
keeps the rules working: the advocate_id, the bits of messages already decided (a
notification_id is never reused, even after a re-enrolment), the sends of the last day (the
rate limit), the opt-out (sticky: a re-enrolled advocate who opted out stays out), and
`erased_at`, which makes later statuses ADVOCATE_ERASED instead of waiting for a profile.

Erasing again changes nothing (the first `erased_at` is kept).
"""

from __future__ import annotations

from referrals.platform.evolve import replace
from services.notifications.domain.messages import Plan, Reason, suppressed
from services.notifications.domain.state import State


def on_erased(state: State, at: int) -> tuple[State, Plan]:
    """The advocate was erased at `at` (epoch ms): the profile and every waiting message go."""
    waiting = (*state.outbox, *state.pending)
    plan = sum(
        (suppressed(state.advocate_id, entry, Reason.ADVOCATE_ERASED) for entry in waiting), Plan()
    )
    erased_at = state.erased_at if state.erased_at is not None else at
    return replace(state, profile=None, pending=(), outbox=(), erased_at=erased_at), plan


def cancelled_outbox(state: State) -> tuple[str, ...]:
    """The notification_ids of the planned, unconfirmed messages an erasure cancels."""
    return tuple(entry.notification_id(state.advocate_id) for entry in state.outbox)
