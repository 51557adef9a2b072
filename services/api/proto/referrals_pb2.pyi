import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Channel(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    CHANNEL_UNSPECIFIED: _ClassVar[Channel]
    CHANNEL_EMAIL: _ClassVar[Channel]
    CHANNEL_SOCIAL: _ClassVar[Channel]
    CHANNEL_LEAD_FORM: _ClassVar[Channel]
    CHANNEL_VERBAL: _ClassVar[Channel]
    CHANNEL_SHARE_URL: _ClassVar[Channel]
    CHANNEL_PRINT_CARD: _ClassVar[Channel]

class DealStage(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    DEAL_STAGE_UNSPECIFIED: _ClassVar[DealStage]
    DEAL_STAGE_OPEN: _ClassVar[DealStage]
    DEAL_STAGE_QUALIFIED: _ClassVar[DealStage]
    DEAL_STAGE_WON: _ClassVar[DealStage]
    DEAL_STAGE_LOST: _ClassVar[DealStage]
    DEAL_STAGE_REVERSED: _ClassVar[DealStage]

class PayoutStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    PAYOUT_STATUS_UNSPECIFIED: _ClassVar[PayoutStatus]
    PAYOUT_STATUS_PAID: _ClassVar[PayoutStatus]
    PAYOUT_STATUS_FAILED: _ClassVar[PayoutStatus]

class MatchedBy(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    MATCHED_BY_UNSPECIFIED: _ClassVar[MatchedBy]
    MATCHED_BY_CODE: _ClassVar[MatchedBy]
    MATCHED_BY_EMAIL: _ClassVar[MatchedBy]
    MATCHED_BY_DECLARED: _ClassVar[MatchedBy]

class ReferralStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    REFERRAL_STATUS_UNSPECIFIED: _ClassVar[ReferralStatus]
    REFERRAL_STATUS_LEAD: _ClassVar[ReferralStatus]
    REFERRAL_STATUS_IN_PROGRESS: _ClassVar[ReferralStatus]
    REFERRAL_STATUS_WON: _ClassVar[ReferralStatus]
    REFERRAL_STATUS_REWARD_PENDING: _ClassVar[ReferralStatus]
    REFERRAL_STATUS_REWARD_HELD: _ClassVar[ReferralStatus]
    REFERRAL_STATUS_REWARDED: _ClassVar[ReferralStatus]
    REFERRAL_STATUS_PAID: _ClassVar[ReferralStatus]
    REFERRAL_STATUS_PAYOUT_FAILED: _ClassVar[ReferralStatus]
    REFERRAL_STATUS_LOST: _ClassVar[ReferralStatus]
    REFERRAL_STATUS_REVERSED: _ClassVar[ReferralStatus]
    REFERRAL_STATUS_REJECTED: _ClassVar[ReferralStatus]

class RewardType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    REWARD_TYPE_UNSPECIFIED: _ClassVar[RewardType]
    REWARD_TYPE_GIFT_CARD: _ClassVar[RewardType]
    REWARD_TYPE_CHECK: _ClassVar[RewardType]
    REWARD_TYPE_BILL_CREDIT: _ClassVar[RewardType]
    REWARD_TYPE_MERCHANDISE: _ClassVar[RewardType]
CHANNEL_UNSPECIFIED: Channel
CHANNEL_EMAIL: Channel
CHANNEL_SOCIAL: Channel
CHANNEL_LEAD_FORM: Channel
CHANNEL_VERBAL: Channel
CHANNEL_SHARE_URL: Channel
CHANNEL_PRINT_CARD: Channel
DEAL_STAGE_UNSPECIFIED: DealStage
DEAL_STAGE_OPEN: DealStage
DEAL_STAGE_QUALIFIED: DealStage
DEAL_STAGE_WON: DealStage
DEAL_STAGE_LOST: DealStage
DEAL_STAGE_REVERSED: DealStage
PAYOUT_STATUS_UNSPECIFIED: PayoutStatus
PAYOUT_STATUS_PAID: PayoutStatus
PAYOUT_STATUS_FAILED: PayoutStatus
MATCHED_BY_UNSPECIFIED: MatchedBy
MATCHED_BY_CODE: MatchedBy
MATCHED_BY_EMAIL: MatchedBy
MATCHED_BY_DECLARED: MatchedBy
REFERRAL_STATUS_UNSPECIFIED: ReferralStatus
REFERRAL_STATUS_LEAD: ReferralStatus
REFERRAL_STATUS_IN_PROGRESS: ReferralStatus
REFERRAL_STATUS_WON: ReferralStatus
REFERRAL_STATUS_REWARD_PENDING: ReferralStatus
REFERRAL_STATUS_REWARD_HELD: ReferralStatus
REFERRAL_STATUS_REWARDED: ReferralStatus
REFERRAL_STATUS_PAID: ReferralStatus
REFERRAL_STATUS_PAYOUT_FAILED: ReferralStatus
REFERRAL_STATUS_LOST: ReferralStatus
REFERRAL_STATUS_REVERSED: ReferralStatus
REFERRAL_STATUS_REJECTED: ReferralStatus
REWARD_TYPE_UNSPECIFIED: RewardType
REWARD_TYPE_GIFT_CARD: RewardType
REWARD_TYPE_CHECK: RewardType
REWARD_TYPE_BILL_CREDIT: RewardType
REWARD_TYPE_MERCHANDISE: RewardType

class AdvocateProfile(_message.Message):
    __slots__ = ("program_id", "advocate_id", "email", "display_name", "owner_rep_id", "email_sha256", "opted_out", "tax_form_on_file", "locale", "updated_at")
    PROGRAM_ID_FIELD_NUMBER: _ClassVar[int]
    ADVOCATE_ID_FIELD_NUMBER: _ClassVar[int]
    EMAIL_FIELD_NUMBER: _ClassVar[int]
    DISPLAY_NAME_FIELD_NUMBER: _ClassVar[int]
    OWNER_REP_ID_FIELD_NUMBER: _ClassVar[int]
    EMAIL_SHA256_FIELD_NUMBER: _ClassVar[int]
    OPTED_OUT_FIELD_NUMBER: _ClassVar[int]
    TAX_FORM_ON_FILE_FIELD_NUMBER: _ClassVar[int]
    LOCALE_FIELD_NUMBER: _ClassVar[int]
    UPDATED_AT_FIELD_NUMBER: _ClassVar[int]
    program_id: str
    advocate_id: str
    email: str
    display_name: str
    owner_rep_id: str
    email_sha256: str
    opted_out: bool
    tax_form_on_file: bool
    locale: str
    updated_at: _timestamp_pb2.Timestamp
    def __init__(self, program_id: _Optional[str] = ..., advocate_id: _Optional[str] = ..., email: _Optional[str] = ..., display_name: _Optional[str] = ..., owner_rep_id: _Optional[str] = ..., email_sha256: _Optional[str] = ..., opted_out: _Optional[bool] = ..., tax_form_on_file: _Optional[bool] = ..., locale: _Optional[str] = ..., updated_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class ShareEvent(_message.Message):
    __slots__ = ("event_id", "program_id", "advocate_id", "channel", "referral_code", "prospect_email_sha256", "occurred_at")
    EVENT_ID_FIELD_NUMBER: _ClassVar[int]
    PROGRAM_ID_FIELD_NUMBER: _ClassVar[int]
    ADVOCATE_ID_FIELD_NUMBER: _ClassVar[int]
    CHANNEL_FIELD_NUMBER: _ClassVar[int]
    REFERRAL_CODE_FIELD_NUMBER: _ClassVar[int]
    PROSPECT_EMAIL_SHA256_FIELD_NUMBER: _ClassVar[int]
    OCCURRED_AT_FIELD_NUMBER: _ClassVar[int]
    event_id: str
    program_id: str
    advocate_id: str
    channel: Channel
    referral_code: str
    prospect_email_sha256: str
    occurred_at: _timestamp_pb2.Timestamp
    def __init__(self, event_id: _Optional[str] = ..., program_id: _Optional[str] = ..., advocate_id: _Optional[str] = ..., channel: _Optional[_Union[Channel, str]] = ..., referral_code: _Optional[str] = ..., prospect_email_sha256: _Optional[str] = ..., occurred_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class ConversionEvent(_message.Message):
    __slots__ = ("event_id", "program_id", "prospect_id", "referral_code", "prospect_email_sha256", "declared_advocate_id", "occurred_at")
    EVENT_ID_FIELD_NUMBER: _ClassVar[int]
    PROGRAM_ID_FIELD_NUMBER: _ClassVar[int]
    PROSPECT_ID_FIELD_NUMBER: _ClassVar[int]
    REFERRAL_CODE_FIELD_NUMBER: _ClassVar[int]
    PROSPECT_EMAIL_SHA256_FIELD_NUMBER: _ClassVar[int]
    DECLARED_ADVOCATE_ID_FIELD_NUMBER: _ClassVar[int]
    OCCURRED_AT_FIELD_NUMBER: _ClassVar[int]
    event_id: str
    program_id: str
    prospect_id: str
    referral_code: str
    prospect_email_sha256: str
    declared_advocate_id: str
    occurred_at: _timestamp_pb2.Timestamp
    def __init__(self, event_id: _Optional[str] = ..., program_id: _Optional[str] = ..., prospect_id: _Optional[str] = ..., referral_code: _Optional[str] = ..., prospect_email_sha256: _Optional[str] = ..., declared_advocate_id: _Optional[str] = ..., occurred_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class DealEvent(_message.Message):
    __slots__ = ("event_id", "program_id", "deal_id", "prospect_id", "stage", "amount_minor", "currency", "declared_advocate_id", "occurred_at")
    EVENT_ID_FIELD_NUMBER: _ClassVar[int]
    PROGRAM_ID_FIELD_NUMBER: _ClassVar[int]
    DEAL_ID_FIELD_NUMBER: _ClassVar[int]
    PROSPECT_ID_FIELD_NUMBER: _ClassVar[int]
    STAGE_FIELD_NUMBER: _ClassVar[int]
    AMOUNT_MINOR_FIELD_NUMBER: _ClassVar[int]
    CURRENCY_FIELD_NUMBER: _ClassVar[int]
    DECLARED_ADVOCATE_ID_FIELD_NUMBER: _ClassVar[int]
    OCCURRED_AT_FIELD_NUMBER: _ClassVar[int]
    event_id: str
    program_id: str
    deal_id: str
    prospect_id: str
    stage: DealStage
    amount_minor: int
    currency: str
    declared_advocate_id: str
    occurred_at: _timestamp_pb2.Timestamp
    def __init__(self, event_id: _Optional[str] = ..., program_id: _Optional[str] = ..., deal_id: _Optional[str] = ..., prospect_id: _Optional[str] = ..., stage: _Optional[_Union[DealStage, str]] = ..., amount_minor: _Optional[int] = ..., currency: _Optional[str] = ..., declared_advocate_id: _Optional[str] = ..., occurred_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class PayoutResult(_message.Message):
    __slots__ = ("payout_id", "attempt", "status", "reason", "occurred_at")
    PAYOUT_ID_FIELD_NUMBER: _ClassVar[int]
    ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    OCCURRED_AT_FIELD_NUMBER: _ClassVar[int]
    payout_id: str
    attempt: int
    status: PayoutStatus
    reason: str
    occurred_at: _timestamp_pb2.Timestamp
    def __init__(self, payout_id: _Optional[str] = ..., attempt: _Optional[int] = ..., status: _Optional[_Union[PayoutStatus, str]] = ..., reason: _Optional[str] = ..., occurred_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class PublishAdvocatesRequest(_message.Message):
    __slots__ = ("advocates",)
    ADVOCATES_FIELD_NUMBER: _ClassVar[int]
    advocates: _containers.RepeatedCompositeFieldContainer[AdvocateProfile]
    def __init__(self, advocates: _Optional[_Iterable[_Union[AdvocateProfile, _Mapping]]] = ...) -> None: ...

class PublishSharesRequest(_message.Message):
    __slots__ = ("shares",)
    SHARES_FIELD_NUMBER: _ClassVar[int]
    shares: _containers.RepeatedCompositeFieldContainer[ShareEvent]
    def __init__(self, shares: _Optional[_Iterable[_Union[ShareEvent, _Mapping]]] = ...) -> None: ...

class PublishConversionsRequest(_message.Message):
    __slots__ = ("conversions",)
    CONVERSIONS_FIELD_NUMBER: _ClassVar[int]
    conversions: _containers.RepeatedCompositeFieldContainer[ConversionEvent]
    def __init__(self, conversions: _Optional[_Iterable[_Union[ConversionEvent, _Mapping]]] = ...) -> None: ...

class PublishDealsRequest(_message.Message):
    __slots__ = ("deals",)
    DEALS_FIELD_NUMBER: _ClassVar[int]
    deals: _containers.RepeatedCompositeFieldContainer[DealEvent]
    def __init__(self, deals: _Optional[_Iterable[_Union[DealEvent, _Mapping]]] = ...) -> None: ...

class PublishPayoutResultsRequest(_message.Message):
    __slots__ = ("results",)
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    results: _containers.RepeatedCompositeFieldContainer[PayoutResult]
    def __init__(self, results: _Optional[_Iterable[_Union[PayoutResult, _Mapping]]] = ...) -> None: ...

class PublishResponse(_message.Message):
    __slots__ = ("accepted",)
    ACCEPTED_FIELD_NUMBER: _ClassVar[int]
    accepted: int
    def __init__(self, accepted: _Optional[int] = ...) -> None: ...

class GetAdvocateRequest(_message.Message):
    __slots__ = ("advocate_id",)
    ADVOCATE_ID_FIELD_NUMBER: _ClassVar[int]
    advocate_id: str
    def __init__(self, advocate_id: _Optional[str] = ...) -> None: ...

class Rewards(_message.Message):
    __slots__ = ("currency", "issued_minor", "paid_minor", "held_minor", "failed_minor")
    CURRENCY_FIELD_NUMBER: _ClassVar[int]
    ISSUED_MINOR_FIELD_NUMBER: _ClassVar[int]
    PAID_MINOR_FIELD_NUMBER: _ClassVar[int]
    HELD_MINOR_FIELD_NUMBER: _ClassVar[int]
    FAILED_MINOR_FIELD_NUMBER: _ClassVar[int]
    currency: str
    issued_minor: int
    paid_minor: int
    held_minor: int
    failed_minor: int
    def __init__(self, currency: _Optional[str] = ..., issued_minor: _Optional[int] = ..., paid_minor: _Optional[int] = ..., held_minor: _Optional[int] = ..., failed_minor: _Optional[int] = ...) -> None: ...

class NextTier(_message.Message):
    __slots__ = ("from_referral", "referrals_to_go", "reward_type", "amount_minor", "percent")
    FROM_REFERRAL_FIELD_NUMBER: _ClassVar[int]
    REFERRALS_TO_GO_FIELD_NUMBER: _ClassVar[int]
    REWARD_TYPE_FIELD_NUMBER: _ClassVar[int]
    AMOUNT_MINOR_FIELD_NUMBER: _ClassVar[int]
    PERCENT_FIELD_NUMBER: _ClassVar[int]
    from_referral: int
    referrals_to_go: int
    reward_type: RewardType
    amount_minor: int
    percent: str
    def __init__(self, from_referral: _Optional[int] = ..., referrals_to_go: _Optional[int] = ..., reward_type: _Optional[_Union[RewardType, str]] = ..., amount_minor: _Optional[int] = ..., percent: _Optional[str] = ...) -> None: ...

class Advocate(_message.Message):
    __slots__ = ("advocate_id", "program_id", "display_name", "erased", "referrals_total", "referrals_won_in_period", "rewards", "next_tier", "updated_at")
    ADVOCATE_ID_FIELD_NUMBER: _ClassVar[int]
    PROGRAM_ID_FIELD_NUMBER: _ClassVar[int]
    DISPLAY_NAME_FIELD_NUMBER: _ClassVar[int]
    ERASED_FIELD_NUMBER: _ClassVar[int]
    REFERRALS_TOTAL_FIELD_NUMBER: _ClassVar[int]
    REFERRALS_WON_IN_PERIOD_FIELD_NUMBER: _ClassVar[int]
    REWARDS_FIELD_NUMBER: _ClassVar[int]
    NEXT_TIER_FIELD_NUMBER: _ClassVar[int]
    UPDATED_AT_FIELD_NUMBER: _ClassVar[int]
    advocate_id: str
    program_id: str
    display_name: str
    erased: bool
    referrals_total: int
    referrals_won_in_period: int
    rewards: _containers.RepeatedCompositeFieldContainer[Rewards]
    next_tier: NextTier
    updated_at: _timestamp_pb2.Timestamp
    def __init__(self, advocate_id: _Optional[str] = ..., program_id: _Optional[str] = ..., display_name: _Optional[str] = ..., erased: _Optional[bool] = ..., referrals_total: _Optional[int] = ..., referrals_won_in_period: _Optional[int] = ..., rewards: _Optional[_Iterable[_Union[Rewards, _Mapping]]] = ..., next_tier: _Optional[_Union[NextTier, _Mapping]] = ..., updated_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class ListReferralsRequest(_message.Message):
    __slots__ = ("advocate_id", "page_size", "page_token")
    ADVOCATE_ID_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    advocate_id: str
    page_size: int
    page_token: str
    def __init__(self, advocate_id: _Optional[str] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class HistoryEntry(_message.Message):
    __slots__ = ("status", "reason", "occurred_at")
    STATUS_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    OCCURRED_AT_FIELD_NUMBER: _ClassVar[int]
    status: ReferralStatus
    reason: str
    occurred_at: _timestamp_pb2.Timestamp
    def __init__(self, status: _Optional[_Union[ReferralStatus, str]] = ..., reason: _Optional[str] = ..., occurred_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class Referral(_message.Message):
    __slots__ = ("referral_id", "program_id", "advocate_id", "prospect_id", "channel", "matched_by", "status", "reason", "explanation", "payout_id", "amount_minor", "currency", "updated_at", "history")
    REFERRAL_ID_FIELD_NUMBER: _ClassVar[int]
    PROGRAM_ID_FIELD_NUMBER: _ClassVar[int]
    ADVOCATE_ID_FIELD_NUMBER: _ClassVar[int]
    PROSPECT_ID_FIELD_NUMBER: _ClassVar[int]
    CHANNEL_FIELD_NUMBER: _ClassVar[int]
    MATCHED_BY_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    EXPLANATION_FIELD_NUMBER: _ClassVar[int]
    PAYOUT_ID_FIELD_NUMBER: _ClassVar[int]
    AMOUNT_MINOR_FIELD_NUMBER: _ClassVar[int]
    CURRENCY_FIELD_NUMBER: _ClassVar[int]
    UPDATED_AT_FIELD_NUMBER: _ClassVar[int]
    HISTORY_FIELD_NUMBER: _ClassVar[int]
    referral_id: str
    program_id: str
    advocate_id: str
    prospect_id: str
    channel: Channel
    matched_by: MatchedBy
    status: ReferralStatus
    reason: str
    explanation: str
    payout_id: str
    amount_minor: int
    currency: str
    updated_at: _timestamp_pb2.Timestamp
    history: _containers.RepeatedCompositeFieldContainer[HistoryEntry]
    def __init__(self, referral_id: _Optional[str] = ..., program_id: _Optional[str] = ..., advocate_id: _Optional[str] = ..., prospect_id: _Optional[str] = ..., channel: _Optional[_Union[Channel, str]] = ..., matched_by: _Optional[_Union[MatchedBy, str]] = ..., status: _Optional[_Union[ReferralStatus, str]] = ..., reason: _Optional[str] = ..., explanation: _Optional[str] = ..., payout_id: _Optional[str] = ..., amount_minor: _Optional[int] = ..., currency: _Optional[str] = ..., updated_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., history: _Optional[_Iterable[_Union[HistoryEntry, _Mapping]]] = ...) -> None: ...

class ListReferralsResponse(_message.Message):
    __slots__ = ("referrals", "next_page_token")
    REFERRALS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    referrals: _containers.RepeatedCompositeFieldContainer[Referral]
    next_page_token: str
    def __init__(self, referrals: _Optional[_Iterable[_Union[Referral, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class WatchReferralsRequest(_message.Message):
    __slots__ = ("advocate_id",)
    ADVOCATE_ID_FIELD_NUMBER: _ClassVar[int]
    advocate_id: str
    def __init__(self, advocate_id: _Optional[str] = ...) -> None: ...

class EraseAdvocateRequest(_message.Message):
    __slots__ = ("advocate_id",)
    ADVOCATE_ID_FIELD_NUMBER: _ClassVar[int]
    advocate_id: str
    def __init__(self, advocate_id: _Optional[str] = ...) -> None: ...

class EraseAdvocateResponse(_message.Message):
    __slots__ = ("advocate_id", "already_erased")
    ADVOCATE_ID_FIELD_NUMBER: _ClassVar[int]
    ALREADY_ERASED_FIELD_NUMBER: _ClassVar[int]
    advocate_id: str
    already_erased: bool
    def __init__(self, advocate_id: _Optional[str] = ..., already_erased: _Optional[bool] = ...) -> None: ...

class Violation(_message.Message):
    __slots__ = ("path", "message")
    PATH_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    path: str
    message: str
    def __init__(self, path: _Optional[str] = ..., message: _Optional[str] = ...) -> None: ...

class ValidateProgramRequest(_message.Message):
    __slots__ = ("document",)
    DOCUMENT_FIELD_NUMBER: _ClassVar[int]
    document: str
    def __init__(self, document: _Optional[str] = ...) -> None: ...

class ValidateProgramResponse(_message.Message):
    __slots__ = ("violations",)
    VIOLATIONS_FIELD_NUMBER: _ClassVar[int]
    violations: _containers.RepeatedCompositeFieldContainer[Violation]
    def __init__(self, violations: _Optional[_Iterable[_Union[Violation, _Mapping]]] = ...) -> None: ...

class PutProgramRequest(_message.Message):
    __slots__ = ("document",)
    DOCUMENT_FIELD_NUMBER: _ClassVar[int]
    document: str
    def __init__(self, document: _Optional[str] = ...) -> None: ...

class PutProgramResponse(_message.Message):
    __slots__ = ("program_id", "version")
    PROGRAM_ID_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    program_id: str
    version: int
    def __init__(self, program_id: _Optional[str] = ..., version: _Optional[int] = ...) -> None: ...

class GetProgramRequest(_message.Message):
    __slots__ = ("program_id",)
    PROGRAM_ID_FIELD_NUMBER: _ClassVar[int]
    program_id: str
    def __init__(self, program_id: _Optional[str] = ...) -> None: ...

class Program(_message.Message):
    __slots__ = ("program_id", "version", "document", "document_sha256", "published_at", "published_by")
    PROGRAM_ID_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    DOCUMENT_FIELD_NUMBER: _ClassVar[int]
    DOCUMENT_SHA256_FIELD_NUMBER: _ClassVar[int]
    PUBLISHED_AT_FIELD_NUMBER: _ClassVar[int]
    PUBLISHED_BY_FIELD_NUMBER: _ClassVar[int]
    program_id: str
    version: int
    document: str
    document_sha256: str
    published_at: _timestamp_pb2.Timestamp
    published_by: str
    def __init__(self, program_id: _Optional[str] = ..., version: _Optional[int] = ..., document: _Optional[str] = ..., document_sha256: _Optional[str] = ..., published_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., published_by: _Optional[str] = ...) -> None: ...

class ListProgramsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListProgramsResponse(_message.Message):
    __slots__ = ("programs",)
    PROGRAMS_FIELD_NUMBER: _ClassVar[int]
    programs: _containers.RepeatedCompositeFieldContainer[Program]
    def __init__(self, programs: _Optional[_Iterable[_Union[Program, _Mapping]]] = ...) -> None: ...

class PayoutCommandRequest(_message.Message):
    __slots__ = ("payout_id", "by", "reason")
    PAYOUT_ID_FIELD_NUMBER: _ClassVar[int]
    BY_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    payout_id: str
    by: str
    reason: str
    def __init__(self, payout_id: _Optional[str] = ..., by: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class CommandResponse(_message.Message):
    __slots__ = ("command_id", "state")
    COMMAND_ID_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    command_id: str
    state: str
    def __init__(self, command_id: _Optional[str] = ..., state: _Optional[str] = ...) -> None: ...

class ReconcileRequest(_message.Message):
    __slots__ = ("program_id", "page_size", "page_token")
    PROGRAM_ID_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    program_id: str
    page_size: int
    page_token: str
    def __init__(self, program_id: _Optional[str] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class Totals(_message.Message):
    __slots__ = ("count", "amount_minor")
    COUNT_FIELD_NUMBER: _ClassVar[int]
    AMOUNT_MINOR_FIELD_NUMBER: _ClassVar[int]
    count: int
    amount_minor: int
    def __init__(self, count: _Optional[int] = ..., amount_minor: _Optional[int] = ...) -> None: ...

class ReconcileLine(_message.Message):
    __slots__ = ("program_id", "currency", "issued", "paid", "failed", "outstanding", "attempts", "clawed_back", "friends_issued", "paid_twice")
    PROGRAM_ID_FIELD_NUMBER: _ClassVar[int]
    CURRENCY_FIELD_NUMBER: _ClassVar[int]
    ISSUED_FIELD_NUMBER: _ClassVar[int]
    PAID_FIELD_NUMBER: _ClassVar[int]
    FAILED_FIELD_NUMBER: _ClassVar[int]
    OUTSTANDING_FIELD_NUMBER: _ClassVar[int]
    ATTEMPTS_FIELD_NUMBER: _ClassVar[int]
    CLAWED_BACK_FIELD_NUMBER: _ClassVar[int]
    FRIENDS_ISSUED_FIELD_NUMBER: _ClassVar[int]
    PAID_TWICE_FIELD_NUMBER: _ClassVar[int]
    program_id: str
    currency: str
    issued: Totals
    paid: Totals
    failed: Totals
    outstanding: Totals
    attempts: int
    clawed_back: Totals
    friends_issued: Totals
    paid_twice: Totals
    def __init__(self, program_id: _Optional[str] = ..., currency: _Optional[str] = ..., issued: _Optional[_Union[Totals, _Mapping]] = ..., paid: _Optional[_Union[Totals, _Mapping]] = ..., failed: _Optional[_Union[Totals, _Mapping]] = ..., outstanding: _Optional[_Union[Totals, _Mapping]] = ..., attempts: _Optional[int] = ..., clawed_back: _Optional[_Union[Totals, _Mapping]] = ..., friends_issued: _Optional[_Union[Totals, _Mapping]] = ..., paid_twice: _Optional[_Union[Totals, _Mapping]] = ...) -> None: ...

class ReconcileError(_message.Message):
    __slots__ = ("payout_id", "attempt", "error", "detail")
    PAYOUT_ID_FIELD_NUMBER: _ClassVar[int]
    ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    DETAIL_FIELD_NUMBER: _ClassVar[int]
    payout_id: str
    attempt: int
    error: str
    detail: str
    def __init__(self, payout_id: _Optional[str] = ..., attempt: _Optional[int] = ..., error: _Optional[str] = ..., detail: _Optional[str] = ...) -> None: ...

class ReconcileResponse(_message.Message):
    __slots__ = ("lines", "errors", "next_page_token")
    LINES_FIELD_NUMBER: _ClassVar[int]
    ERRORS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    lines: _containers.RepeatedCompositeFieldContainer[ReconcileLine]
    errors: _containers.RepeatedCompositeFieldContainer[ReconcileError]
    next_page_token: str
    def __init__(self, lines: _Optional[_Iterable[_Union[ReconcileLine, _Mapping]]] = ..., errors: _Optional[_Iterable[_Union[ReconcileError, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...
