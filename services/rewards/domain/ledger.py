"""One advocate's reward ledger: every successful referral, its reward and where that stands.

The ledger is immutable (frozen, slotted, tuples) and small: one `Entry` per referral the
advocate ever won, no per-advocate caches. Period counts, cap usage and calendar-year totals are
derived from the entries on demand, so there is nothing to keep in sync. The core never
serializes: the adapter stores the ledger (`adapters/codec.py`).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from enum import StrEnum

from referrals.contract.records import Channel, MatchedBy, RewardType
from referrals.platform.timestamps import from_ms as from_ms
from referrals.platform.timestamps import to_ms as to_ms
from services.rewards.domain.rules import Period

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MS = timedelta(milliseconds=1)
# A rolling period is 365 days of 24 hours; DST shifts in the program's zone do not matter here.
ROLLING_WINDOW_MS = 365 * 24 * 3600 * 1000


class State(StrEnum):
    UNREWARDED = "UNREWARDED"  # counted, but below the first tier: nothing to pay
    PENDING = "PENDING"  # waiting for its due time (WON + hold_days)
    HELD = "HELD"  # waiting for a reason to clear (see Entry.reason)
    REWARDED = "REWARDED"  # payout command issued for Entry.attempt
    PAID = "PAID"
    FAILED = "FAILED"  # finance failed Entry.attempt; an operator may retry
    CANCELLED = "CANCELLED"  # reversed before the money moved; no longer counted


class Reason(StrEnum):
    NEEDS_APPROVAL = "NEEDS_APPROVAL"
    CAP_REACHED = "CAP_REACHED"
    TAX_INFO_REQUIRED = "TAX_INFO_REQUIRED"
    MISSING_AMOUNT = "MISSING_AMOUNT"
    CURRENCY_MISMATCH = "CURRENCY_MISMATCH"
    # New code (contract: "add codes as needed"): rewards' own REVERSED status for a cancellation.
    REWARD_CANCELLED = "REWARD_CANCELLED"


# Holds that still reserve their amount against the cap and the tax year: they will be paid once
# cleared. CAP_REACHED / MISSING_AMOUNT / CURRENCY_MISMATCH holds reserve nothing.
_RESERVING_HOLDS = frozenset({Reason.NEEDS_APPROVAL.value, Reason.TAX_INFO_REQUIRED.value})
_COMMITTED_STATES = frozenset({State.PENDING, State.REWARDED, State.PAID, State.FAILED})


@dataclass(frozen=True, slots=True)
class Entry:
    """One successful referral of the advocate. Times are epoch milliseconds (compact, exact)."""

    referral_id: str
    won_status_id: str
    prospect_id: str
    channel: Channel
    matched_by: MatchedBy
    owner_rep_id: str | None
    deal_id: str | None
    won_at: int
    year: int  # calendar year of won_at in the program's zone: the tax year (and CALENDAR_YEAR)
    due_at: int  # won_at + hold_days of the config that decided the reward
    ordinal: int  # n: this was the advocate's n-th successful referral in its period
    tier: int  # from_referral of the tier applied (0 when UNREWARDED)
    reward_type: RewardType | None
    amount_minor: int | None  # None when it could not be computed (MISSING_AMOUNT, ...)
    currency: str
    state: State
    reason: str | None  # hold reason, or finance's reason for FAILED
    payout_id: str
    rule_id: str
    attempt: int
    config_version: int
    reversed: bool = False

    @property
    def counted(self) -> bool:
        """Counts as a successful referral of its period (for the next referral's tier)."""
        return self.state is not State.CANCELLED

    @property
    def reserved_minor(self) -> int:
        """The amount this entry takes from the period cap and the calendar-year total."""
        reserving = self.state in _COMMITTED_STATES or (
            self.state is State.HELD and self.reason in _RESERVING_HOLDS
        )
        return (self.amount_minor or 0) if reserving else 0

    @property
    def issued(self) -> bool:
        """A payout command is out and may still move money: a reversal no longer cancels it."""
        return self.state in (State.REWARDED, State.PAID)


@dataclass(frozen=True, slots=True)
class Ledger:
    program_id: str
    advocate_id: str
    tax_form_on_file: bool = False
    entries: tuple[Entry, ...] = ()

    def find(self, referral_id: str) -> Entry | None:
        return next((e for e in self.entries if e.referral_id == referral_id), None)

    def find_payout(self, payout_id: str) -> Entry | None:
        return next((e for e in self.entries if e.payout_id == payout_id), None)

    def saw_status(self, status_id: str) -> bool:
        return any(e.won_status_id == status_id for e in self.entries)

    def put(self, entry: Entry) -> Ledger:
        """This ledger with `entry` replacing the one for its referral, or appended."""
        kept = tuple(e for e in self.entries if e.referral_id != entry.referral_id)
        if len(kept) == len(self.entries):
            return replace(self, entries=(*self.entries, entry))
        entries = tuple(entry if e.referral_id == entry.referral_id else e for e in self.entries)
        return replace(self, entries=entries)

    def in_period(self, period: Period, year: int, won_at: int) -> Iterator[Entry]:
        """Counted entries in the period of a win at `won_at` (local calendar year `year`).

        A rolling period counts wins less than 365 days either side: for wins arriving in
        event-time order that is "the 365 days up to this one"; for a backfilled win it also sees
        the later wins already recorded, so no 365-day window ever holds more than the cap.
        """
        for entry in self.entries:
            if not entry.counted:
                continue
            if period is Period.CALENDAR_YEAR and entry.year != year:
                continue
            if (
                period is Period.ROLLING_365_DAYS
                and abs(entry.won_at - won_at) >= ROLLING_WINDOW_MS
            ):
                continue
            yield entry

    def year_total(self, year: int, excluding: str = "") -> int:
        """Rewards reserved in a calendar (tax) year, in minor units, but for one referral's."""
        return sum(
            e.reserved_minor for e in self.entries if e.year == year and e.referral_id != excluding
        )

    def next_due(self) -> datetime | None:
        """When the earliest PENDING reward falls due (for the adapter's timer index)."""
        due = [e.due_at for e in self.entries if e.state is State.PENDING]
        return from_ms(min(due)) if due else None
