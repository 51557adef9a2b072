"""`referrals program preview`'s replay, without a broker: recorded inputs through the services'
cores with another document; recorded commands, results and status order are honoured."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta

from referrals.contract.records import (
    AdvocateProfile,
    Channel,
    ConversionEvent,
    DealEvent,
    DealStage,
    OperatorCommand,
    PayoutResult,
    PayoutStatus,
    ReferralStatus,
    RewardAction,
    ShareEvent,
)
from referrals.programs.catalog import Program
from referrals.programs.document import parse_document, validate
from referrals.programs.model import ProgramDocument
from referrals.programs.put import load_program
from referrals.tools.preview.compare import Preview, compare, outcomes
from referrals.tools.preview.replay import Arrival, Erased, History, Input, Replayed, replay
from referrals.tools.preview.run import preview_of
from referrals.tools.simulate import DEMO_PROGRAM, simulate

NOW = datetime(2026, 6, 1, tzinfo=UTC)
T0 = datetime(2026, 3, 1, 12, tzinfo=UTC)
PROGRAM = "acme"


def document(extra: str = "", tiers: str = "") -> ProgramDocument:
    tiers = tiers or (
        '    - {from_referral: 1, amount: "50.00", reward_type: GIFT_CARD}\n'
        '    - {from_referral: 2, amount: "75.00", reward_type: CHECK}\n'
    )
    text = f"program_id: {PROGRAM}\ncurrency: USD\nrewards:\n  tiers:\n{tiers}{extra}"
    return validate(parse_document(text, source="test.yaml"))


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def profile(advocate: str, *, tax_form: bool = True) -> AdvocateProfile:
    return AdvocateProfile(
        PROGRAM, advocate, f"{advocate}@x.example", advocate, sha(advocate), False, tax_form, T0
    )


def referral(advocate: str, prospect: str, day: int, *, won: bool = True) -> list[Input]:
    """A share, the conversion with its code, and the deal won `day` days after T0."""
    at = T0 + timedelta(days=day)
    code = f"code-{advocate}"
    events: list[Input] = [
        ShareEvent(f"s-{prospect}", PROGRAM, advocate, Channel.SOCIAL, code, at),
        ConversionEvent(f"c-{prospect}", PROGRAM, prospect, at, referral_code=code),
    ]
    if won:
        stage = DealStage.WON
        events.append(DealEvent(f"d-{prospect}", PROGRAM, f"deal-{prospect}", prospect, stage, at))
    return events


def history(*records: Input, statuses: tuple = (), payouts: tuple = ()) -> History:
    return History(
        PROGRAM,
        tuple(Arrival(i, r) for i, r in enumerate(records)),
        statuses=statuses,
        payouts=payouts,
    )


def run(hist: History, doc: ProgramDocument) -> Replayed:
    return replay(hist, Program(PROGRAM, 1, doc), NOW)


def test_a_won_referral_is_rewarded_by_the_tier_the_document_gives() -> None:
    out = run(history(profile("adv-1"), *referral("adv-1", "p-1", 0)), document())
    assert [(p.advocate_id, p.tier, p.amount_minor) for p in out.payouts] == [("adv-1", 1, 5000)]
    words = outcomes(out.statuses)
    assert words[(out.payouts[0].referral_id, "adv-1")] == "REWARDED tier 1 50.00 USD"


def test_an_erased_advocate_is_replayed_as_the_services_do_later_claims_are_rejected() -> None:
    first = referral("adv-1", "p-1", 0)
    later = [
        ConversionEvent("c-2", PROGRAM, "p-2", T0 + timedelta(days=1), referral_code="code-adv-1"),
    ]
    out = run(history(profile("adv-1"), *first, Erased("adv-1"), *later), document())
    words = outcomes(out.statuses)
    assert sorted(words.values()) == ["REJECTED ADVOCATE_ERASED", "REWARDED tier 1 50.00 USD"]
    assert [p.referral_id for p in out.payouts] == [out.payouts[0].referral_id]  # kept


def test_the_document_decides_attribution_too_a_shorter_window_rejects() -> None:
    share_then_convert = [
        profile("adv-1"),
        ShareEvent("s-1", PROGRAM, "adv-1", Channel.SOCIAL, "code-1", T0),
        ConversionEvent("c-1", PROGRAM, "p-1", T0 + timedelta(days=20), referral_code="code-1"),
    ]
    wide = outcomes(run(history(*share_then_convert), document()).statuses)
    narrow_doc = document("attribution: {window_days: 10}\n")
    narrow = outcomes(run(history(*share_then_convert), narrow_doc).statuses)
    assert list(wide.values()) == ["LEAD"]
    assert list(narrow.values()) == ["REJECTED OUTSIDE_WINDOW"]


def test_the_recorded_order_of_wins_decides_the_ordinals() -> None:
    """Two wins of one advocate: the rewards service read p-2's WON first, so p-2 is the first
    referral, whichever deal arrived first."""
    records = [profile("adv-1"), *referral("adv-1", "p-1", 0), *referral("adv-1", "p-2", 1)]
    first = run(history(*records), document())
    assert [p.tier for p in first.payouts] == [1, 2]
    wons = [s for s in first.statuses if s.status is ReferralStatus.WON]
    recorded = ((100, wons[1]), (101, wons[0]))  # as read from referral.status.v1
    again = run(history(*records, statuses=recorded), document())
    tiers = {p.referral_id: p.tier for p in again.payouts}
    assert tiers == {wons[1].referral_id: 1, wons[0].referral_id: 2}


def fraud_history(*commands: RewardAction) -> tuple[History, str]:
    """Two wins on one day with at most one allowed: the second is held FRAUD_REVIEW; then the
    recorded commands on its payout."""
    doc = document("fraud: {max_wins_per_day: 1}\n")
    records = [profile("adv-1"), *referral("adv-1", "p-1", 0), *referral("adv-1", "p-2", 0)]
    held = next(
        s for s in run(history(*records), doc).statuses if s.status is ReferralStatus.REWARD_HELD
    )
    assert held.reason == "FRAUD_REVIEW" and held.payout_id is not None
    records += [
        OperatorCommand(f"cmd-{i}", action, held.payout_id, "ops", T0 + timedelta(days=2))
        for i, action in enumerate(commands)
    ]
    return history(*records), held.referral_id


def test_recorded_denials_and_approvals_are_replayed_by_payout_id() -> None:
    doc = document("fraud: {max_wins_per_day: 1}\n")
    for commands, expected in (
        ((), "HELD FRAUD_REVIEW tier 2 75.00 USD"),
        ((RewardAction.DENY,), "REJECTED DENIED"),
        ((RewardAction.APPROVE,), "REWARDED tier 2 75.00 USD"),
        ((RewardAction.APPROVE, RewardAction.DENY), "REWARDED tier 2 75.00 USD"),  # refused
    ):
        hist, referral_id = fraud_history(*commands)
        assert outcomes(run(hist, doc).statuses)[(referral_id, "adv-1")] == expected, commands


def test_a_command_on_a_payout_the_document_never_holds_changes_nothing() -> None:
    hist, _ = fraud_history(RewardAction.DENY)
    out = run(hist, document())  # no fraud limit: nothing held, the denial is refused
    assert [p.tier for p in out.payouts] == [1, 2]


def test_finance_results_are_replayed_a_failed_payout_is_cancelled_not_clawed_back() -> None:
    doc = document("  clawback: true\n")
    records = [profile("adv-1"), *referral("adv-1", "p-1", 0)]
    payout_id = run(history(*records), doc).payouts[0].payout_id
    later = T0 + timedelta(days=5)
    failed = PayoutResult(payout_id, 1, PayoutStatus.FAILED, later, "NO_ACCOUNT")
    reversed_ = DealEvent("d-p-1-r", PROGRAM, "deal-p-1", "p-1", DealStage.REVERSED, later)
    out = run(history(*records, failed, reversed_), doc)
    assert list(outcomes(out.statuses).values()) == ["REVERSED CANCELLED"]
    paid = PayoutResult(payout_id, 1, PayoutStatus.PAID, later)
    out = run(history(*records, paid, reversed_), doc)
    assert list(outcomes(out.statuses).values()) == ["CLAWED_BACK tier 1 50.00 USD"]
    assert [p.kind.value for p in out.payouts] == ["PAYOUT", "CLAWBACK"]


def test_a_reward_due_after_now_is_pending_and_not_issued() -> None:
    doc = document("  hold_days: 30\n")
    records = [profile("adv-1"), *referral("adv-1", "p-1", 0), *referral("adv-1", "p-2", 80)]
    out = run(history(*records), doc)  # p-2 won 18 days before NOW
    assert [p.tier for p in out.payouts] == [1]
    assert sorted(outcomes(out.statuses).values()) == [
        "PENDING tier 2 75.00 USD",
        "REWARDED tier 1 50.00 USD",
    ]


def test_the_same_document_over_its_own_record_changes_nothing() -> None:
    records = [profile("adv-1"), *referral("adv-1", "p-1", 0), *referral("adv-2", "p-2", 1)]
    records.append(profile("adv-2"))  # late: p-2 waits for it, then resolves
    out = run(history(*records), document())
    recorded = history(
        *records,
        statuses=tuple(enumerate(out.statuses)),
        payouts=tuple(out.payouts),
    )
    same = preview_of(recorded, document(), name="same.yaml", now=NOW, since=None)
    assert same.changes == []
    assert all(w == i for w, i in same.rows.values())
    assert len(same.rows) == 1 and next(iter(same.rows.values()))[0].count == 2


def test_a_raised_tier_shows_in_the_table_and_in_each_changed_referral() -> None:
    records = [profile("adv-1"), *referral("adv-1", "p-1", 0), *referral("adv-1", "p-2", 1)]
    out = run(history(*records), document())
    recorded = history(
        *records, statuses=tuple(enumerate(out.statuses)), payouts=tuple(out.payouts)
    )
    raised = document(
        tiers='    - {from_referral: 1, amount: "60.00", reward_type: GIFT_CARD}\n'
        '    - {from_referral: 2, amount: "75.00", reward_type: CHECK}\n'
    )
    preview = preview_of(recorded, raised, name="new.yaml", now=NOW, since=None)
    gift = preview.rows[("advocate", 1, "GIFT_CARD", "USD")]
    assert (gift[0].count, gift[0].amount_minor, gift[1].amount_minor) == (1, 6000, 5000)
    assert [(c.before, c.after) for c in preview.changes] == [
        ("REWARDED tier 1 50.00 USD", "REWARDED tier 1 60.00 USD")
    ]
    since = preview_of(recorded, raised, name="n", now=NOW, since=T0 + timedelta(hours=12))
    assert since.changes == [] and list(since.rows) == [("advocate", 2, "CHECK", "USD")]


def test_outcomes_do_not_depend_on_how_the_services_statuses_interleave() -> None:
    records = [profile("adv-1"), *referral("adv-1", "p-1", 0)]
    later = T0 + timedelta(days=5)
    records.append(DealEvent("d-r", PROGRAM, "deal-p-1", "p-1", DealStage.REVERSED, later))
    statuses = run(history(*records), document()).statuses
    ours = {ReferralStatus.REWARD_PENDING, ReferralStatus.REWARDED}  # the rewards service's
    rewards = [s for s in statuses if s.status in ours]
    attribution = [s for s in statuses if s.status not in ours]
    assert [s.status for s in attribution][-1] is ReferralStatus.REVERSED
    assert outcomes(attribution + rewards) == outcomes(rewards + attribution)
    assert list(outcomes(statuses).values()) == ["REWARDED tier 1 50.00 USD (deal REVERSED)"]


def test_a_simulated_year_replayed_with_its_operator_pays_what_the_ground_truth_owes() -> None:
    doc = load_program(DEMO_PROGRAM)
    sim = simulate(300, 7, NOW, doc)
    records = [record for _, _, record in sim.arrivals]
    first = replay(history(*records), Program(doc.program_id, 1, doc), NOW)
    deny = set(sim.truth["operator"]["deny"])
    held = [s for s in first.statuses if s.reason == "FRAUD_REVIEW"]
    assert len(held) == sim.truth["fraud_holds"]
    records += [
        OperatorCommand(
            f"cmd-{s.payout_id}",
            RewardAction.DENY if s.advocate_id in deny else RewardAction.APPROVE,
            s.payout_id or "",
            "ops",
            NOW,
        )
        for s in held
    ]
    hist = History(doc.program_id, tuple(Arrival(i, r) for i, r in enumerate(records)))
    out = replay(hist, Program(doc.program_id, 1, doc), NOW)
    preview = compare(
        recorded_statuses=(),
        recorded_payouts=(),
        statuses=out.statuses,
        payouts=out.payouts,
        referrals=None,
        preview=Preview(doc.program_id, "demo", 1, NOW, None, len(records)),
    )
    advocates = [w for (who, *_), (w, _) in preview.rows.items() if who == "advocate"]
    friends = preview.rows[("friend", 0, "BILL_CREDIT", "USD")][0]
    clawbacks = preview.clawbacks["USD"][0]
    assert sum(t.count for t in advocates) == sim.truth["rewards_owed"]
    assert (friends.count, friends.amount_minor) == tuple(
        sim.truth["friend_rewards"][k] for k in ("count", "amount_minor")
    )
    assert (clawbacks.count, clawbacks.amount_minor) == tuple(
        sim.truth["clawbacks"][k] for k in ("count", "amount_minor")
    )
