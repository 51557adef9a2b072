"""Per-referral state (one prospect in one program) and what a command returns.

Everything is immutable (frozen, slotted, tuples) and bounded, so the adapter can persist it
compactly and a crash-and-replay reproduces it exactly. Times are epoch milliseconds.

Bounds (per referral; what happens beyond them is in `referral`'s docstring):
    MAX_SEEN event ids, MAX_SOURCES claim-bearing events x MAX_CLAIMANTS advocates each,
    MAX_DEALS deals, MAX_EMAILS prospect email hashes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum

from referrals.contract.records import (
    Channel,
    DealStage,
    MatchedBy,
    ReferralStatus,
    ReferralStatusChanged,
)
from services.attribution.domain.ids import referral_id
from services.attribution.domain.model import Policy

# Idempotence does not rest on this bound alone: re-applying a forgotten event changes nothing
# (sources are kept by event_id, a deal keeps only its latest stage), so 256 is plenty.
MAX_SEEN = 256
# A prospect with more claim-bearing events or deals than this in one program is abuse or a bug.
MAX_SOURCES = 32
MAX_DEALS = 32
MAX_CLAIMANTS = 16
MAX_EMAILS = 8

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MS = timedelta(milliseconds=1)


def to_ms(moment: datetime) -> int:
    """Epoch milliseconds, exactly (Avro timestamp-millis precision), no float arithmetic."""
    return (moment - _EPOCH) // _MS


def from_ms(millis: int) -> datetime:
    return _EPOCH + millis * _MS


class Reason(StrEnum):
    SELF_REFERRAL = "SELF_REFERRAL"
    ALREADY_REFERRED = "ALREADY_REFERRED"
    OUTSIDE_WINDOW = "OUTSIDE_WINDOW"
    PROGRAM_ENDED = "PROGRAM_ENDED"
    ADVOCATE_ERASED = "ADVOCATE_ERASED"


_STRENGTH = {MatchedBy.DECLARED: 0, MatchedBy.CODE: 1, MatchedBy.EMAIL: 2}


@dataclass(frozen=True, slots=True)
class Claim:
    """An advocate's claim on the prospect, made by one conversion or deal (the source)."""

    advocate_id: str
    matched_by: MatchedBy
    channel: Channel
    touch_ms: int  # the share's occurred_at; for DECLARED the declaring event's
    source_id: str  # event_id of the conversion or deal that made the claim
    source_ms: int  # its occurred_at: the occurred_at of statuses about this claim

    def rank(self, policy: Policy) -> tuple[int, int, str, str]:
        """Smaller is better: policy on touch time, then the stronger match, then ids."""
        touch = self.touch_ms if policy is Policy.FIRST_TOUCH else -self.touch_ms
        return (touch, _STRENGTH[self.matched_by], self.advocate_id, self.source_id)


@dataclass(frozen=True, slots=True)
class Rejection:
    claim: Claim
    reason: Reason


@dataclass(frozen=True, slots=True)
class Source:
    """A claim-bearing event: its claim fields, and their resolution at the last evaluation."""

    event_id: str
    occurred_ms: int
    deadline_ms: int  # waits for shares and profiles until stream time passes this
    from_deal: bool
    declared: str | None = None
    code: str | None = None
    email: str | None = None
    claims: tuple[Claim, ...] = ()  # the valid claims of the strongest level that has any
    rejections: tuple[Rejection, ...] = ()  # SELF_REFERRAL / OUTSIDE_WINDOW claimants
    missing: tuple[str, ...] = ()  # advocates whose profile is needed and not known
    closed: bool = False  # past its deadline: kept, no longer waited on

    @property
    def resolved(self) -> bool:
        return bool(self.claims or self.rejections)

    @property
    def level(self) -> MatchedBy | None:
        return self.claims[0].matched_by if self.claims else None


@dataclass(frozen=True, slots=True)
class Deal:
    """The latest stage of one deal (by occurred_at, then stage order, then event id)."""

    deal_id: str
    event_id: str
    stage: DealStage
    occurred_ms: int
    deadline_ms: int  # waits for a winner until stream time passes this
    amount_minor: int | None = None
    currency: str | None = None
    # The WON event this deal went through on its way to its latest stage (a REVERSED), so
    # that a referral whose advocate is decided only after it still announces the win first.
    won_event_id: str | None = None
    won_ms: int | None = None

    def order(self) -> tuple[int, int, str]:
        return (self.occurred_ms, _STAGE_ORDER[self.stage], self.event_id)


_STAGE_ORDER = {
    DealStage.OPEN: 0,
    DealStage.QUALIFIED: 1,
    DealStage.WON: 2,
    DealStage.LOST: 3,
    DealStage.REVERSED: 4,
}


@dataclass(frozen=True, slots=True)
class ReferralState:
    """One referral. `winner` is the advocate the world was last told has it (LEAD);
    `credited_deal` is set once a WON was emitted: from then on the advocate is final."""

    program_id: str
    prospect_id: str
    seen: tuple[str, ...] = ()
    emails: tuple[str, ...] = ()
    sources: tuple[Source, ...] = ()
    deals: tuple[Deal, ...] = ()
    winner: Claim | None = None
    shown: tuple[tuple[str, ReferralStatus], ...] = ()  # deal_id -> status shown to winner
    rejected: tuple[tuple[str, Reason], ...] = ()  # (advocate, reason) already sent
    leads: int = 0  # LEADs emitted so far (the ordinal in status ids)
    credited_deal: str | None = None
    deadline_ms: int = 0  # latest event's occurred_at + window: the state's own expiry

    @property
    def referral_id(self) -> str:
        return referral_id(self.program_id, self.prospect_id)

    @property
    def final(self) -> bool:
        return self.credited_deal is not None

    @property
    def dormant(self) -> bool:
        """Nothing waits and nothing was ever said: safe to forget once past its deadline."""
        return not (self.sources or self.deals or self.winner or self.rejected or self.leads)


@dataclass(frozen=True, slots=True)
class Waits:
    """What a referral waits for; the adapter calls `on_dependency` when one arrives."""

    codes: frozenset[str] = frozenset()
    emails: frozenset[str] = frozenset()
    advocates: frozenset[str] = frozenset()

    def __bool__(self) -> bool:
        return bool(self.codes or self.emails or self.advocates)


@dataclass(frozen=True, slots=True)
class Step:
    """A command's decision. `state` None: the referral expired with nothing to remember
    (delete it). `waits` replaces whatever the referral waited for before."""

    state: ReferralState | None
    outputs: list[ReferralStatusChanged] = field(default_factory=list)
    waits: Waits = Waits()
    counters: dict[str, int] = field(default_factory=dict)
