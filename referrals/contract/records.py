"""The contract's records as typed, immutable Python objects (standard library only).

These are what service cores see; Avro stays at the edge (`referrals.contract.avro`). Field
names equal the Avro field names in `schemas/`, enum values equal the Avro symbols, timestamps
are aware UTC datetimes and money is integer minor units."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum


class Channel(StrEnum):
    EMAIL = "EMAIL"
    SOCIAL = "SOCIAL"
    LEAD_FORM = "LEAD_FORM"
    VERBAL = "VERBAL"
    SHARE_URL = "SHARE_URL"
    PRINT_CARD = "PRINT_CARD"


class DealStage(StrEnum):
    OPEN = "OPEN"
    QUALIFIED = "QUALIFIED"
    WON = "WON"
    LOST = "LOST"
    REVERSED = "REVERSED"


class PayoutStatus(StrEnum):
    PAID = "PAID"
    FAILED = "FAILED"


class MatchedBy(StrEnum):
    CODE = "CODE"
    EMAIL = "EMAIL"
    DECLARED = "DECLARED"


class ReferralStatus(StrEnum):
    LEAD = "LEAD"
    IN_PROGRESS = "IN_PROGRESS"
    WON = "WON"
    REWARD_PENDING = "REWARD_PENDING"
    REWARD_HELD = "REWARD_HELD"
    REWARDED = "REWARDED"
    PAID = "PAID"
    PAYOUT_FAILED = "PAYOUT_FAILED"
    LOST = "LOST"
    REVERSED = "REVERSED"
    REJECTED = "REJECTED"


class RewardAction(StrEnum):
    APPROVE = "APPROVE"
    RETRY = "RETRY"
    DENY = "DENY"


class PayoutKind(StrEnum):
    PAYOUT = "PAYOUT"
    CLAWBACK = "CLAWBACK"


class Recipient(StrEnum):
    ADVOCATE = "ADVOCATE"
    FRIEND = "FRIEND"


class CommandOutcome(StrEnum):
    APPLIED = "APPLIED"
    REFUSED = "REFUSED"


class RewardType(StrEnum):
    GIFT_CARD = "GIFT_CARD"
    CHECK = "CHECK"
    BILL_CREDIT = "BILL_CREDIT"
    MERCHANDISE = "MERCHANDISE"


@dataclass(frozen=True, slots=True)
class AdvocateProfile:
    program_id: str
    advocate_id: str
    email: str
    display_name: str
    email_sha256: str
    opted_out: bool
    tax_form_on_file: bool
    updated_at: datetime
    owner_rep_id: str | None = None
    locale: str | None = None


@dataclass(frozen=True, slots=True)
class ShareEvent:
    event_id: str
    program_id: str
    advocate_id: str
    channel: Channel
    referral_code: str
    occurred_at: datetime
    prospect_email_sha256: str | None = None


@dataclass(frozen=True, slots=True)
class ConversionEvent:
    event_id: str
    program_id: str
    prospect_id: str
    occurred_at: datetime
    referral_code: str | None = None
    prospect_email_sha256: str | None = None
    declared_advocate_id: str | None = None


@dataclass(frozen=True, slots=True)
class DealEvent:
    event_id: str
    program_id: str
    deal_id: str
    prospect_id: str
    stage: DealStage
    occurred_at: datetime
    amount_minor: int | None = None
    currency: str | None = None
    declared_advocate_id: str | None = None


@dataclass(frozen=True, slots=True)
class PayoutResult:
    payout_id: str
    attempt: int
    status: PayoutStatus
    occurred_at: datetime
    reason: str | None = None


@dataclass(frozen=True, slots=True)
class ProgramConfig:
    program_id: str
    version: int
    document: str
    document_sha256: str
    published_at: datetime
    published_by: str | None = None


@dataclass(frozen=True, slots=True)
class ReferralStatusChanged:
    status_id: str
    referral_id: str
    program_id: str
    advocate_id: str
    prospect_id: str
    channel: Channel
    matched_by: MatchedBy
    status: ReferralStatus
    config_version: int
    occurred_at: datetime
    reason: str | None = None
    payout_id: str | None = None
    owner_rep_id: str | None = None
    deal_id: str | None = None
    amount_minor: int | None = None
    currency: str | None = None
    reward_type: str | None = None
    tier: int | None = None
    period_referrals: int | None = None


@dataclass(frozen=True, slots=True)
class PayoutCommand:
    payout_id: str
    attempt: int
    program_id: str
    advocate_id: str
    referral_id: str
    reward_type: RewardType
    amount_minor: int
    currency: str
    rule_id: str
    tier: int
    config_version: int
    issued_at: datetime
    # v2 (rewards.payouts.v2) only; v1 is written with the v1 schema, which lacks them.
    kind: PayoutKind = PayoutKind.PAYOUT
    recipient: Recipient = Recipient.ADVOCATE
    prospect_id: str | None = None
    original_payout_id: str | None = None


@dataclass(frozen=True, slots=True)
class NotificationSent:
    notification_id: str
    advocate_id: str
    kind: str
    channel: str
    sent_at: datetime
    referral_id: str | None = None


@dataclass(frozen=True, slots=True)
class PayoutOwner:
    """Internal (rewards): the advocate a payout_id belongs to."""

    payout_id: str
    advocate_id: str
    program_id: str
    referral_id: str
    created_at: datetime


@dataclass(frozen=True, slots=True)
class RewardCommand:
    """Internal (rewards): an operator's approve or retry of one payout."""

    command_id: str
    payout_id: str
    action: RewardAction
    requested_by: str
    requested_at: datetime
    advocate_id: str | None = None
    reason: str | None = None


@dataclass(frozen=True, slots=True)
class OperatorCommand:
    """operator.commands.v1: an operator's action, the audit log (who, what, when, why)."""

    command_id: str
    action: RewardAction
    target_id: str
    by: str
    issued_at: datetime
    reason: str | None = None
    # Who the publisher authenticated as (`kafka:<SASL user>`, `api-token:<name>`); None
    # without authentication. `by` is what the operator says.
    principal: str | None = None


@dataclass(frozen=True, slots=True)
class CommandResult:
    """operator.command-results.v1: the rewards service's answer to one OperatorCommand."""

    command_id: str
    action: RewardAction
    target_id: str
    outcome: CommandOutcome
    occurred_at: datetime
    reason: str | None = None
    state: str | None = None


@dataclass(frozen=True, slots=True)
class UnsubscribeRequest:
    """Internal (notifications): an advocate used a signed unsubscribe link."""

    request_id: str
    advocate_id: str
    program_id: str
    method: str
    token_issued_at: datetime
    requested_at: datetime


Record = (
    AdvocateProfile
    | ShareEvent
    | ConversionEvent
    | DealEvent
    | PayoutResult
    | ProgramConfig
    | ReferralStatusChanged
    | PayoutCommand
    | NotificationSent
    | PayoutOwner
    | RewardCommand
    | UnsubscribeRequest
    | OperatorCommand
    | CommandResult
)

# Record name (the Avro record name without namespace) -> Python type.
RECORD_TYPES: dict[str, type[Record]] = {
    cls.__name__: cls
    for cls in (
        AdvocateProfile,
        ShareEvent,
        ConversionEvent,
        DealEvent,
        PayoutResult,
        ProgramConfig,
        ReferralStatusChanged,
        PayoutCommand,
        NotificationSent,
        PayoutOwner,
        RewardCommand,
        UnsubscribeRequest,
        OperatorCommand,
        CommandResult,
    )
}
