"""One advocate's reward ledger: the rewards that may still change, and tallies of the rest.

The ledger is immutable (frozen, slotted, tuples) and bounded, however many wins the advocate
has: 10,000 wins stay a few KiB, far below Kafka's 1 MiB record limit. It has two parts:
- `entries`, the working set: one `Entry` per referral that the current command may read or
  change. The adapter keeps each settled entry under its own key (`adapters/archive.py`) and
  brings back (`revive`) only the ones an input names (a WON or REVERSED by referral, a result,
  approval or retry by payout, a tick the due PENDING ones, a tax form the TAX_INFO_REQUIRED
  ones); after the command it puts every entry back (`archive`) and stores the ledger without
  them.
- `tallies`, what every archived entry contributes to later decisions: per local (tax) year
  and UTC day, the wins still counted (tiers) and the amounts reserved (cap, tax year). Day
  tallies more than `DETAIL_DAYS` behind the newest archived win merge into one tally per
  year that remembers its first and last win time. So the ledger holds at most about
  `DETAIL_DAYS` + a few tallies, ~30 bytes each.
Decisions read entries and tallies together (`usage`, `year_total`), so a ledger with every
entry in `entries` (no archive at all, as the unit and property tests run the core) decides
exactly as one with every entry archived. One approximation, for ROLLING_365_DAYS only: a
tally counts whole in a new win's rolling period when any part of its time range (first to
last win) is less than 365 days away. A tally of one win is exact; for several wins of one
day, or a merged year, the wins at the window's edge may be counted although a few hours
outside it: a later win may get a higher ordinal, never a cap overrun. The core never
serializes: the adapter stores the ledger (`adapters/codec.py`).
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum

from referrals.contract.records import Channel, MatchedBy, RewardType
from referrals.platform.evolve import replace
from referrals.platform.timestamps import from_ms as from_ms
from referrals.platform.timestamps import to_ms as to_ms
from services.rewards.domain.rules import Period

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MS = timedelta(milliseconds=1)
# A rolling period is 365 days of 24 hours; DST shifts in the program's zone do not matter here.
ROLLING_WINDOW_MS = 365 * 24 * 3600 * 1000
DAY_MS = 24 * 3600 * 1000
# Day tallies this many days behind the newest archived win merge into one tally per year.
DETAIL_DAYS = 2 * 366


class State(StrEnum):
    UNREWARDED = "UNREWARDED"  # counted, but below the first tier: nothing to pay
    PENDING = "PENDING"  # waiting for its due time (WON + hold_days)
    HELD = "HELD"  # waiting for a reason to clear (see Entry.reason)
    REWARDED = "REWARDED"  # payout command issued for Entry.attempt
    PAID = "PAID"
    FAILED = "FAILED"  # finance failed Entry.attempt; an operator may retry
    CANCELLED = "CANCELLED"  # reversed before the money moved; no longer counted
    DENIED = "DENIED"  # an operator denied it under review: never issued, no longer counted
    CLAWED_BACK = "CLAWED_BACK"  # reversed after it was issued: a CLAWBACK recovers it


class Reason(StrEnum):
    NEEDS_APPROVAL = "NEEDS_APPROVAL"
    CAP_REACHED = "CAP_REACHED"
    TAX_INFO_REQUIRED = "TAX_INFO_REQUIRED"
    MISSING_AMOUNT = "MISSING_AMOUNT"
    CURRENCY_MISMATCH = "CURRENCY_MISMATCH"
    FRAUD_REVIEW = "FRAUD_REVIEW"  # over the advocate's WONs allowed that day: reviewed first
    PROGRAM_PAUSED = "PROGRAM_PAUSED"  # released when the program is active again
    # REJECTED
    DENIED = "DENIED"
    # REVERSED: rewards' own statuses for a reward the reversal undid. REWARD_CANCELLED (before
    # it was issued) is this service's code from before the contract named CANCELLED, which it
    # uses for a FAILED payout cancelled; CLAWED_BACK for an issued one recovered.
    REWARD_CANCELLED = "REWARD_CANCELLED"
    CANCELLED = "CANCELLED"
    CLAWED_BACK = "CLAWED_BACK"


# REVERSED reasons only this service writes: its own statuses, read back, are not inputs.
OWN_REVERSALS = frozenset({Reason.REWARD_CANCELLED, Reason.CANCELLED, Reason.CLAWED_BACK})
# Holds an operator decides (approve or deny).
REVIEW_HOLDS = frozenset({Reason.NEEDS_APPROVAL.value, Reason.FRAUD_REVIEW.value})
# Holds that still reserve their amount against the cap and the tax year: they will be paid once
# cleared. CAP_REACHED / MISSING_AMOUNT / CURRENCY_MISMATCH holds reserve nothing.
_RESERVING_HOLDS = frozenset(
    {
        Reason.NEEDS_APPROVAL.value,
        Reason.TAX_INFO_REQUIRED.value,
        Reason.FRAUD_REVIEW.value,
        Reason.PROGRAM_PAUSED.value,
    }
)
_COMMITTED_STATES = frozenset({State.PENDING, State.REWARDED, State.PAID, State.FAILED})
_NOT_COUNTED = frozenset({State.CANCELLED, State.DENIED, State.CLAWED_BACK})
ISSUED = frozenset({State.REWARDED, State.PAID})


@dataclass(frozen=True, slots=True)
class Friend:
    """Two-sided rewards: the referred prospect's reward, which follows its referral. It waits
    (HELD) while the referral is paused or under review, then PENDING until the referral's due
    time, then REWARDED / PAID / FAILED like any payout; DENIED, CANCELLED or CLAWED_BACK with
    its referral. It never counts toward the advocate's tiers, cap or tax total."""

    payout_id: str
    amount_minor: int
    reward_type: RewardType
    rule_id: str
    state: State = State.HELD
    attempt: int = 1
    reason: str | None = None  # finance's reason for FAILED


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
    seq: int = 0  # the n-th win this ledger recorded: working-set entries keep this order
    friend: Friend | None = None
    # The advocate's part can never be paid (CAP_REACHED, MISSING_AMOUNT, CURRENCY_MISMATCH,
    # decided at WON): it is held with this reason once the referral passed its review.
    blocked: str | None = None
    fraud: bool = False  # over the advocate's WONs allowed that local day: FRAUD_REVIEW
    reviewed: bool = False  # past the pause and review gates (the friend's reward may go)
    approved: bool = False  # an operator approved it (passes FRAUD_REVIEW and NEEDS_APPROVAL)
    commands: tuple[str, ...] = ()  # command_ids applied: a repeat is answered, not re-applied
    holds: int = 0  # holds entered so far: a second hold with the same reason is a new status

    @property
    def counted(self) -> bool:
        """Counts as a successful referral of its period (for the next referral's tier):
        until it is denied, reversed or clawed back."""
        return self.state not in _NOT_COUNTED and not self.reversed

    @property
    def reserved_minor(self) -> int:
        """The amount this entry takes from the period cap and the calendar-year total."""
        if self.blocked is not None:
            return 0
        reserving = self.state in _COMMITTED_STATES or (
            self.state is State.HELD and self.reason in _RESERVING_HOLDS
        )
        return (self.amount_minor or 0) if reserving else 0

    @property
    def issued(self) -> bool:
        """A payout command is out and may still move money: a reversal no longer cancels it."""
        return self.state in ISSUED

    @property
    def under_review(self) -> bool:
        return self.state is State.HELD and self.reason in REVIEW_HOLDS

    @property
    def due_ms(self) -> int | None:
        """When this entry next has something to release (its reward or its friend's)."""
        friend_waits = self.friend is not None and self.friend.state is State.PENDING
        return self.due_at if self.state is State.PENDING or friend_waits else None


@dataclass(frozen=True, slots=True)
class Tally:
    """Archived wins of one local year and UTC day (or, merged, of a year), first to last."""

    year: int
    first_ms: int  # won_at of the earliest and the latest win tallied
    last_ms: int
    counted: int  # wins still counted toward tiers
    reserved_minor: int  # amounts reserved against the period cap and the tax year

    def near(self, won_at: int) -> bool:
        """Whether a win at `won_at` may have any of these wins in its rolling period."""
        return self.first_ms - ROLLING_WINDOW_MS < won_at < self.last_ms + ROLLING_WINDOW_MS

    def holds(self, year: int, won_at: int) -> bool:
        """Whether a win of `year` at `won_at` belongs in this tally."""
        day = won_at // DAY_MS
        return year == self.year and self.first_ms // DAY_MS <= day <= self.last_ms // DAY_MS


@dataclass(frozen=True, slots=True)
class Ledger:
    program_id: str
    advocate_id: str
    tax_form_on_file: bool = False
    entries: tuple[Entry, ...] = ()  # the working set, in `seq` order
    tallies: tuple[Tally, ...] = ()  # archived entries, by (year, first_ms)
    wins: int = 0  # wins recorded so far (the last `seq` given)
    # Fraud velocity's working set: (local day ordinal, WONs recorded that day); the adapter
    # keeps each day under its own key and brings back the one a WON needs.
    days: tuple[tuple[int, int], ...] = ()

    def find(self, referral_id: str) -> Entry | None:
        return next((e for e in self.entries if e.referral_id == referral_id), None)

    def find_payout(self, payout_id: str) -> Entry | None:
        """The entry paying `payout_id`: its advocate's reward or its friend's."""
        return next(
            (
                e
                for e in self.entries
                if e.payout_id == payout_id
                or (e.friend is not None and e.friend.payout_id == payout_id)
            ),
            None,
        )

    def wins_on(self, day: int) -> int:
        return next((n for d, n in self.days if d == day), 0)

    def count_win(self, day: int) -> Ledger:
        """This ledger with one more WON on local day `day`."""
        n = self.wins_on(day) + 1
        days = tuple(sorted((*((d, c) for d, c in self.days if d != day), (day, n))))
        return replace(self, days=days)

    def saw_status(self, status_id: str) -> bool:
        return any(e.won_status_id == status_id for e in self.entries)

    def put(self, entry: Entry) -> Ledger:
        """This ledger with `entry` replacing the one for its referral, or appended (a new win:
        it gets the next `seq`)."""
        kept = tuple(e for e in self.entries if e.referral_id != entry.referral_id)
        if len(kept) == len(self.entries):
            entry = replace(entry, seq=self.wins + 1)
            return replace(self, entries=(*self.entries, entry), wins=self.wins + 1)
        entries = tuple(entry if e.referral_id == entry.referral_id else e for e in self.entries)
        return replace(self, entries=entries)

    def usage(self, period: Period, year: int, won_at: int) -> tuple[int, int]:
        """(wins counted, amount reserved) in the period of a win at `won_at` (local calendar
        year `year`), over the working set and the tallies.

        A rolling period counts wins less than 365 days either side: for wins arriving in
        event-time order that is "the 365 days up to this one"; for a backfilled win it also sees
        the later wins already recorded, so no 365-day window ever holds more than the cap.
        """
        count = reserved = 0
        for entry in self.entries:
            if period is Period.CALENDAR_YEAR and entry.year != year:
                continue
            if (
                period is Period.ROLLING_365_DAYS
                and abs(entry.won_at - won_at) >= ROLLING_WINDOW_MS
            ):
                continue
            # A reversed reward whose money moved no longer counts but still reserves.
            count += 1 if entry.counted else 0
            reserved += entry.reserved_minor
        for tally in self.tallies:
            if period is Period.CALENDAR_YEAR and tally.year != year:
                continue
            if period is Period.ROLLING_365_DAYS and not tally.near(won_at):
                continue
            count += tally.counted
            reserved += tally.reserved_minor
        return count, reserved

    def year_total(self, year: int, excluding: str = "") -> int:
        """Rewards reserved in a calendar (tax) year, in minor units, but for one referral's."""
        live = sum(
            e.reserved_minor for e in self.entries if e.year == year and e.referral_id != excluding
        )
        return live + sum(t.reserved_minor for t in self.tallies if t.year == year)

    def next_due(self) -> datetime | None:
        """When the earliest PENDING reward (the advocate's or a friend's) of the working set
        falls due."""
        due = [d for e in self.entries if (d := e.due_ms) is not None]
        return from_ms(min(due)) if due else None

    # -- the archive ----------------------------------------------------------------------------
    def revive(self, archived: Iterable[Entry]) -> Ledger:
        """This ledger with archived entries back in the working set (and out of the tallies);
        one already in the working set is left as it is."""
        present = {e.referral_id for e in self.entries}
        back = [e for e in archived if e.referral_id not in present]
        if not back:
            return self
        tallies = self.tallies
        for entry in back:
            tallies = _account(tallies, entry, -1)
        entries = tuple(sorted((*self.entries, *back), key=lambda e: e.seq))
        return replace(self, entries=entries, tallies=tallies)

    def archive(self) -> tuple[Ledger, tuple[Entry, ...]]:
        """Every working-set entry moved into the tallies: the ledger to store, and the entries
        to keep under their own keys."""
        tallies = self.tallies
        for entry in self.entries:
            tallies = _account(tallies, entry, 1)
        newest = max((t.last_ms for t in tallies), default=0)
        return replace(self, entries=(), tallies=_merge_old(tallies, newest)), self.entries


def _account(tallies: tuple[Tally, ...], entry: Entry, sign: int) -> tuple[Tally, ...]:
    """`tallies` (in (year, first_ms) order, as every ledger keeps them) with `entry` added
    (sign 1) or taken out (sign -1). Runs on every archived or revived entry: the first tally
    that holds the entry is found without a method call per tally, and the changed one goes
    back in its place by bisection, where sorting the whole tuple again would put it."""
    counted, reserved = (1 if entry.counted else 0), entry.reserved_minor
    if counted == 0 and reserved == 0:
        return tallies  # a cancelled win counts for nothing
    year, won_at = entry.year, entry.won_at
    # `Tally.holds`: same year, and the win's UTC day within the tally's first..last days.
    day_start = won_at // DAY_MS * DAY_MS
    day_end = day_start + DAY_MS
    at = next(
        (
            i
            for i, t in enumerate(tallies)
            if t.year == year
            and t.first_ms < day_end
            and t.last_ms >= day_start
            and (sign > 0 or (t.counted >= counted and t.reserved_minor >= reserved))
        ),
        -1,
    )
    if at >= 0:
        old = tallies[at]
        rest = tallies[:at] + tallies[at + 1 :]
        if sign > 0:
            new = Tally(
                old.year,
                min(old.first_ms, won_at),
                max(old.last_ms, won_at),
                old.counted + counted,
                old.reserved_minor + reserved,
            )
        else:
            new = Tally(
                old.year,
                old.first_ms,
                old.last_ms,
                old.counted - counted,
                old.reserved_minor - reserved,
            )
    elif sign > 0:
        rest, new = tallies, Tally(year, won_at, won_at, counted, reserved)
    else:
        raise ValueError(f"referral {entry.referral_id} is not in the ledger's tallies")
    if new.counted < 0 or new.reserved_minor < 0:
        raise ValueError(f"referral {entry.referral_id} revived more than once")
    if new.counted == 0 and new.reserved_minor == 0:
        return rest  # nothing left of it
    # Where a stable sort of (*rest, new) by (year, first_ms) puts `new`: after its equals.
    i = bisect_right(rest, (new.year, new.first_ms), key=_tally_order)
    return (*rest[:i], new, *rest[i:])


def _tally_order(t: Tally) -> tuple[int, int]:
    return (t.year, t.first_ms)


def _merge_old(tallies: tuple[Tally, ...], newest_ms: int) -> tuple[Tally, ...]:
    """Tallies ending over DETAIL_DAYS before `newest_ms`, merged into one per year."""
    horizon = newest_ms - DETAIL_DAYS * DAY_MS
    old = [t for t in tallies if t.last_ms < horizon]
    if len(old) <= len({t.year for t in old}):
        return tallies
    kept = [t for t in tallies if t.last_ms >= horizon]
    merged: dict[int, Tally] = {}
    for t in old:
        m = merged.get(t.year)
        merged[t.year] = (
            t
            if m is None
            else Tally(
                t.year,
                min(m.first_ms, t.first_ms),
                max(m.last_ms, t.last_ms),
                m.counted + t.counted,
                m.reserved_minor + t.reserved_minor,
            )
        )
    return tuple(sorted((*kept, *merged.values()), key=lambda t: (t.year, t.first_ms)))
