"""What the planner returns: messages to deliver, and what it suppressed and why.

A `Message` carries everything its delivery needs except the two URLs only the adapter can make
(the signed unsubscribe link and the advocate's referral link), which the adapter passes to
`render` (`adapters.rendering`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from types import MappingProxyType

from referrals.contract.records import NotificationSent, ReferralStatus
from referrals.platform.money import to_major
from referrals.programs.model import MessageKind, NotificationChannel, ProgramDocument, Tier
from services.notifications.domain.state import Facts, Pending, Profile, from_ms

# The contract carries no name for the referred prospect; the built-in templates start sentences
# with it ("{{ prospect_label }} signed up ..."). Programs with a locale of their own write their
# own wording instead of using it.
PROSPECT_LABEL = "Your friend"
_NURTURE_FACTS = Facts(status=ReferralStatus.WON.value)


class Reason(StrEnum):
    """Why a message was not sent (the adapter counts suppressions by reason)."""

    OPTED_OUT = "OPTED_OUT"
    RATE_LIMITED = "RATE_LIMITED"  # a thank-you over the advocate's daily limit (dropped)
    STALE = "STALE"  # its trigger is older than the program's staleness limit
    DUPLICATE = "DUPLICATE"  # a repeated status, or another status for the same message
    NO_CHANNEL = "NO_CHANNEL"  # the program has no channel this advocate can be reached on
    SUPERSEDED_BY_SHARE = "SUPERSEDED_BY_SHARE"  # a nurture step after the advocate shared again
    NO_PROFILE = "NO_PROFILE"  # went stale waiting for the advocate's profile
    ADVOCATE_ERASED = "ADVOCATE_ERASED"  # the advocate was erased: cancelled, or not planned


@dataclass(frozen=True, slots=True)
class Suppressed:
    notification_id: str
    referral_id: str
    kind: MessageKind
    step: int
    reason: Reason


@dataclass(frozen=True, slots=True)
class Message:
    notification_id: str
    advocate_id: str
    referral_id: str
    kind: MessageKind
    step: int
    channels: tuple[NotificationChannel, ...]
    locale: str
    email: str
    display_name: str
    trigger_time: datetime  # the status's occurred_at, or the nurture step's due time
    context: Mapping[str, object]  # template variables but unsubscribe_url and refer_url


@dataclass(frozen=True, slots=True)
class Plan:
    messages: tuple[Message, ...] = ()
    suppressed: tuple[Suppressed, ...] = ()

    def __add__(self, other: Plan) -> Plan:
        return Plan(self.messages + other.messages, self.suppressed + other.suppressed)


@dataclass(frozen=True, slots=True)
class RenderedMessage:
    subject: str
    text: str
    html: str | None  # None: the template has no HTML part, send plain text only


def suppressed(advocate_id: str, entry: Pending, reason: Reason) -> Plan:
    """A plan holding only the suppression of `entry` (a message to `advocate_id`)."""
    nid = entry.notification_id(advocate_id)
    return Plan(suppressed=(Suppressed(nid, entry.referral_id, entry.kind, entry.step, reason),))


def channels_for(profile: Profile, program: ProgramDocument) -> tuple[NotificationChannel, ...]:
    """The program's channels this advocate can be reached on (email needs an address)."""
    return tuple(
        channel
        for channel in program.notifications.channels
        if channel is not NotificationChannel.EMAIL or profile.email.strip()
    )


def build_message(
    advocate_id: str, profile: Profile, entry: Pending, program: ProgramDocument
) -> Message:
    return Message(
        notification_id=entry.notification_id(advocate_id),
        advocate_id=advocate_id,
        referral_id=entry.referral_id,
        kind=entry.kind,
        step=entry.step,
        channels=channels_for(profile, program),
        locale=profile.locale or program.notifications.default_locale,
        email=profile.email,
        display_name=profile.display_name,
        trigger_time=from_ms(entry.trigger_at),
        context=MappingProxyType(template_context(profile, entry, program)),
    )


def template_context(
    profile: Profile, entry: Pending, program: ProgramDocument
) -> dict[str, object]:
    """The variables of the templates' sample context (`referrals.programs.templating`) but the
    two URLs; "" where not applicable."""
    facts = entry.facts or _NURTURE_FACTS
    to_go, next_amount = next_tier(program, facts.period_referrals)
    return {
        "advocate_name": profile.display_name,
        "program_id": program.program_id,
        "referral_id": entry.referral_id,
        "prospect_label": PROSPECT_LABEL,
        "kind": entry.kind.value,
        "status": facts.status,
        "reward_amount": _money(facts.amount_minor, facts.currency or program.currency),
        "reward_type": facts.reward_type or "",
        "payout_id": facts.payout_id or "",
        "referrals_to_next_tier": to_go,
        "next_tier_amount": next_amount,
        "reason": facts.reason or "",
    }


def next_tier(program: ProgramDocument, n: int | None) -> tuple[int | None, str | None]:
    """(successful referrals still needed, the next tier's reward) after the n-th referral.

    The next tier is the first whose `from_referral` exceeds n; (None, None) on the last tier,
    or when the status did not say how many referrals the period holds.
    """
    tier = None if n is None else program.rewards.next_tier(n)
    if tier is None or n is None:
        return None, None
    return tier.from_referral - n, _tier_reward(tier, program.currency)


def _tier_reward(tier: Tier, currency: str) -> str:
    if tier.percent is not None:
        return f"{tier.percent.normalize():f}% of the deal"
    return _money(tier.amount_minor, currency)


def _money(amount_minor: int | None, currency: str) -> str:
    """'50.00 USD'; '' when the status carries no amount."""
    return "" if amount_minor is None else f"{to_major(amount_minor, currency)} {currency}"


def sent_record(
    message: Message, channel: NotificationChannel, sent_at: datetime
) -> NotificationSent:
    """The `notifications.sent.v1` record for a delivery accepted on `channel`."""
    return NotificationSent(
        notification_id=message.notification_id,
        advocate_id=message.advocate_id,
        kind=message.kind.value,
        channel=channel.value,
        sent_at=sent_at,
        referral_id=message.referral_id,
    )
