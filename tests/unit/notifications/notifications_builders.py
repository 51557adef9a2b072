"""Builders shared by the notifications core's unit tests (a plain module: no fixtures)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from referrals.contract.records import (
    AdvocateProfile,
    Channel,
    MatchedBy,
    ReferralStatus,
    ReferralStatusChanged,
    ShareEvent,
)
from referrals.programs.document import validate
from referrals.programs.model import ProgramDocument
from services.notifications.adapters.codec import STATES
from services.notifications.domain.messages import Message, Plan, Reason
from services.notifications.domain.plan import on_profile
from services.notifications.domain.state import State, new_state

PROGRAM_ID = "acme-b2b"
ADVOCATE = "adv-1"
NOW = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)
DAY = timedelta(days=1)
HOUR = timedelta(hours=1)


def stored(state: State) -> State:
    """What the adapter's store gives back for `state` (a restart): encode, then decode."""
    return STATES.decode(STATES.encode(state))


TIERS = [
    {"from_referral": 1, "amount": "50.00", "reward_type": "GIFT_CARD"},
    {"from_referral": 3, "amount": "75.00", "reward_type": "GIFT_CARD"},
    {"from_referral": 6, "percent": "5", "reward_type": "CHECK"},
]


def program(**notifications: Any) -> ProgramDocument:
    """The program document as marketing would write it, validated like `program put` does."""
    return validate(
        {
            "program_id": PROGRAM_ID,
            "currency": "USD",
            "rewards": {"tiers": TIERS},
            "notifications": notifications,
        }
    )


def status(
    referral: str,
    kind: ReferralStatus,
    at: datetime = NOW,
    *,
    status_id: str | None = None,
    **extra: Any,
) -> ReferralStatusChanged:
    return ReferralStatusChanged(
        status_id=status_id or f"st-{referral}-{kind.value}-{at.isoformat()}",
        referral_id=referral,
        program_id=PROGRAM_ID,
        advocate_id=ADVOCATE,
        prospect_id=f"prospect-{referral}",
        channel=Channel.EMAIL,
        matched_by=MatchedBy.CODE,
        status=kind,
        config_version=1,
        occurred_at=at,
        **extra,
    )


def rewarded(referral: str, at: datetime = NOW, n: int | None = 1) -> ReferralStatusChanged:
    return status(
        referral,
        ReferralStatus.REWARDED,
        at,
        payout_id=f"po-{referral}",
        amount_minor=5_000,
        currency="USD",
        reward_type="GIFT_CARD",
        tier=1,
        period_referrals=n,
    )


def profile(
    *,
    opted_out: bool = False,
    locale: str | None = None,
    email: str = "alex@example.com",
    at: datetime = NOW,
) -> AdvocateProfile:
    return AdvocateProfile(
        program_id=PROGRAM_ID,
        advocate_id=ADVOCATE,
        email=email,
        display_name="Alex Doe",
        email_sha256="0" * 64,
        opted_out=opted_out,
        tax_form_on_file=False,
        updated_at=at,
        locale=locale,
    )


def share(at: datetime) -> ShareEvent:
    return ShareEvent(
        event_id=f"sh-{at.isoformat()}",
        program_id=PROGRAM_ID,
        advocate_id=ADVOCATE,
        channel=Channel.SOCIAL,
        referral_code="ALEX-42",
        occurred_at=at,
    )


def known_advocate(doc: ProgramDocument | None = None, **profile_changes: Any) -> State:
    """An advocate whose profile has arrived (and who has had no messages yet)."""
    state, plan = on_profile(new_state(ADVOCATE), profile(**profile_changes), doc or program(), NOW)
    assert plan == Plan()
    return state


def kinds(plan: Plan) -> list[str]:
    return [f"{m.kind.value}:{m.step}" for m in plan.messages]


def reasons(plan: Plan) -> list[Reason]:
    return [s.reason for s in plan.suppressed]


def only(plan: Plan) -> Message:
    assert len(plan.messages) == 1, plan
    return plan.messages[0]
