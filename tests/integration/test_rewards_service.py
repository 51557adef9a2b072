"""The rewards service as its own process against the real broker, driven like an operator does:
program put with the CLI, WON / REVERSED statuses as the attribution service would publish them,
payout results as finance would, operators' approve / retry on the service's internal command
path (`referrals approve|deny|retry` and their answers are the operator tests'), and
`referrals reconcile`."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from referrals.contract.avro import AvroCodec
from referrals.contract.records import (
    AdvocateProfile,
    Channel,
    MatchedBy,
    PayoutCommand,
    PayoutResult,
    PayoutStatus,
    Record,
    ReferralStatus,
    ReferralStatusChanged,
    RewardAction,
    RewardCommand,
)
from referrals.contract.topics import (
    ADVOCATES,
    PAYOUT_RESULTS,
    PAYOUTS,
    REWARDS_BY_PAYOUT,
    STATUS,
    dlq_of,
)
from referrals.platform.settings import KafkaSettings
from referrals.streams.dlq import header_dict
from services.rewards.domain import ids

from ..conftest import REPO, env_for
from .helpers import produce, read_topic, run_cli
from .test_service_skeletons import _free_port, _get, _metric, _wait_ready

pytestmark = pytest.mark.broker
ACME = REPO / "deploy" / "programs" / "acme-b2b.yaml"
CODEC = AvroCodec()
DAY_S = 86400


# -- helpers (also used by test_rewards_kill) ----------------------------------------------------
@dataclass
class Service:
    proc: subprocess.Popen[bytes]
    port: int
    log: Path

    def metric(self, name: str, **labels: str) -> float:
        return _metric(_get(f"http://127.0.0.1:{self.port}/metrics")[1], name, **labels)

    def stop(self) -> None:
        """SIGTERM: must stop cleanly (exit 0)."""
        self.proc.terminate()
        assert self.proc.wait(timeout=60) == 0, self.log.read_text()[-3000:]


RUN_REWARDS = ("referrals.tools.cli", "run", "rewards")


def start_rewards(
    topics: KafkaSettings,
    state: Path,
    *,
    wait_ready: bool = True,
    command: tuple[str, ...] = RUN_REWARDS,
    **env: str,
) -> Service:
    """`referrals run rewards` (or `python -m <command>`) with this test's topics, group and
    state directory."""
    port = _free_port()
    state.mkdir(parents=True, exist_ok=True)
    log = state.parent / f"rewards-{port}.log"
    settings = {
        "REWARDS_METRICS_PORT": str(port),
        "REWARDS_GROUP_ID": f"{topics.topic_prefix}rewards",
        "REWARDS_STATE_DIR": str(state),
        "REWARDS_SESSION_TIMEOUT_MS": "6000",  # the broker's minimum: a killed member goes fast
        **env,
    }
    with log.open("ab") as sink:
        proc = subprocess.Popen(
            [sys.executable, "-m", *command],
            cwd=REPO,
            env=env_for(topics, **settings),
            stdout=subprocess.DEVNULL,
            stderr=sink,
        )
    service = Service(proc, port, log)
    if wait_ready:
        _wait_ready(port, proc, within=60)
    return service


def put_program(
    topics: KafkaSettings, tmp_path: Path, *, top: dict[str, Any] | None = None, **rewards: Any
) -> None:
    """Puts acme-b2b.yaml with these `rewards` keys (and `top`-level keys such as status or
    fraud) changed (None removes one) via the CLI."""
    path = ACME
    if rewards or top:
        doc = yaml.safe_load(ACME.read_text())
        for where, changes in ((doc["rewards"], rewards), (doc, top or {})):
            for key, value in changes.items():
                if value is None:
                    where.pop(key, None)
                else:
                    where[key] = value
        path = tmp_path / f"program-{time.monotonic_ns()}.yaml"
        path.write_text(yaml.safe_dump(doc))
    result = run_cli(topics, "program", "put", str(path))
    assert result.returncode == 0, result.stderr


def status(
    advocate: str,
    referral: str,
    at: datetime,
    *,
    kind: ReferralStatus = ReferralStatus.WON,
    program: str = "acme-b2b",
    amount: int | None = 800_000,
    status_id: str | None = None,
) -> ReferralStatusChanged:
    """A WON (or REVERSED) as the attribution service publishes it."""
    return ReferralStatusChanged(
        status_id=status_id or f"{kind.value.lower()}-{referral}",
        referral_id=referral,
        program_id=program,
        advocate_id=advocate,
        prospect_id=f"prospect-{referral}",
        channel=Channel.EMAIL,
        matched_by=MatchedBy.CODE,
        status=kind,
        config_version=1,
        occurred_at=at,
        deal_id=f"deal-{referral}",
        amount_minor=amount,
        currency="USD" if amount is not None else None,
    )


async def publish_statuses(topics: KafkaSettings, records: list[ReferralStatusChanged]) -> None:
    await produce(topics, STATUS, [(r.advocate_id.encode(), CODEC.encode(r)) for r in records])


async def records(topics: KafkaSettings, topic: str, **kwargs: Any) -> list[Record]:
    """A topic's values, read_committed, in (partition, offset) order."""
    got = await read_topic(topics, topic, quiet=0.5, **kwargs)
    got.sort(key=lambda m: (m.partition, m.offset))
    return [CODEC.decode(m.value) for m in got]


async def payouts(topics: KafkaSettings, **kwargs: Any) -> list[PayoutCommand]:
    return [p for p in await records(topics, PAYOUTS, **kwargs) if isinstance(p, PayoutCommand)]


async def own_statuses(topics: KafkaSettings) -> list[ReferralStatusChanged]:
    """The statuses the rewards service produced (ours as inputs are WON / plain REVERSED)."""
    return [
        s
        for s in await records(topics, STATUS)
        if isinstance(s, ReferralStatusChanged) and s.status_id.startswith("st-")
    ]


async def eventually(check: Callable[[], Awaitable[bool]], what: str, within: float = 60.0) -> None:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if await check():
            return
        await asyncio.sleep(0.3)
    raise AssertionError(f"not seen within {within:.0f} s: {what}")


def payout_of(referral: str, program: str = "acme-b2b") -> str:
    return ids.payout_id(program, referral, "referral-reward")


def _seen(kind: ReferralStatus, statuses: list[ReferralStatusChanged]) -> set[str]:
    return {s.referral_id for s in statuses if s.status is kind}


def _cli_ok(topics: KafkaSettings, *args: str) -> str:
    result = run_cli(topics, *args)
    assert result.returncode == 0, result.stderr
    return result.stdout


async def send_command(
    topics: KafkaSettings, action: RewardAction, payout_id: str, command_id: str
) -> None:
    """An operator's command on the service's internal path (rewards.by-payout.v1)."""
    command = RewardCommand(command_id, payout_id, action, "ops", datetime.now(UTC))
    await produce(topics, REWARDS_BY_PAYOUT, [(payout_id.encode(), CODEC.encode(command))])


# -- 1. tiers -----------------------------------------------------------------------------------
async def test_wins_of_one_advocate_pay_climbing_tiers_once_the_hold_is_over(
    topics: KafkaSettings, tmp_path: Path
) -> None:
    put_program(topics, tmp_path)  # acme-b2b.yaml as shipped: hold_days 14, tax form at 600.00
    won_at = datetime.now(UTC) - timedelta(hours=1)
    profile = AdvocateProfile(
        "acme-b2b", "adv-1", "ada@example.com", "Ada", "0" * 64, False, True, won_at
    )
    await produce(topics, ADVOCATES, [(b"adv-1", CODEC.encode(profile))])
    await publish_statuses(topics, [status("adv-1", f"r{n}", won_at) for n in range(1, 7)])

    service = start_rewards(topics, tmp_path / "state")
    try:

        async def all_pending() -> bool:
            return len(_seen(ReferralStatus.REWARD_PENDING, await own_statuses(topics))) == 6

        await eventually(all_pending, "six REWARD_PENDING statuses")
        assert await payouts(topics) == []  # nothing is due for another 14 days
        assert service.metric("rewards_pending_releases") == 1  # one advocate's timer
    finally:
        service.stop()

    later = start_rewards(topics, tmp_path / "state", REWARDS_CLOCK_OFFSET_S=str(15 * DAY_S))
    try:
        issued = await payouts(topics, expect=6, within=60)
        gift_cards = later.metric(
            "rewards_payouts_issued_total", currency="USD", reward_type="GIFT_CARD"
        )
        checks = later.metric("rewards_payouts_issued_total", currency="USD", reward_type="CHECK")
        pending = later.metric("rewards_pending_releases")
    finally:
        later.stop()
    assert [p.amount_minor for p in issued] == [5_000, 5_000, 7_500, 7_500, 7_500, 40_000]
    assert [p.tier for p in issued] == [1, 1, 3, 3, 3, 6]
    assert [p.referral_id for p in issued] == [f"r{n}" for n in range(1, 7)]
    assert {(p.payout_id, p.attempt) for p in issued} == {
        (payout_of(f"r{n}"), 1) for n in range(1, 7)
    }
    assert (gift_cards, checks, pending) == (5, 1, 0)


# -- 2. reversal --------------------------------------------------------------------------------
async def test_a_reversal_cancels_a_pending_reward_and_the_next_referral_gets_the_right_tier(
    topics: KafkaSettings, tmp_path: Path
) -> None:
    put_program(topics, tmp_path)  # hold_days 14
    won_at = datetime.now(UTC) - timedelta(hours=1)
    await publish_statuses(
        topics,
        [
            status("adv-1", "r1", won_at),
            status("adv-1", "r2", won_at),
            status("adv-1", "r2", won_at, kind=ReferralStatus.REVERSED),
            status("adv-1", "r3", won_at),  # the 2nd counted win: tier 1, not tier 3
        ],
    )
    service = start_rewards(topics, tmp_path / "state")
    try:

        async def settled() -> bool:
            seen = await own_statuses(topics)
            cancelled = _seen(ReferralStatus.REVERSED, seen)
            return cancelled == {"r2"} and len(_seen(ReferralStatus.REWARD_PENDING, seen)) == 3

        await eventually(settled, "r2 cancelled, three rewards pending on the way")
    finally:
        service.stop()
    later = start_rewards(topics, tmp_path / "state", REWARDS_CLOCK_OFFSET_S=str(15 * DAY_S))
    try:
        issued = await payouts(topics, expect=2, within=60)

        async def released() -> bool:
            return later.metric("rewards_pending_releases") == 0

        await eventually(released, "no pending release left")
        issued = await payouts(topics)
    finally:
        later.stop()
    assert [(p.referral_id, p.amount_minor, p.tier) for p in issued] == [
        ("r1", 5_000, 1),
        ("r3", 5_000, 1),
    ]


# -- 3. approval --------------------------------------------------------------------------------
async def test_a_reward_over_the_approval_threshold_waits_for_the_approve_command(
    topics: KafkaSettings, tmp_path: Path
) -> None:
    put_program(topics, tmp_path, hold_days=0, approval_threshold="50.00")
    await publish_statuses(topics, [status("adv-1", "r1", datetime.now(UTC))])
    service = start_rewards(topics, tmp_path / "state")
    held = payout_of("r1")
    try:

        async def awaiting() -> bool:
            seen = await own_statuses(topics)
            return any(s.reason == "NEEDS_APPROVAL" for s in seen)

        await eventually(awaiting, "REWARD_HELD NEEDS_APPROVAL")
        await send_command(topics, RewardAction.APPROVE, held, "cmd-approve")
        [payout] = await payouts(topics, expect=1, within=60)
        assert (payout.payout_id, payout.attempt, payout.amount_minor) == (held, 1, 5_000)

        # A repeated approval reaches the service, which refuses it.
        await send_command(topics, RewardAction.APPROVE, held, "cmd-again")

        async def refused() -> bool:
            labels = {"action": "APPROVE", "reason": "ALREADY_APPROVED"}
            return service.metric("rewards_commands_refused_total", **labels) == 1

        await eventually(refused, "the service's refusal, counted")
        assert len(await payouts(topics)) == 1
        assert service.metric("rewards_commands_applied_total", action="APPROVE") == 1
    finally:
        service.stop()


# -- 4. payout results, retry, reconcile ----------------------------------------------------------
async def test_payout_results_mark_paid_or_failed_and_a_failed_payout_can_be_retried(
    topics: KafkaSettings, tmp_path: Path
) -> None:
    # one-sided: the friends' rewards and their reconciliation are test_rewards_commands's
    put_program(topics, tmp_path, hold_days=0, approval_threshold=None, friend_reward=None)
    now = datetime.now(UTC)
    await publish_statuses(topics, [status("adv-1", f"r{n}", now) for n in (1, 2, 3)])
    service = start_rewards(topics, tmp_path / "state")
    try:
        assert len(await payouts(topics, expect=3, within=60)) == 3
        answers = [
            PayoutResult(payout_of("r1"), 1, PayoutStatus.PAID, now),
            PayoutResult(payout_of("r2"), 1, PayoutStatus.FAILED, now, "ACCOUNT_CLOSED"),
            PayoutResult(payout_of("r3"), 1, PayoutStatus.FAILED, now, "BOUNCED"),
        ]
        await produce(
            topics, PAYOUT_RESULTS, [(r.payout_id.encode(), CODEC.encode(r)) for r in answers]
        )

        async def answered() -> bool:
            seen = await own_statuses(topics)
            return (
                _seen(ReferralStatus.PAID, seen) == {"r1"}
                and len(_seen(ReferralStatus.PAYOUT_FAILED, seen)) == 2
            )

        await eventually(answered, "PAID and PAYOUT_FAILED statuses")
        failed = [s for s in await own_statuses(topics) if s.status is ReferralStatus.PAYOUT_FAILED]
        assert {(s.referral_id, s.reason) for s in failed} == {
            ("r2", "ACCOUNT_CLOSED"),
            ("r3", "BOUNCED"),
        }
        await send_command(topics, RewardAction.RETRY, payout_of("r2"), "cmd-retry")
        retried = await payouts(topics, expect=4, within=60)
        assert (retried[-1].payout_id, retried[-1].attempt) == (payout_of("r2"), 1 + 1)
        assert service.metric("rewards_payout_failures_total") == 2
        # The results reached the advocates' ledgers within the transactions that routed them
        # (one process owns every task), not through rewards.by-advocate a transaction later.
        by_advocate = {"topic": "rewards.by-advocate.v1"}
        assert service.metric("referrals_records_handed_over_total", **by_advocate) >= 3
    finally:
        service.stop()

    report = json.loads(_cli_ok(topics, "reconcile", "--json"))
    [line] = report["programs"]
    assert (line["program_id"], line["currency"], line["attempts"]) == ("acme-b2b", "USD", 4)
    assert line["issued"] == {"count": 3, "amount_minor": 17_500, "amount": "175.00"}
    assert line["paid"] == {"count": 1, "amount_minor": 5_000, "amount": "50.00"}
    assert line["failed"] == {"count": 1, "amount_minor": 7_500, "amount": "75.00"}
    assert line["outstanding"] == {"count": 1, "amount_minor": 5_000, "amount": "50.00"}
    assert line["clawed_back"] == {"count": 0, "amount_minor": 0, "amount": "0.00"}
    assert line["friends"]["issued"]["count"] == 0
    assert report["errors"] == [] and report["unmatched_results"] == []  # v1 and v2 agree
    table = _cli_ok(topics, "reconcile").splitlines()
    row = "acme-b2b USD 3 / 175.00 1 / 50.00 1 / 75.00 1 / 50.00 4 0 / 0.00 0 / 0.00"
    assert table[1].split() == row.split()


# -- 6. bad input -------------------------------------------------------------------------------
async def test_bad_statuses_go_to_the_dlq_and_the_service_keeps_paying(
    topics: KafkaSettings, tmp_path: Path
) -> None:
    put_program(topics, tmp_path, hold_days=0)
    now = datetime.now(UTC)
    ghost = status("adv-2", "r9", now, program="no-such-program")
    await produce(
        topics,
        STATUS,
        [
            (b"adv-1", b"\x00 not avro at all"),
            (b"adv-2", CODEC.encode(ghost)),
            (b"adv-1", CODEC.encode(status("adv-1", "r1", now))),
        ],
    )
    service = start_rewards(topics, tmp_path / "state", REWARDS_UNKNOWN_PROGRAM_WAIT_S="1")
    try:
        [payout] = await payouts(topics, expect=1, within=60)
        assert payout.referral_id == "r1"
        dead = await read_topic(topics, dlq_of(STATUS), expect=2, within=60)
    finally:
        service.stop()
    by_reason = {header_dict(m.headers)["dlq.error.reason"]: m for m in dead}
    assert set(by_reason) == {"BAD_MAGIC", "UNKNOWN_PROGRAM"}
    assert by_reason["BAD_MAGIC"].value == b"\x00 not avro at all"
    assert by_reason["UNKNOWN_PROGRAM"].value == CODEC.encode(ghost)  # bytes unchanged
    assert all(header_dict(m.headers)["dlq.service"] == "rewards" for m in dead)
