"""The advocate portal against the real broker, through a real grpc.aio server and client.

A scenario is published as the services would write it (profiles, a program put, statuses and
v2 payouts in transactions, finance's results); the portal's answers are checked against what
`referrals export` reads from the same topics, and two instances with their own state answer
alike. WatchReferrals gives the current state, then each change in commit order, and again the
current state after a reconnect; a restart resumes from the stored offsets.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import time
import uuid
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import grpc
import pytest
from prometheus_client import CollectorRegistry

from referrals.contract.avro import AvroCodec
from referrals.contract.personal import export
from referrals.contract.records import (
    AdvocateProfile,
    Channel,
    MatchedBy,
    PayoutCommand,
    PayoutKind,
    PayoutResult,
    PayoutStatus,
    Recipient,
    Record,
    ReferralStatus,
    ReferralStatusChanged,
    RewardType,
)
from referrals.contract.topics import ADVOCATES, PAYOUT_RESULTS, PAYOUTS_V2, STATUS, TopicNames
from referrals.platform.settings import KafkaSettings
from referrals.programs.document import validate
from referrals.programs.put import put
from referrals.streams.kafka import make_producer
from services.api.portal import Portal
from services.api.proto import referrals_pb2 as pb
from services.api.proto import referrals_pb2_grpc as pb_grpc

pytestmark = pytest.mark.broker

PROGRAM = "portal-prog"
CODEC = AvroCodec()
S = ReferralStatus
NOW = datetime.now(UTC).replace(microsecond=0)
_server_ids = iter(range(1_000_000))


def _t(minutes: int) -> datetime:
    return NOW - timedelta(hours=2) + timedelta(minutes=minutes)


async def _publish(settings: KafkaSettings, topic: str, *items: tuple[str, Record | None]) -> None:
    """One transaction, as the services and `referrals publish` write."""
    producer = make_producer(settings, transactional_id=f"tests-portal-{uuid.uuid4()}")
    await producer.start()
    try:
        async with producer.transaction():
            physical = TopicNames(settings.topic_prefix)(topic)
            for k, record in items:
                value = None if record is None else CODEC.encode(record)
                await producer.send(physical, value, key=k.encode())
    finally:
        await producer.stop()


def _profile(advocate: str, name: str) -> tuple[str, AdvocateProfile]:
    email = f"{advocate}@example.com"
    digest = hashlib.sha256(email.encode()).hexdigest()
    return advocate, AdvocateProfile(PROGRAM, advocate, email, name, digest, False, True, _t(0))


def _status(
    advocate: str, referral: str, state: S, minute: int, reason: str | None = None, **extra: object
) -> tuple[str, ReferralStatusChanged]:
    record = ReferralStatusChanged(
        status_id=f"{referral}-{state}-{minute}",
        referral_id=referral,
        program_id=PROGRAM,
        advocate_id=advocate,
        prospect_id=f"prospect-{referral}",
        channel=Channel.EMAIL,
        matched_by=MatchedBy.CODE,
        status=state,
        config_version=1,
        occurred_at=_t(minute),
        reason=reason,
        **extra,  # type: ignore[arg-type]
    )
    return advocate, record


def _payout(
    advocate: str, payout_id: str, referral: str, amount: int, **extra: object
) -> tuple[str, PayoutCommand]:
    record = PayoutCommand(
        payout_id, 1, PROGRAM, advocate, referral, RewardType.GIFT_CARD, amount, "USD",
        "referral-reward", 1, 1, _t(30), **extra,  # type: ignore[arg-type]
    )  # fmt: skip
    return advocate, record


async def _program(settings: KafkaSettings) -> None:
    doc = validate(
        {
            "program_id": PROGRAM,
            "currency": "USD",
            "rewards": {
                "period": "LIFETIME",
                "tiers": [
                    {"from_referral": 1, "amount": "50.00", "reward_type": "GIFT_CARD"},
                    {"from_referral": 3, "amount": "75.00", "reward_type": "GIFT_CARD"},
                    {"from_referral": 6, "percent": "5", "reward_type": "CHECK"},
                ],
            },
        }
    )
    await put(settings, doc, published_by="tests")


async def _scenario(settings: KafkaSettings) -> None:
    """adv-a: r1 paid, r2 held for approval, r3 rejected, r4 failed (finance's free text);
    a friend reward and a clawback that do not count; adv-b: no referrals; adv-c: to erase."""
    await _program(settings)
    await _publish(
        settings, ADVOCATES, _profile("adv-a", "Ada"), _profile("adv-b", "Bo"),
        _profile("adv-c", "Cy"),
    )  # fmt: skip
    a = "adv-a"
    await _publish(
        settings, STATUS,
        _status(a, "r1", S.LEAD, 1), _status(a, "r1", S.WON, 2),
        _status(a, "r2", S.LEAD, 3), _status(a, "r3", S.REJECTED, 4, "SELF_REFERRAL"),
        _status(a, "r4", S.LEAD, 5), _status(a, "r4", S.WON, 6), _status(a, "r2", S.WON, 7),
    )  # fmt: skip
    await _publish(
        settings, STATUS,
        _status(a, "r1", S.REWARDED, 30, payout_id="p1", amount_minor=5_000, currency="USD"),
        _status(a, "r4", S.REWARDED, 30, payout_id="p4", amount_minor=5_000, currency="USD"),
        _status(a, "r2", S.REWARD_HELD, 31, "NEEDS_APPROVAL", payout_id="p2",
                amount_minor=100_000, currency="USD"),
    )  # fmt: skip
    await _publish(
        settings, PAYOUTS_V2,
        _payout(a, "p1", "r1", 5_000), _payout(a, "p4", "r4", 5_000),
        _payout(a, "f1", "r1", 2_500, recipient=Recipient.FRIEND),
        _payout(a, "c9", "r9", 9_999, kind=PayoutKind.CLAWBACK),
    )  # fmt: skip
    await _publish(
        settings,
        PAYOUT_RESULTS,
        ("p1", PayoutResult("p1", 1, PayoutStatus.PAID, _t(40))),
        ("p4", PayoutResult("p4", 1, PayoutStatus.FAILED, _t(40), "card expired")),
    )
    await _publish(
        settings, STATUS,
        _status(a, "r1", S.PAID, 41, payout_id="p1"),
        _status(a, "r1", S.PAID, 41, payout_id="p1"),  # at least once: a repeat
        _status(a, "r4", S.PAYOUT_FAILED, 41, "card expired", payout_id="p4"),
    )  # fmt: skip


@contextlib.asynccontextmanager
async def _running(
    settings: KafkaSettings, state: Path
) -> AsyncIterator[tuple[Portal, pb_grpc.AdvocatesStub, Callable[[str], float]]]:
    """A portal, its servicer on a real grpc.aio server on a free port, and a real client."""
    registry = CollectorRegistry()
    portal = Portal(settings, state, registry)
    await portal.start()
    server = grpc.aio.server()
    pb_grpc.add_AdvocatesServicer_to_server(portal.servicer(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")

    def applied(topic: str) -> float:
        value = registry.get_sample_value(
            "referrals_portal_records_applied_total", {"topic": topic}
        )
        return value or 0.0

    try:
        await _until(portal.ready, "the portal caught up", 30)
        yield portal, pb_grpc.AdvocatesStub(channel), applied
    finally:
        await channel.close()
        await server.stop(grace=None)
        await portal.stop()


async def _until(check: Callable[[], object], what: str, within: float = 20.0) -> None:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        outcome = check()
        if asyncio.iscoroutine(outcome):
            outcome = await outcome
        if outcome:
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"not within {within} s: {what}")


async def _all_pages(stub: pb_grpc.AdvocatesStub, advocate: str, size: int) -> list[pb.Referral]:
    out: list[pb.Referral] = []
    token = ""
    while True:
        page = await stub.ListReferrals(
            pb.ListReferralsRequest(advocate_id=advocate, page_size=size, page_token=token)
        )
        out += page.referrals
        token = page.next_page_token
        if not token:
            return out


def _status_name(value: int) -> str:
    return str(pb.ReferralStatus.Name(value)).removeprefix("REFERRAL_STATUS_")


async def test_the_portal_answers_as_the_topics_say_and_alike_on_two_instances(
    topics: KafkaSettings, tmp_path: Path
) -> None:
    await _scenario(topics)
    async with (
        _running(topics, tmp_path / "one") as (_, one, _),
        _running(topics, tmp_path / "two") as (_, two, _),
    ):
        ada = await one.GetAdvocate(pb.GetAdvocateRequest(advocate_id="adv-a"))
        assert (ada.program_id, ada.display_name, ada.erased) == (PROGRAM, "Ada", False)
        assert (ada.referrals_total, ada.referrals_won_in_period) == (4, 3)
        [usd] = ada.rewards
        assert (usd.currency, usd.issued_minor, usd.paid_minor, usd.failed_minor) == (
            "USD", 10_000, 5_000, 5_000,
        )  # fmt: skip
        assert usd.held_minor == 100_000
        assert ada.HasField("next_tier")
        assert (ada.next_tier.from_referral, ada.next_tier.referrals_to_go) == (6, 3)
        assert ada.next_tier.percent == "5"

        listed = await _all_pages(one, "adv-a", 3)
        assert [r.referral_id for r in listed] == ["r4", "r3", "r2", "r1"]
        # What the topics say (`referrals export` reads them directly).
        truth = await export(topics, "adv-a")
        by_id = {r.referral_id: r for r in listed}
        for referral in truth.referrals:
            shown = by_id[referral.referral_id]
            assert [_status_name(h.status) for h in shown.history] == [
                s.status.value for s in referral.history
            ]
            assert shown.reason == (referral.history[-1].reason or "")
        paid = sum(
            w.payout.amount_minor
            for w in truth.rewards
            if w.payout.recipient is Recipient.ADVOCATE
            and w.payout.kind is PayoutKind.PAYOUT
            and w.results
            and w.results[-1].status is PayoutStatus.PAID
        )
        assert paid == usd.paid_minor
        assert by_id["r1"].status == pb.REFERRAL_STATUS_PAID and len(by_id["r1"].history) == 4
        assert by_id["r4"].payout_id == "p4" and "(card expired)" in by_id["r4"].explanation
        assert "approve" in by_id["r2"].explanation
        assert by_id["r3"].explanation.startswith("Not credited")

        # Two instances, each with its own state, answer alike.
        for advocate in ("adv-a", "adv-b", "adv-c"):
            request = pb.GetAdvocateRequest(advocate_id=advocate)
            assert await one.GetAdvocate(request) == await two.GetAdvocate(request)
            assert await _all_pages(one, advocate, 2) == await _all_pages(two, advocate, 0)

        bo = await two.GetAdvocate(pb.GetAdvocateRequest(advocate_id="adv-b"))
        assert (bo.referrals_total, list(bo.rewards), bo.next_tier.referrals_to_go) == (0, [], 1)

        with pytest.raises(grpc.aio.AioRpcError) as unknown:
            await one.GetAdvocate(pb.GetAdvocateRequest(advocate_id="nobody"))
        assert unknown.value.code() == grpc.StatusCode.NOT_FOUND
        with pytest.raises(grpc.aio.AioRpcError) as unknown_list:
            await one.ListReferrals(pb.ListReferralsRequest(advocate_id="nobody"))
        assert unknown_list.value.code() == grpc.StatusCode.NOT_FOUND

        # Erasure through the API: the same function as `referrals erase`.
        erased = await one.EraseAdvocate(pb.EraseAdvocateRequest(advocate_id="adv-c"))
        assert (erased.advocate_id, erased.already_erased) == ("adv-c", False)
        again = await two.EraseAdvocate(pb.EraseAdvocateRequest(advocate_id="adv-c"))
        assert again.already_erased

        async def shown_erased() -> bool:
            request = pb.GetAdvocateRequest(advocate_id="adv-c")
            answers = [await one.GetAdvocate(request), await two.GetAdvocate(request)]
            return all(a.erased and a.display_name == "" for a in answers)

        await _until(shown_erased, "both instances show adv-c erased")
        cy = await one.GetAdvocate(pb.GetAdvocateRequest(advocate_id="adv-c"))
        assert cy.program_id == PROGRAM


async def _next(stream: object, within: float = 10.0) -> pb.Referral:
    message = await asyncio.wait_for(stream.read(), within)  # type: ignore[attr-defined]
    assert isinstance(message, pb.Referral), message
    return message


async def test_watch_gives_the_current_state_then_each_change_in_commit_order(
    topics: KafkaSettings, tmp_path: Path
) -> None:
    await _program(topics)
    w = "adv-w"
    await _publish(topics, ADVOCATES, _profile(w, "Wu"), _profile("adv-q", "Quiet"))
    await _publish(topics, STATUS, _status(w, "r1", S.LEAD, 1))
    async with _running(topics, tmp_path / "w") as (_, stub, _):
        with pytest.raises(grpc.aio.AioRpcError) as unknown:
            await stub.WatchReferrals(pb.WatchReferralsRequest(advocate_id="nobody")).read()
        assert unknown.value.code() == grpc.StatusCode.NOT_FOUND

        quiet = stub.WatchReferrals(pb.WatchReferralsRequest(advocate_id="adv-q"))
        stream = stub.WatchReferrals(pb.WatchReferralsRequest(advocate_id=w))
        first = await _next(stream)
        assert (first.referral_id, first.status) == ("r1", pb.REFERRAL_STATUS_LEAD)

        changes = [
            _status(w, "r2", S.LEAD, 2),
            _status(w, "r1", S.WON, 3),
            _status(w, "r2", S.REJECTED, 4, "ALREADY_REFERRED"),
            _status(w, "r1", S.REWARD_PENDING, 5),
        ]
        for change in changes:  # one transaction each: four commits
            await _publish(topics, STATUS, change)
        seen = [await _next(stream) for _ in changes]
        assert [(m.referral_id, _status_name(m.status)) for m in seen] == [
            ("r2", "LEAD"), ("r1", "WON"), ("r2", "REJECTED"), ("r1", "REWARD_PENDING"),
        ]  # fmt: skip
        stream.cancel()

        # A known advocate without referrals: the stream stays open, then hears the first.
        quiet_read = asyncio.ensure_future(quiet.read())
        await asyncio.sleep(1.0)
        assert not quiet_read.done()
        await _publish(topics, STATUS, _status("adv-q", "q1", S.LEAD, 6))
        heard = await asyncio.wait_for(quiet_read, 10.0)
        assert heard.referral_id == "q1"
        quiet.cancel()

        # Reconnecting: the current state again, then what changes next.
        await _publish(topics, STATUS, _status(w, "r1", S.REWARDED, 7, payout_id="p1"))

        async def rewarded() -> bool:
            page = await stub.ListReferrals(pb.ListReferralsRequest(advocate_id=w))
            return any(r.status == pb.REFERRAL_STATUS_REWARDED for r in page.referrals)

        await _until(rewarded, "r1 REWARDED applied")
        again = stub.WatchReferrals(pb.WatchReferralsRequest(advocate_id=w))
        current = [await _next(again), await _next(again)]
        assert [(m.referral_id, m.status) for m in current] == [
            ("r2", pb.REFERRAL_STATUS_REJECTED), ("r1", pb.REFERRAL_STATUS_REWARDED),
        ]  # fmt: skip
        await _publish(topics, STATUS, _status(w, "r1", S.PAID, 8, payout_id="p1"))
        assert (await _next(again)).status == pb.REFERRAL_STATUS_PAID
        again.cancel()


async def test_a_restarted_portal_reads_only_what_is_new(
    topics: KafkaSettings, tmp_path: Path
) -> None:
    await _program(topics)
    await _publish(topics, ADVOCATES, _profile("adv-r", "Ray"))
    await _publish(topics, STATUS, *(_status("adv-r", f"r{n}", S.LEAD, n) for n in range(5)))
    async with _running(topics, tmp_path / "r") as (_, stub, applied):
        assert applied(STATUS) == 5
        before = await stub.GetAdvocate(pb.GetAdvocateRequest(advocate_id="adv-r"))
        assert before.referrals_total == 5
    await _publish(
        topics, STATUS, _status("adv-r", "r0", S.WON, 9), _status("adv-r", "r9", S.LEAD, 9)
    )
    async with _running(topics, tmp_path / "r") as (portal, stub, applied):
        await _until(lambda: applied(STATUS) >= 2, "the new statuses applied")
        assert applied(STATUS) == 2 and applied(ADVOCATES) == 0  # nothing read twice
        after = await stub.GetAdvocate(pb.GetAdvocateRequest(advocate_id="adv-r"))
        assert (after.referrals_total, after.referrals_won_in_period) == (6, 1)
        assert portal.lag() == 0
