"""Properties of the money rules over any sequence of inputs for one advocate: two-sided
rewards, operator commands (with repeated command ids), fraud holds, clawbacks and pauses.

- no payout_id is issued twice (per attempt), whatever its kind and recipient;
- nothing is issued for a referral once it was denied;
- a clawback recovers exactly one issued payout, once, for what was issued, never more;
- a friend reward never moves the advocate's tiers, cap or tax total;
- tallies and totals never go negative.
(Determinism and the archive's equivalence run over these inputs too: test_rewards_props.)
"""

from __future__ import annotations

from collections import Counter
from dataclasses import replace

from hypothesis import given, settings
from rewards_scenarios import Scenario, commands, money, run, scenario_st

from referrals.contract.records import (
    PayoutKind,
    Recipient,
    ReferralStatus,
    ReferralStatusChanged,
    RewardAction,
)
from services.rewards.domain.ledger import State

SETTINGS = settings(max_examples=150, deadline=None)


@SETTINGS
@given(scenario_st)
def test_no_payout_id_is_issued_twice_per_attempt_whatever_its_kind(s: Scenario) -> None:
    issued = money(run(s))
    copies = Counter((c.payout_id, c.attempt) for c in issued)
    assert all(n == 1 for n in copies.values()), copies
    kinds = {(c.payout_id, c.kind, c.recipient) for c in issued}
    assert len(kinds) == len({c.payout_id for c in issued})  # one id, one kind and recipient


@SETTINGS
@given(scenario_st)
def test_nothing_is_issued_for_a_referral_after_its_denial(s: Scenario) -> None:
    denied: set[str] = set()
    for outputs in run(s).outputs:
        for out in outputs:
            if isinstance(out, ReferralStatusChanged):
                if out.status is ReferralStatus.REJECTED and out.reason == "DENIED":
                    denied.add(out.referral_id)
            elif out.kind is PayoutKind.PAYOUT:
                assert out.referral_id not in denied, f"{out.payout_id} issued after a denial"


@SETTINGS
@given(scenario_st)
def test_a_clawback_recovers_one_issued_payout_once_and_never_more_than_was_issued(
    s: Scenario,
) -> None:
    trace = run(s)
    issued: dict[str, int] = {}  # payout_id -> amount of its latest attempt
    clawed: Counter[str] = Counter()
    for out in money(trace):
        if out.kind is PayoutKind.PAYOUT:
            assert out.payout_id not in clawed, "issued again after its clawback"
            issued[out.payout_id] = out.amount_minor
            continue
        assert out.original_payout_id in issued, "a clawback of something never issued"
        assert out.amount_minor == issued[out.original_payout_id]
        assert out.payout_id != out.original_payout_id
        clawed[out.original_payout_id] += 1
    assert all(n == 1 for n in clawed.values())
    if not s.rules.clawback:
        assert not clawed


@SETTINGS
@given(scenario_st)
def test_a_friend_reward_never_moves_the_advocates_tiers_cap_or_tax_total(s: Scenario) -> None:
    """The same history with and without a friend reward pays the advocate the same. (Without
    denials, and without commands naming the friend's payout: both are operators' acts, and
    without a friend reward there is no such payout to name, nor money at stake in a referral
    below the first tier to deny.)"""
    ops = tuple(
        op
        for op in s.ops
        if not (op[0] == "command" and (op[1] is RewardAction.DENY or op[3] is True))
    )
    with_friend = replace(s, ops=ops)
    without = replace(with_friend, rules=replace(s.rules, friend_reward=None))
    ours, theirs = run(with_friend), run(without)
    assert commands(ours) == commands(theirs)
    advocate = [
        (e.referral_id, e.ordinal, e.tier, e.amount_minor, e.reserved_minor)
        for e in ours.ledgers[-1].entries
    ]
    assert advocate == [
        (e.referral_id, e.ordinal, e.tier, e.amount_minor, e.reserved_minor)
        for e in theirs.ledgers[-1].entries
    ]


@SETTINGS
@given(scenario_st)
def test_friend_rewards_are_one_per_won_referral_and_follow_it(s: Scenario) -> None:
    trace = run(s)
    friends = [c for c in money(trace) if c.recipient is Recipient.FRIEND]
    firsts = Counter(
        c.referral_id for c in friends if c.kind is PayoutKind.PAYOUT and c.attempt == 1
    )
    assert all(n == 1 for n in firsts.values())
    final = trace.ledgers[-1]
    for referral in firsts:
        entry = final.find(referral)
        assert entry is not None and entry.friend is not None
        assert entry.state is not State.DENIED
    for c in friends:
        assert (c.tier, c.rule_id) == (0, "friend")
    if s.rules.friend_reward is None:
        assert not friends


@SETTINGS
@given(scenario_st)
def test_totals_never_go_negative(s: Scenario) -> None:
    for book in run(s).ledgers:
        for tally in book.tallies:
            assert tally.counted >= 0 and tally.reserved_minor >= 0
        for entry in book.entries:
            assert entry.reserved_minor >= 0
            assert book.year_total(entry.year) >= 0
            counted, reserved = book.usage(s.rules.period, entry.year, entry.won_at)
            assert counted >= 0 and reserved >= 0
