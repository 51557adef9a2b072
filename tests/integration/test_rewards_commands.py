"""The money rules end to end: the real rewards service, operators using the CLI
(`referrals approve|deny|retry`, which publish to operator.commands.v1 and wait for the
service's CommandResult), finance's results, and `referrals reconcile` over rewards.payouts.v2.
Every command outcome the contract names is exercised: APPLIED (approve, deny, retry of the
advocate's and of the friend's payout, a repeated command_id), and REFUSED (approve twice,
approve after deny, deny after approve, retry of a payout not FAILED, a payout not under
review, an unknown payout); two-sided rewards, clawbacks, fraud holds and a paused program."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from referrals.contract.records import (
    CommandOutcome,
    CommandResult,
    OperatorCommand,
    PayoutCommand,
    PayoutKind,
    PayoutResult,
    PayoutStatus,
    Recipient,
    ReferralStatus,
    RewardAction,
)
from referrals.contract.topics import (
    COMMAND_RESULTS,
    OPERATOR_COMMANDS,
    PAYOUT_RESULTS,
    PAYOUTS,
    PAYOUTS_V2,
)
from referrals.platform.settings import KafkaSettings
from services.rewards.domain import ids

from .helpers import produce, run_cli
from .test_rewards_service import (
    CODEC,
    eventually,
    own_statuses,
    payout_of,
    publish_statuses,
    put_program,
    records,
    start_rewards,
    status,
)

pytestmark = pytest.mark.broker


def friend_of(referral: str) -> str:
    return ids.payout_id("acme-b2b", referral, "friend", PayoutKind.PAYOUT, Recipient.FRIEND)


def cli(topics: KafkaSettings, *args: str) -> tuple[int, str]:
    result = run_cli(topics, *args, "--by", "ops-anna", "--timeout", "45", timeout=90)
    return result.returncode, result.stdout + result.stderr


async def v2(topics: KafkaSettings) -> list[PayoutCommand]:
    return [p for p in await records(topics, PAYOUTS_V2) if isinstance(p, PayoutCommand)]


async def v1(topics: KafkaSettings) -> list[PayoutCommand]:
    return [p for p in await records(topics, PAYOUTS) if isinstance(p, PayoutCommand)]


async def results(topics: KafkaSettings) -> list[CommandResult]:
    return [r for r in await records(topics, COMMAND_RESULTS) if isinstance(r, CommandResult)]


async def answer(topics: KafkaSettings, *answers: PayoutResult) -> None:
    await produce(
        topics, PAYOUT_RESULTS, [(r.payout_id.encode(), CODEC.encode(r)) for r in answers]
    )


async def test_every_operator_command_outcome_and_two_sided_rewards_with_a_clawback(
    topics: KafkaSettings, tmp_path: Path
) -> None:
    # acme-b2b: a friend reward of 25.00, clawback on; every reward here waits for approval.
    put_program(topics, tmp_path, hold_days=0, approval_threshold="50.00", tax_threshold=None)
    now = datetime.now(UTC)
    await publish_statuses(topics, [status("adv-1", f"r{n}", now) for n in (1, 2, 3, 4)])
    service = start_rewards(topics, tmp_path / "state")
    try:

        async def held() -> bool:
            reasons = [s.reason for s in await own_statuses(topics)]
            return reasons.count("NEEDS_APPROVAL") == 4

        await eventually(held, "four rewards held NEEDS_APPROVAL")
        assert await v2(topics) == []  # the friends' rewards wait with their referrals

        code, out = cli(topics, "approve", payout_of("r1"), "--reason", "checked the deal")
        assert code == 0, out
        assert "applied" in out and "REWARDED (attempt 1)" in out
        code, out = cli(topics, "approve", payout_of("r1"))
        assert (code, "ALREADY_APPROVED" in out, "REWARDED" in out) == (1, True, True), out

        code, out = cli(topics, "deny", payout_of("r2"), "--reason", "self-dealing")
        assert code == 0, out
        code, out = cli(topics, "approve", payout_of("r2"))
        assert (code, "ALREADY_DENIED" in out) == (1, True), out
        code, out = cli(topics, "deny", payout_of("r1"))
        assert (code, "ALREADY_APPROVED" in out) == (1, True), out
        code, out = cli(topics, "retry", payout_of("r3"))
        assert (code, "NOT_FAILED" in out, "REWARD_HELD (NEEDS_APPROVAL)" in out) == (1, True, True)
        code, out = cli(topics, "approve", "po-no-such-payout")
        assert (code, "UNKNOWN_PAYOUT" in out) == (1, True), out

        # r4 reversed while held: cancelled, so no longer under review
        await publish_statuses(topics, [status("adv-1", "r4", now, kind=ReferralStatus.REVERSED)])

        async def cancelled() -> bool:
            return any(s.reason == "REWARD_CANCELLED" for s in await own_statuses(topics))

        await eventually(cancelled, "r4 cancelled")
        code, out = cli(topics, "approve", payout_of("r4"))
        assert (code, "NOT_AWAITING_REVIEW" in out) == (1, True), out

        # The same command delivered twice (one command_id): answered twice, applied once.
        again = OperatorCommand("cmd-twice", RewardAction.APPROVE, payout_of("r3"), "ops", now)
        await produce(topics, OPERATOR_COMMANDS, [(b"cmd-twice", CODEC.encode(again))] * 2)

        async def twice() -> bool:
            return [r.command_id for r in await results(topics)].count("cmd-twice") == 2

        await eventually(twice, "two answers to cmd-twice")

        # Finance: r1's payout fails, its friend's too; both are retried, then paid.
        await answer(
            topics,
            PayoutResult(payout_of("r1"), 1, PayoutStatus.FAILED, now, "BOUNCED"),
            PayoutResult(friend_of("r1"), 1, PayoutStatus.FAILED, now, "CLOSED"),
        )

        async def failed() -> bool:
            return any(s.status is ReferralStatus.PAYOUT_FAILED for s in await own_statuses(topics))

        await eventually(failed, "r1 PAYOUT_FAILED")
        code, out = cli(topics, "retry", payout_of("r1"))
        assert (code, "attempt 2" in out) == (0, True), out
        for _ in range(2):  # the friend's result may still be on its way: NOT_FAILED, once
            code, out = cli(topics, "retry", friend_of("r1"))
            if code == 0:
                break
        assert (code, "friend reward REWARDED (attempt 2)" in out) == (0, True), out
        await answer(
            topics,
            PayoutResult(payout_of("r1"), 2, PayoutStatus.PAID, now),
            PayoutResult(friend_of("r1"), 2, PayoutStatus.PAID, now),
        )

        async def paid() -> bool:
            return any(s.status is ReferralStatus.PAID for s in await own_statuses(topics))

        await eventually(paid, "r1 PAID")
        # A refund after payment: both of r1's payouts are clawed back.
        later = now + timedelta(minutes=5)
        await publish_statuses(
            topics,
            [status("adv-1", "r1", later, kind=ReferralStatus.REVERSED, status_id="refund-r1")],
        )

        async def clawed() -> bool:
            return sum(p.kind is PayoutKind.CLAWBACK for p in await v2(topics)) == 2

        await eventually(clawed, "two clawbacks on rewards.payouts.v2")
        # ... and a second refund event changes nothing
        await publish_statuses(
            topics,
            [status("adv-1", "r1", later, kind=ReferralStatus.REVERSED, status_id="refund-r1b")],
        )

        async def ignored() -> bool:
            name = "rewards_statuses_ignored_total"
            return service.metric(name, outcome="ALREADY_REVERSED") == 1

        await eventually(ignored, "the repeated reversal ignored")
    finally:
        service.stop()

    # -- what the topics say ----------------------------------------------------------------
    money, advocate_only = await v2(topics), await v1(topics)
    keys = [(p.payout_id, p.attempt) for p in money]
    assert len(keys) == len(set(keys))  # exactly once, whatever the kind
    assert {(p.payout_id, p.attempt) for p in advocate_only} == {
        (p.payout_id, p.attempt)
        for p in money
        if p.kind is PayoutKind.PAYOUT and p.recipient is Recipient.ADVOCATE
    }
    friends = [p for p in money if p.recipient is Recipient.FRIEND and p.kind is PayoutKind.PAYOUT]
    assert sorted((p.referral_id, p.attempt) for p in friends) == [("r1", 1), ("r1", 2), ("r3", 1)]
    assert all(
        (p.prospect_id, p.rule_id, p.tier, p.amount_minor)
        == (f"prospect-{p.referral_id}", "friend", 0, 2_500)
        for p in friends
    )
    clawbacks = {p.original_payout_id: p for p in money if p.kind is PayoutKind.CLAWBACK}
    assert set(clawbacks) == {payout_of("r1"), friend_of("r1")}
    assert clawbacks[payout_of("r1")].amount_minor == 5_000
    assert not any(p.referral_id in ("r2", "r4") for p in money)  # denied, cancelled
    mine = await own_statuses(topics)
    assert ("r2", ReferralStatus.REJECTED, "DENIED") in {
        (s.referral_id, s.status, s.reason) for s in mine
    }
    assert ("r1", ReferralStatus.REVERSED, "CLAWED_BACK") in {
        (s.referral_id, s.status, s.reason) for s in mine
    }

    answers = await results(topics)
    outcomes = sorted((r.action.value, r.outcome.value, r.reason or "") for r in answers)
    assert outcomes == sorted(
        [
            ("APPROVE", "APPLIED", ""),  # r1
            ("APPROVE", "REFUSED", "ALREADY_APPROVED"),
            ("DENY", "APPLIED", ""),  # r2
            ("APPROVE", "REFUSED", "ALREADY_DENIED"),
            ("DENY", "REFUSED", "ALREADY_APPROVED"),
            ("RETRY", "REFUSED", "NOT_FAILED"),
            ("APPROVE", "REFUSED", "UNKNOWN_PAYOUT"),
            ("APPROVE", "REFUSED", "NOT_AWAITING_REVIEW"),
            ("APPROVE", "APPLIED", ""),  # cmd-twice
            ("APPROVE", "APPLIED", ""),  # cmd-twice again: no second effect
            ("RETRY", "APPLIED", ""),  # r1
            *[("RETRY", "REFUSED", "NOT_FAILED")] * (len(answers) - 12),
            ("RETRY", "APPLIED", ""),  # r1's friend
        ]
    )
    audit = [c for c in await records(topics, OPERATOR_COMMANDS) if isinstance(c, OperatorCommand)]
    assert {c.command_id for c in audit} == {r.command_id for r in answers}
    denial = next(c for c in audit if c.action is RewardAction.DENY and c.reason)
    assert (denial.by, denial.reason, denial.target_id) == (
        "ops-anna",
        "self-dealing",
        payout_of("r2"),
    )
    assert all(r.outcome in (CommandOutcome.APPLIED, CommandOutcome.REFUSED) for r in answers)

    report = json.loads(run_cli(topics, "reconcile", "--json").stdout)
    [line] = report["programs"]
    assert line["clawed_back"] == {"count": 2, "amount_minor": 7_500, "amount": "75.00"}
    assert line["friends"]["issued"]["count"] == 2
    assert report["errors"] == []

    # finance's year-end view: r1 was paid (on its second attempt) and clawed back; friends are
    # not the advocate's income
    year = str(now.astimezone(ZoneInfo("America/New_York")).year)
    csv = run_cli(topics, "tax-report", "--year", year).stdout.splitlines()
    header, *rows = (row.split(",") for row in csv)
    [row] = [dict(zip(header, r, strict=True)) for r in rows]
    assert (row["advocate_id"], row["paid"], row["clawed_back"], row["net"]) == (
        "adv-1",
        "50.00",
        "50.00",
        "0.00",
    )


async def test_fraud_velocity_holds_the_days_extra_wins_and_a_paused_program_holds_new_rewards(
    topics: KafkaSettings, tmp_path: Path
) -> None:
    two_a_day = {"fraud": {"max_wins_per_day": 2}}
    put_program(topics, tmp_path, top=two_a_day, hold_days=0, approval_threshold=None)
    ny = ZoneInfo("America/New_York")
    day = datetime(2026, 11, 3, tzinfo=ny)  # a New York day: its 23:30 is 04:30 UTC the next
    wins = [
        status("adv-7", "f1", (day + timedelta(hours=10)).astimezone(UTC)),
        status("adv-7", "f2", (day + timedelta(hours=11)).astimezone(UTC)),
        status("adv-7", "f3", (day + timedelta(hours=23, minutes=30)).astimezone(UTC)),
        status("adv-7", "f4", (day + timedelta(hours=24, minutes=30)).astimezone(UTC)),
    ]
    await publish_statuses(topics, wins)
    service = start_rewards(topics, tmp_path / "state", REWARDS_PUNCTUATE_MS="200")
    try:

        async def decided() -> bool:
            referrals = {p.referral_id for p in await v1(topics)}
            return referrals == {"f1", "f2", "f4"}

        await eventually(decided, "f1, f2 and f4 paid; f3, the day's third, held")
        held = [s for s in await own_statuses(topics) if s.status is ReferralStatus.REWARD_HELD]
        assert [(s.referral_id, s.reason) for s in held] == [("f3", "FRAUD_REVIEW")]
        assert friend_of("f3") not in {p.payout_id for p in await v2(topics)}
        code, out = cli(topics, "approve", payout_of("f3"), "--reason", "a trade fair day")
        assert code == 0, out

        async def released() -> bool:
            return {friend_of("f3"), payout_of("f3")} <= {p.payout_id for p in await v2(topics)}

        await eventually(released, "f3 and its friend paid once approved")

        # Paused: a new win is attributed and held; active again, it is paid.
        put_program(topics, tmp_path, top={**two_a_day, "status": "PAUSED"}, hold_days=0)

        async def version(n: int) -> bool:
            return service.metric("referrals_program_version", program="acme-b2b") == n

        await eventually(lambda: version(2), "the paused version in force")
        await publish_statuses(topics, [status("adv-8", "p1", datetime.now(UTC))])

        async def paused() -> bool:
            return any(s.reason == "PROGRAM_PAUSED" for s in await own_statuses(topics))

        await eventually(paused, "p1 held PROGRAM_PAUSED")
        assert payout_of("p1") not in {p.payout_id for p in await v2(topics)}
        code, out = cli(topics, "approve", payout_of("p1"))
        assert (code, "NOT_AWAITING_REVIEW" in out) == (1, True), out  # the program decides
        put_program(topics, tmp_path, top={**two_a_day, "status": "ACTIVE"}, hold_days=0)

        async def resumed() -> bool:
            return {friend_of("p1"), payout_of("p1")} <= {p.payout_id for p in await v2(topics)}

        await eventually(resumed, "p1 and its friend paid once the program is active again")
    finally:
        service.stop()
    money = await v2(topics)
    assert len({(p.payout_id, p.attempt) for p in money}) == len(money) == 10  # 5 x 2 sides
