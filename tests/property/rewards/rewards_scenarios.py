"""Random input histories for one advocate, and a runner that feeds them to the rewards core.

A scenario is program rules, a WON per referral (fixed time, deal amount and currency, so a
repeated "won" op is an exact duplicate when its variant matches and a by-referral duplicate
otherwise) and a list of ops: wins, reversals, approvals, retries, payout results, profile
updates and clock ticks; and the money rules' inputs: operator commands with command ids (a
repeated id is a repeated command) on the advocate's or the friend's payout, the friend's
payout results, and the program paused or active again (its rewards then resumed, as the
adapter does on its next punctuation).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from hypothesis import strategies as st

from referrals.contract.records import (
    AdvocateProfile,
    Channel,
    MatchedBy,
    PayoutCommand,
    PayoutKind,
    PayoutResult,
    PayoutStatus,
    Recipient,
    ReferralStatus,
    ReferralStatusChanged,
    RewardAction,
    RewardCommand,
    RewardType,
)
from services.rewards.adapters.codec import LEDGERS
from services.rewards.domain import ids
from services.rewards.domain.decide import (
    new_ledger,
    on_approve,
    on_command,
    on_payout_result,
    on_profile,
    on_resume,
    on_retry,
    on_reversed,
    on_tick,
    on_won,
)
from services.rewards.domain.ledger import Entry, Ledger, Reason, State, to_ms
from services.rewards.domain.outputs import Decision, Output
from services.rewards.domain.rules import FriendReward, Lifecycle, Period, RewardRules, Tier

PROGRAM, ADVOCATE = "acme", "adv-1"
START = datetime(2026, 6, 1, 12, tzinfo=UTC)
REFERRALS = 6
TIERS = (
    Tier(1, RewardType.GIFT_CARD, amount_minor=5_000),
    Tier(3, RewardType.GIFT_CARD, amount_minor=7_500),
    Tier(6, RewardType.CHECK, percent=Decimal("5")),
)

Op = tuple[object, ...]


@dataclass(frozen=True)
class Scenario:
    rules: RewardRules
    days: tuple[int, ...]  # per referral: WON occurred_at = START + days
    deals: tuple[int | None, ...]  # per referral: the deal amount on the WON
    currencies: tuple[str, ...]  # per referral: the deal currency on the WON
    ops: tuple[Op, ...]


rules_st = st.builds(
    RewardRules,
    program_id=st.just(PROGRAM),
    config_version=st.just(3),
    currency=st.just("USD"),
    tiers=st.just(TIERS),
    time_zone=st.just("America/New_York"),
    period=st.sampled_from(Period),
    period_cap_minor=st.sampled_from([None, 8_000, 12_000, 30_000]),
    approval_threshold_minor=st.sampled_from([None, None, 5_000, 7_500]),
    hold_days=st.sampled_from([0, 30]),
    tax_threshold_minor=st.sampled_from([None, 10_000]),
    friend_reward=st.sampled_from([None, FriendReward(2_500, RewardType.BILL_CREDIT)]),
    clawback=st.booleans(),
    lifecycle=st.sampled_from([Lifecycle.ACTIVE, Lifecycle.ACTIVE, Lifecycle.PAUSED]),
    max_wins_per_day=st.sampled_from([None, None, 1, 1, 2]),
)
# skewed, so that later ops often concern a referral already won
ref_st = st.sampled_from([0, 0, 0, 1, 1, 2, 3, 4, 5])
# Few distinct days, so wins share periods: START - 152 days is Dec 31 2025 in New York,
# START - 151 days Jan 1 2026; START - 400 days is in 2025, over 365 days before -20 .. 1.
DAYS = st.sampled_from([-400, -152, -151, -20, -20, 0, 0, 1])
won_st = st.tuples(st.just("won"), ref_st, st.integers(0, 1))
result_st = st.tuples(st.just("result"), ref_st, st.sampled_from([1, 1, 2, 3]), st.booleans())
op_st = st.one_of(
    won_st,
    won_st,
    won_st,
    st.tuples(st.just("reverse"), ref_st),
    st.tuples(st.just("reverse"), ref_st),
    st.tuples(st.just("approve"), ref_st),
    st.tuples(st.just("retry"), ref_st),
    st.tuples(st.just("retry"), ref_st),
    result_st,
    result_st,
    result_st,
    st.tuples(st.just("profile"), st.booleans()),
    st.tuples(st.just("tick"), st.integers(0, 24 * 40)),
    # (action, referral, on the friend's payout, command id: few, so some repeat)
    st.tuples(
        st.just("command"), st.sampled_from(RewardAction), ref_st, st.booleans(), st.integers(0, 3)
    ),
    st.tuples(
        st.just("command"), st.just(RewardAction.DENY), ref_st, st.just(False), st.integers(0, 3)
    ),
    st.tuples(
        st.just("command"), st.just(RewardAction.APPROVE), ref_st, st.booleans(), st.integers(0, 3)
    ),
    st.tuples(st.just("friend_result"), ref_st, st.sampled_from([1, 1, 2]), st.booleans()),
    st.tuples(st.just("lifecycle"), st.sampled_from(Lifecycle)),
)
scenario_st = st.builds(
    Scenario,
    rules=rules_st,
    days=st.tuples(*[DAYS] * REFERRALS),
    deals=st.tuples(*[st.one_of(st.none(), st.integers(0, 500_000))] * REFERRALS),
    currencies=st.tuples(*[st.sampled_from(["USD", "USD", "USD", "EUR"])] * REFERRALS),
    # long enough that caps, reversals after payout and retries actually happen
    ops=st.lists(op_st, min_size=15, max_size=50).map(tuple),
)


def status_record(
    s: Scenario, ref: int, status: ReferralStatus, status_id: str
) -> ReferralStatusChanged:
    return ReferralStatusChanged(
        status_id=status_id,
        referral_id=f"r{ref}",
        program_id=PROGRAM,
        advocate_id=ADVOCATE,
        prospect_id=f"p{ref}",
        channel=Channel.SHARE_URL,
        matched_by=MatchedBy.CODE,
        status=status,
        config_version=3,
        occurred_at=START + timedelta(days=s.days[ref]),
        amount_minor=s.deals[ref],
        currency=s.currencies[ref],
    )


def step(
    s: Scenario, rules: RewardRules, book: Ledger, op: Op, now: datetime
) -> tuple[Decision, datetime]:
    """One op under `rules`, the program version in force (a "lifecycle" op changes it: `run`)."""
    kind, *args = op
    match kind, args:
        case "won", [int(ref), int(variant)]:
            won = status_record(s, ref, ReferralStatus.WON, f"won-{ref}-{variant}")
            return on_won(book, rules, won, now), now
        case "reverse", [int(ref)]:
            reversal = status_record(s, ref, ReferralStatus.REVERSED, f"rev-{ref}")
            return on_reversed(book, reversal, now, clawback_on=rules.clawback), now
        case "approve", [int(ref)]:
            return on_approve(book, rules, payout_of(s, ref), now), now
        case "command", [RewardAction() as action, int(ref), bool(friend), int(cid)]:
            target = friend_payout_of(s, ref) if friend else payout_of(s, ref)
            command = RewardCommand(f"c{cid}", target, action, "ops", now)
            return on_command(book, rules, command, now), now
        case "friend_result", [int(ref), int(attempt), bool(paid)]:
            status = PayoutStatus.PAID if paid else PayoutStatus.FAILED
            answer = PayoutResult(friend_payout_of(s, ref), attempt, status, now, "NOPE")
            return on_payout_result(book, answer, now), now
        case "lifecycle", [Lifecycle()]:
            return on_resume(book, rules, now), now
        case "retry", [int(ref)]:
            return on_retry(book, payout_of(s, ref), now), now
        case "result", [int(ref), int(attempt), bool(paid)]:
            status = PayoutStatus.PAID if paid else PayoutStatus.FAILED
            answer = PayoutResult(payout_of(s, ref), attempt, status, now, "NOPE")
            return on_payout_result(book, answer, now), now
        case "profile", [bool(form)]:
            return on_profile(book, profile(form, now), now), now
        case "tick", [int(hours)]:
            later = now + timedelta(hours=hours)
            return on_tick(book, later), later
    raise AssertionError(op)


def payout_of(s: Scenario, ref: int) -> str:
    return ids.payout_id(PROGRAM, f"r{ref}", s.rules.rule_id)


def friend_payout_of(s: Scenario, ref: int) -> str:
    return ids.payout_id(PROGRAM, f"r{ref}", "friend", PayoutKind.PAYOUT, Recipient.FRIEND)


def profile(form: bool, now: datetime) -> AdvocateProfile:
    return AdvocateProfile(PROGRAM, ADVOCATE, "a@example.com", "A", "0" * 64, False, form, now)


@dataclass
class Run:
    outputs: list[list[Output]]
    ledgers: list[Ledger]
    decisions: list[Decision]


class Archive:
    """What the adapter's archive does (`adapters/archive.py`), in a dict: every entry kept
    under its referral, and brought back into the ledger when an input needs it."""

    def __init__(self) -> None:
        self.entries: dict[str, Entry] = {}

    def wanted(self, s: Scenario, op: Op, now: datetime) -> list[Entry]:
        kind, *args = op
        if kind in ("won", "reverse", "approve", "retry", "result", "friend_result", "command"):
            ref = args[1] if kind == "command" else args[0]  # by referral or payout: the same
            found = self.entries.get(f"r{ref}")
            return [] if found is None else [found]
        if kind == "lifecycle":
            return [
                e
                for e in self.entries.values()
                if e.state is State.HELD and e.reason == Reason.PROGRAM_PAUSED
            ]
        if kind == "profile" and args[0]:
            return [
                e
                for e in self.entries.values()
                if e.state is State.HELD and e.reason == Reason.TAX_INFO_REQUIRED
            ]
        if kind == "tick":
            later = to_ms(now + timedelta(hours=int(str(args[0]))))
            return [
                e for e in self.entries.values() if (due := e.due_ms) is not None and due <= later
            ]
        return []

    def keep(self, book: Ledger) -> Ledger:
        stored, entries = book.archive()
        self.entries.update((e.referral_id, e) for e in entries)
        return stored


def run(
    s: Scenario, persist_at: frozenset[int] = frozenset(), archive: Archive | None = None
) -> Run:
    """`archive`: keep the ledger as the adapter does, every entry archived between inputs."""
    book, now, rules = new_ledger(PROGRAM, ADVOCATE), START, s.rules
    trace = Run([], [], [])
    for index, op in enumerate(s.ops):
        if index in persist_at:
            book = LEDGERS.decode(LEDGERS.encode(book))
        stored = book
        if op[0] == "lifecycle":
            rules = replace(rules, lifecycle=op[1])
        if archive is not None:
            book = book.revive(archive.wanted(s, op, now))
        decision, now = step(s, rules, book, op, now)
        book = decision.ledger
        if archive is not None:
            book = archive.keep(book) if decision.changed else stored
        trace.outputs.append(list(decision.outputs))
        trace.ledgers.append(book)
        trace.decisions.append(decision)
    return trace


def commands(trace: Run) -> list[PayoutCommand]:
    """The advocate's payouts (what rewards.payouts.v1 carries)."""
    return [
        o for o in money(trace) if o.kind is PayoutKind.PAYOUT and o.recipient is Recipient.ADVOCATE
    ]


def money(trace: Run) -> list[PayoutCommand]:
    """Every money movement (rewards.payouts.v2): payouts to both recipients and clawbacks."""
    return [o for outs in trace.outputs for o in outs if isinstance(o, PayoutCommand)]


def status_changes(trace: Run) -> list[ReferralStatusChanged]:
    return [o for outs in trace.outputs for o in outs if isinstance(o, ReferralStatusChanged)]


def periods(s: Scenario, book: Ledger) -> dict[object, list[int]]:
    """Counted entries' indexes grouped by fixed period (rolling periods have no fixed key)."""
    groups: dict[object, list[int]] = defaultdict(list)
    for index, entry in enumerate(book.entries):
        key = entry.year if s.rules.period is Period.CALENDAR_YEAR else "lifetime"
        groups[key].append(index)
    return groups
