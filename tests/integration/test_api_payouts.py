"""Payouts through a real server and client, answered by the real rewards service (a process):
approve and deny as the token's name, refusals as FAILED_PRECONDITION naming the state, no answer
within the deadline as DEADLINE_EXCEEDED (and the server gives up the call too), and Reconcile's
rows as `referrals reconcile` reports them, paged."""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from datetime import UTC, datetime
from pathlib import Path

import grpc
import pytest

from referrals.contract.records import OperatorCommand
from referrals.contract.topics import OPERATOR_COMMANDS
from referrals.platform.settings import KafkaSettings
from services.api.proto import referrals_pb2 as pb

from .api_support import bad_request, running_api
from .helpers import run_cli
from .test_rewards_service import (
    eventually,
    own_statuses,
    payout_of,
    payouts,
    publish_statuses,
    put_program,
    records,
    start_rewards,
    status,
)
from .test_service_skeletons import _get, _metric

pytestmark = pytest.mark.broker
APPROVE = "/referrals.v1.Payouts/ApproveReward"
DENY = "/referrals.v1.Payouts/DenyReward"
RETRY = "/referrals.v1.Payouts/RetryPayout"
RECONCILE = "/referrals.v1.Payouts/Reconcile"


async def test_commands_are_answered_by_the_rewards_service_and_recorded_as_the_token(
    topics: KafkaSettings, tmp_path: Path
) -> None:
    put_program(topics, tmp_path, hold_days=0, approval_threshold="50.00", tax_threshold=None)
    now = datetime.now(UTC)
    await publish_statuses(topics, [status("adv-1", f"r{n}", now) for n in (1, 2, 3)])
    async with running_api(topics, tmp_path) as api:
        # No rewards service yet: no answer within the call's deadline.
        started = time.monotonic()
        with pytest.raises(grpc.aio.AioRpcError) as late:
            await api.call(
                APPROVE,
                pb.PayoutCommandRequest(payout_id=payout_of("r3")),
                "operator",
                deadline=2.0,
            )
        assert late.value.code() is grpc.StatusCode.DEADLINE_EXCEEDED
        # Ended by the deadline, not by the API's own wait for an answer (20 s here): a bound with
        # room for a machine busy with another test worker.
        assert time.monotonic() - started < 15
        service = start_rewards(topics, tmp_path / "state")
        try:

            async def held() -> bool:
                reasons = [s.reason for s in await own_statuses(topics)]
                return reasons.count("NEEDS_APPROVAL") == 3

            await eventually(held, "three rewards held NEEDS_APPROVAL")
            approved = await api.call(
                APPROVE,
                pb.PayoutCommandRequest(payout_id=payout_of("r1"), by="ignored"),
                "operator",
            )
            denied = await api.call(
                DENY,
                pb.PayoutCommandRequest(
                    payout_id=payout_of("r2"), by="ops-bob", reason="self-dealing"
                ),
                "anon-operator",
            )
            refusals = {}
            for method, payout in ((APPROVE, "r1"), (APPROVE, "r2"), (RETRY, "r1")):
                with pytest.raises(grpc.aio.AioRpcError) as refused:
                    await api.call(
                        method, pb.PayoutCommandRequest(payout_id=payout_of(payout)), "operator"
                    )
                refusals[(method, payout)] = refused.value
            with pytest.raises(grpc.aio.AioRpcError) as anonymous:
                await api.call(
                    APPROVE, pb.PayoutCommandRequest(payout_id=payout_of("r3")), "anon-operator"
                )
        finally:
            service.stop()
        port = api.server.metrics_port
        body = (await asyncio.to_thread(_get, f"http://127.0.0.1:{port}/metrics"))[1]

    assert approved.state == "REWARDED (attempt 1)" and approved.command_id.startswith("cmd-")
    assert denied.state.startswith("REJECTED")
    for (method, _), err in refusals.items():
        assert err.code() is grpc.StatusCode.FAILED_PRECONDITION, method
    assert "it is REWARDED (attempt 1) (ALREADY_APPROVED)" in (
        refusals[(APPROVE, "r1")].details() or ""
    )
    assert "ALREADY_DENIED" in (refusals[(APPROVE, "r2")].details() or "")
    assert "NOT_FAILED" in (refusals[(RETRY, "r1")].details() or "")
    assert anonymous.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert set(bad_request(anonymous.value)) == {"by"}
    audit = [c for c in await records(topics, OPERATOR_COMMANDS) if isinstance(c, OperatorCommand)]
    by = {c.command_id: (c.action.value, c.by, c.reason) for c in audit}
    assert by[approved.command_id] == ("APPROVE", "ops-anna", None)
    # An unnamed token's command records what the caller claims and which token it came with.
    anon = hashlib.sha256(api.tokens["anon-operator"].encode()).hexdigest()[:12]
    claimed = f"ops-bob (unnamed operator token sha256:{anon})"
    assert by[denied.command_id] == ("DENY", claimed, "self-dealing")
    # The server itself answered the late call DEADLINE_EXCEEDED: it did not keep waiting.
    assert _metric(body, "referrals_api_calls_total", method=APPROVE, code="DEADLINE_EXCEEDED") == 1


async def test_reconcile_returns_the_rows_of_referrals_reconcile(
    topics: KafkaSettings, tmp_path: Path
) -> None:
    put_program(topics, tmp_path, hold_days=0, approval_threshold=None, tax_threshold=None)
    await publish_statuses(topics, [status("adv-1", "r1", datetime.now(UTC))])
    service = start_rewards(topics, tmp_path / "state")
    try:
        await payouts(topics, expect=1, within=60)
    finally:
        service.stop()
    expected = json.loads(run_cli(topics, "reconcile", "--json").stdout)["programs"]
    async with running_api(topics, tmp_path) as api:
        whole = await api.call(RECONCILE, pb.ReconcileRequest(), "finance")
        mine = await api.call(RECONCILE, pb.ReconcileRequest(program_id="acme-b2b"), "finance")
        other = await api.call(RECONCILE, pb.ReconcileRequest(program_id="beta"), "finance")
        with pytest.raises(grpc.aio.AioRpcError) as bad:
            await api.call(RECONCILE, pb.ReconcileRequest(page_token="nonsense"), "finance")

    def totals(t: pb.Totals) -> tuple[int, int]:
        return (t.count, t.amount_minor)

    got = [
        (
            line.program_id,
            line.currency,
            totals(line.issued),
            totals(line.outstanding),
            totals(line.friends_issued),
            line.attempts,
        )
        for line in whole.lines
    ]
    assert got == [
        (
            p["program_id"],
            p["currency"],
            (p["issued"]["count"], p["issued"]["amount_minor"]),
            (p["outstanding"]["count"], p["outstanding"]["amount_minor"]),
            (p["friends"]["issued"]["count"], p["friends"]["issued"]["amount_minor"]),
            p["attempts"],
        )
        for p in expected
    ]
    assert got == [("acme-b2b", "USD", (2, 7_500), (2, 7_500), (1, 2_500), 2)]
    assert not whole.errors and not whole.next_page_token
    assert mine == whole and list(other.lines) == []
    assert bad.value.code() is grpc.StatusCode.INVALID_ARGUMENT
