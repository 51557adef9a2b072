"""Properties of the rewards core over any sequence of inputs for one advocate.

Wins (and exact or by-referral duplicates), reversals, approvals, retries, payout results,
profile updates and clock ticks in any order: caps hold, nobody is paid twice, ordinals are not
reused, amounts are never negative, and the outcome depends only on the inputs, whether or not
the ledger went through the adapter's codec (`LEDGERS`) on the way.
"""

from __future__ import annotations

from collections import Counter

from hypothesis import given, settings
from hypothesis import strategies as st
from rewards_scenarios import (
    ADVOCATE,
    PROGRAM,
    Archive,
    Scenario,
    commands,
    periods,
    run,
    scenario_st,
    status_changes,
)

from referrals.contract.records import PayoutCommand, PayoutKind, Recipient, ReferralStatus
from services.rewards.domain import ids
from services.rewards.domain.decide import new_ledger
from services.rewards.domain.ledger import ROLLING_WINDOW_MS, Entry, State
from services.rewards.domain.rules import Period

SETTINGS = settings(max_examples=100, deadline=None)


@SETTINGS
@given(scenario_st)
def test_replaying_the_same_inputs_in_the_same_order_gives_the_same_outputs(s: Scenario) -> None:
    first, second = run(s), run(s)
    assert first.outputs == second.outputs
    assert first.ledgers == second.ledgers


@SETTINGS
@given(scenario_st, st.sets(st.integers(0, 50)).map(frozenset))
def test_persisting_and_restoring_the_ledger_anywhere_changes_nothing(
    s: Scenario, persist_at: frozenset[int]
) -> None:
    plain, restored = run(s), run(s, persist_at)
    assert plain.outputs == restored.outputs
    assert plain.ledgers == restored.ledgers


@SETTINGS
@given(scenario_st, st.sets(st.integers(0, 50)).map(frozenset))
def test_archiving_settled_entries_between_inputs_changes_no_output(
    s: Scenario, persist_at: frozenset[int]
) -> None:
    """The adapter keeps the ledger small: tallies plus the entries an input names. Deciding
    from that gives the very records the whole ledger gives, and the same outcomes."""
    plain, archived = run(s), run(s, persist_at, Archive())
    assert plain.outputs == archived.outputs
    outcomes = [d.outcome for d in plain.decisions]
    assert outcomes == [d.outcome for d in archived.decisions]
    assert all(not book.entries for book in archived.ledgers)


@SETTINGS
@given(scenario_st)
def test_no_referral_is_paid_twice_and_attempts_only_grow_by_retry(s: Scenario) -> None:
    trace = run(s)
    issued = commands(trace)
    assert len({(c.payout_id, c.attempt) for c in issued}) == len(issued)
    firsts = Counter(c.referral_id for c in issued if c.attempt == 1)
    assert all(count == 1 for count in firsts.values())
    for command in issued:
        assert command.payout_id == ids.payout_id(PROGRAM, command.referral_id, s.rules.rule_id)
    # attempt n+1 only follows a PAYOUT_FAILED of attempt n (an operator's retry)
    last: dict[str, int] = {}
    failed_since: set[str] = set()
    for out in (o for outs in trace.outputs for o in outs):
        if isinstance(out, PayoutCommand):
            if out.kind is PayoutKind.CLAWBACK or out.recipient is Recipient.FRIEND:
                continue  # their own properties: test_rewards_money_props
            assert out.attempt == last.get(out.payout_id, 0) + 1
            assert out.attempt == 1 or out.payout_id in failed_since
            last[out.payout_id] = out.attempt
            failed_since.discard(out.payout_id)
        elif out.status is ReferralStatus.PAYOUT_FAILED:
            assert out.payout_id is not None
            failed_since.add(out.payout_id)
    paid = Counter(o.referral_id for o in status_changes(trace) if o.status is ReferralStatus.PAID)
    assert all(count == 1 for count in paid.values())


@SETTINGS
@given(scenario_st)
def test_rewards_in_a_period_never_exceed_the_cap(s: Scenario) -> None:
    cap = s.rules.period_cap_minor
    trace = run(s)
    for book in trace.ledgers:
        if cap is None:
            break
        for entry in book.entries:
            window = [
                e.reserved_minor
                for e in book.entries
                if _same_period(s, e.year, e.won_at, entry.year, entry.won_at)
            ]
            assert sum(window) <= cap
    if cap is not None and s.rules.period is not Period.ROLLING_365_DAYS and trace.ledgers:
        final = trace.ledgers[-1]
        paid = {o.referral_id for o in status_changes(trace) if o.status is ReferralStatus.PAID}
        by_period: Counter[object] = Counter()
        for command in commands(trace):
            decided = final.find(command.referral_id)
            assert decided is not None
            given_back = decided.state is State.CLAWED_BACK  # a clawback returns it to the cap
            if (
                command.referral_id in paid
                and command.attempt == decided.attempt
                and not given_back
            ):
                by_period[decided.year if s.rules.period is Period.CALENDAR_YEAR else 0] += (
                    command.amount_minor
                )
        assert all(total <= cap for total in by_period.values())


def _same_period(s: Scenario, year_a: int, at_a: int, year_b: int, at_b: int) -> bool:
    if s.rules.period is Period.CALENDAR_YEAR:
        return year_a == year_b
    if s.rules.period is Period.ROLLING_365_DAYS:
        # every 365-day window ending at a win
        return 0 <= at_b - at_a < ROLLING_WINDOW_MS
    return True


@SETTINGS
@given(scenario_st)
def test_each_referral_ordinal_is_rewarded_at_most_once_per_period(s: Scenario) -> None:
    """Without reversals the ordinals of a period are exactly 1..n.

    A reversal corrects the count for later referrals without re-pricing rewards
    already decided, so after one the corrected ordinal may repeat an earlier, still-live one;
    the tier applied always matches the ordinal recorded.
    """
    for book in run(s).ledgers:
        for entry in book.entries:
            tier = s.rules.tier_for(entry.ordinal)
            assert entry.tier == (tier.from_referral if tier else 0)
        if s.rules.period is Period.ROLLING_365_DAYS:
            continue
        for members in periods(s, book).values():
            group = [book.entries[i] for i in members]
            if any(not _counts(e) for e in group):
                continue
            assert sorted(e.ordinal for e in group) == list(range(1, len(group) + 1))


@SETTINGS
@given(scenario_st)
def test_a_new_win_counts_only_the_wins_of_its_period_still_counted(s: Scenario) -> None:
    """A new win's ordinal counts the period's wins not reversed, denied or clawed back at that
    moment (contract: "Counting toward tiers"), and only those."""
    before = new_ledger(PROGRAM, ADVOCATE)
    for book in run(s).ledgers:
        for entry in book.entries[len(before.entries) :]:
            if s.rules.period is Period.ROLLING_365_DAYS:
                continue
            same = [
                e
                for e in before.entries
                if _counts(e) and (s.rules.period is Period.LIFETIME or e.year == entry.year)
            ]
            assert entry.ordinal == len(same) + 1
        before = book


@SETTINGS
@given(scenario_st)
def test_issued_rewards_are_never_cancelled_or_recomputed(s: Scenario) -> None:
    """Issued money is never silently undone: it is paid, failed, or recovered by a clawback."""
    before = new_ledger(PROGRAM, ADVOCATE)
    for book in run(s).ledgers:
        for old in before.entries:
            new = book.find(old.referral_id)
            assert new is not None
            decided = (new.ordinal, new.tier, new.amount_minor, new.payout_id, new.year)
            assert decided == (old.ordinal, old.tier, old.amount_minor, old.payout_id, old.year)
            if old.issued:
                assert new.state in (State.REWARDED, State.PAID, State.FAILED, State.CLAWED_BACK)
        before = book


@SETTINGS
@given(scenario_st)
def test_amounts_are_never_negative_and_status_ids_never_repeat(s: Scenario) -> None:
    trace = run(s)
    assert all(c.amount_minor >= 0 for c in commands(trace))
    changes = status_changes(trace)
    assert all(o.amount_minor is None or o.amount_minor >= 0 for o in changes)
    assert len({o.status_id for o in changes}) == len(changes)


@SETTINGS
@given(scenario_st)
def test_duplicates_and_ignored_inputs_change_nothing(s: Scenario) -> None:
    trace = run(s)
    seen: set[int] = set()
    before = new_ledger(PROGRAM, ADVOCATE)
    for op, decision in zip(s.ops, trace.decisions, strict=True):
        if op[0] == "won":
            ref = op[1]
            assert isinstance(ref, int)
            if ref in seen:
                assert (decision.outputs, decision.ledger) == ((), before)
            seen.add(ref)
        if not decision.changed:
            assert (decision.outputs, decision.ledger) == ((), before)
        before = decision.ledger


def _counts(entry: Entry) -> bool:
    """The contract's rule, spelled out: a win counts until denied, reversed or clawed back."""
    gone = (State.CANCELLED, State.DENIED, State.CLAWED_BACK)
    return entry.state not in gone and not entry.reversed
