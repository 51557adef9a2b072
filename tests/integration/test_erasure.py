"""Erasure (GDPR) through the three services as processes, and the right of access.

An advocate is erased with `referrals erase` while their reward is held (REWARD_PENDING, a
14-day hold) and their WON message waits for an SMTP relay that is down; the rewards,
notifications and attribution services are SIGKILLed around the erasure and restarted. Then,
within 60 s, no internal or changelog topic holds the person's email or name as the latest
value of any key (the other advocate's still do: the scan sees real state), the advocates
topic's latest record for them is the tombstone, nothing is sent to them afterwards, their
held reward is still held, a later referral naming them is REJECTED ADVOCATE_ERASED, and a
second erase publishes nothing. `referrals export` is checked against records published.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from referrals.contract.avro import AvroCodec
from referrals.contract.records import (
    AdvocateProfile,
    Channel,
    ConversionEvent,
    DealEvent,
    DealStage,
    MatchedBy,
    NotificationSent,
    PayoutCommand,
    PayoutKind,
    PayoutResult,
    PayoutStatus,
    Recipient,
    Record,
    ReferralStatus,
    ReferralStatusChanged,
    RewardType,
    ShareEvent,
)
from referrals.contract.topics import (
    ADVOCATES,
    CONVERSIONS,
    DEALS,
    DLQ_SUFFIX,
    NOTIFICATIONS_SENT,
    PAYOUT_RESULTS,
    PAYOUTS_V2,
    SHARES,
    STATUS,
    TopicNames,
)
from referrals.platform.settings import KafkaSettings
from referrals.programs.model import MessageKind
from referrals.streams.kafka import make_admin
from referrals.streams.reading import read_records
from referrals.tools.faults.inject import Fleet
from services.notifications.domain.ids import notification_id

from ..conftest import REPO
from .helpers import produce, run_cli
from .test_notifications_support import SmtpSink

pytestmark = pytest.mark.broker
CODEC = AvroCodec()
PROGRAM = "acme-b2b"  # deploy/programs/acme-b2b.yaml: 14-day hold, EMAIL, friend reward
GONE, KEEP = "adv-gone", "adv-keep"
GONE_EMAIL, GONE_NAME = "gwendolyn.erasable@example.com", "Gwendolyn Erasable"
ERASURE_WITHIN_S = 60.0  # the contract's bound
SERVICES = ("attribution", "rewards", "notifications")


def _profile(advocate: str, email: str, name: str, now: datetime) -> AdvocateProfile:
    return AdvocateProfile(
        PROGRAM, advocate, email, name, hashlib.sha256(email.encode()).hexdigest(), False, False,
        now - timedelta(days=30),
    )  # fmt: skip


async def _publish(settings: KafkaSettings, topic: str, key: str, *records: Record) -> None:
    await produce(settings, topic, [(key.encode(), CODEC.encode(r)) for r in records])


async def _refer(settings: KafkaSettings, advocate: str, n: int, now: datetime) -> str:
    """A conversion by the advocate's code; returns the prospect."""
    prospect = f"p-{advocate}-{n}"
    event = ConversionEvent(
        f"cv-{prospect}", PROGRAM, prospect, now - timedelta(minutes=50), f"CODE-{advocate}"
    )
    await _publish(settings, CONVERSIONS, prospect, event)
    return prospect


async def _statuses(settings: KafkaSettings, advocate: str) -> list[ReferralStatusChanged]:
    out = []
    for msg in await read_records(settings, STATUS, key=advocate):
        record = CODEC.decode(msg.value)
        assert isinstance(record, ReferralStatusChanged)
        out.append(record)
    return out


async def _until(check: object, what: str, within: float = 60.0) -> None:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if await check():  # type: ignore[operator]
            return
        await asyncio.sleep(0.5)
    raise AssertionError(f"not within {within} s: {what}")


async def _latest_values(settings: KafkaSettings) -> dict[str, dict[bytes | None, bytes | None]]:
    """Every topic of this test's prefix but the advocates topic and the dead letters: the
    latest committed value of each key (changelogs, internal and output topics)."""
    admin = make_admin(settings, "tests-erasure")
    await admin.start()
    try:
        physical = [t for t in await admin.list_topics() if t.startswith(settings.topic_prefix)]
    finally:
        await admin.close()
    names = TopicNames(settings.topic_prefix)
    out: dict[str, dict[bytes | None, bytes | None]] = {}
    for topic in sorted(names.logical(t) for t in physical):
        if topic == ADVOCATES or topic.endswith(DLQ_SUFFIX):
            continue
        latest: dict[bytes | None, bytes | None] = {}
        for msg in await read_records(settings, topic):
            latest[msg.key] = msg.value
        out[topic] = latest
    return out


def _holding(values: dict[str, dict[bytes | None, bytes | None]], *needles: str) -> list[str]:
    """Topics (and keys) whose latest value holds any of `needles`."""
    wanted = [n.encode() for n in needles]
    return [
        f"{topic} key {key!r}"
        for topic, latest in values.items()
        for key, value in latest.items()
        if value is not None and any(n in value for n in wanted)
    ]


def _sent_to(mail: SmtpSink, advocate: str, referral: str, kind: MessageKind) -> bool:
    nid = notification_id(advocate, referral, kind, 0)
    return any(nid in m.message_id for m in mail.received())


async def test_an_erased_advocate_leaves_no_personal_data_and_gets_nothing_more(
    topics: KafkaSettings, tmp_path: Path
) -> None:
    assert (
        run_cli(topics, "program", "put", str(REPO / "deploy/programs/acme-b2b.yaml")).returncode
        == 0
    )
    now = datetime.now(UTC)
    mail = SmtpSink().start()
    fleet = Fleet(
        tmp_path,
        topics,
        {"attribution": 1, "rewards": 1, "notifications": 1},
        {
            "{SERVICE}_SESSION_TIMEOUT_MS": "6000",
            **{f"{s.upper()}_GROUP_ID": f"{topics.topic_prefix}{s}" for s in SERVICES},
            "NOTIFICATIONS_RETRY_BASE_S": "0.2",
            "NOTIFICATIONS_RETRY_MAX_S": "1",
        },
    )
    inst = {i.service: i for i in fleet.instances}
    try:
        fleet.start_all(mail.port)
        assert fleet.wait_ready(90) == []
        for advocate, email, name in (
            (GONE, GONE_EMAIL, GONE_NAME),
            (KEEP, "kim.keeper@example.com", "Kim Keeper"),
        ):
            await _publish(topics, ADVOCATES, advocate, _profile(advocate, email, name, now))
            share = ShareEvent(
                f"sh-{advocate}", PROGRAM, advocate, Channel.SHARE_URL, f"CODE-{advocate}",
                now - timedelta(hours=2),
            )  # fmt: skip
            await _publish(topics, SHARES, advocate, share)
        prospects = {a: await _refer(topics, a, 1, now) for a in (GONE, KEEP)}
        rids = {}

        async def leads_mailed() -> bool:
            found = {
                s.advocate_id: s.referral_id
                for a in (GONE, KEEP)
                for s in await _statuses(topics, a)
                if s.status is ReferralStatus.LEAD
            }
            rids.update(found)
            return len(found) == 2 and all(
                _sent_to(mail, a, found[a], MessageKind.LEAD) for a in found
            )

        await _until(leads_mailed, "both LEADs attributed and mailed", 90)

        # The relay goes down; both deals are won: rewards held 14 days, WON mails waiting.
        mail.stop()
        for prospect in prospects.values():
            deal = DealEvent(
                f"dl-{prospect}", PROGRAM, f"deal-{prospect}", prospect, DealStage.WON,
                now - timedelta(minutes=40), 1_250_000, "USD",
            )  # fmt: skip
            await _publish(topics, DEALS, deal.deal_id, deal)

        async def pending() -> bool:
            got = {s.status for s in await _statuses(topics, GONE)}
            return ReferralStatus.REWARD_PENDING in got

        await _until(pending, "the erased-to-be advocate's reward is pending", 90)
        await asyncio.sleep(2)  # the WON messages are planned and waiting for the relay

        # Erased while the reward is in flight, with services killed around it.
        fleet.kill(inst["rewards"])
        erased = run_cli(topics, "erase", GONE)
        assert erased.returncode == 0, erased.stderr
        assert f"advocate {GONE} erased" in erased.stdout
        fleet.kill(inst["notifications"])
        fleet.start(inst["rewards"], mail.port)
        fleet.kill(inst["attribution"])
        fleet.start(inst["notifications"], mail.port)
        fleet.start(inst["attribution"], mail.port)
        erased_at = time.monotonic()
        assert fleet.wait_ready(90) == []
        erased_mail_count = len(mail.to(GONE_EMAIL))
        mail.start()

        # Within 60 s: no latest value anywhere holds the email or the name.
        async def clean() -> bool:
            return not _holding(await _latest_values(topics), GONE_EMAIL, GONE_NAME)

        left = ERASURE_WITHIN_S - (time.monotonic() - erased_at)
        await _until(clean, "no topic's latest value holds the erased person's data", left)
        values = await _latest_values(topics)
        assert _holding(values, "kim.keeper@example.com"), "the scan must see the other's state"
        assert any("changelog" in topic for topic in values)
        [tombstone] = [m for m in await read_records(topics, ADVOCATES, key=GONE)][-1:]
        assert tombstone.value is None

        # The other advocate's WON mail arrives; none goes to the erased person.
        async def keep_won_mailed() -> bool:
            return _sent_to(mail, KEEP, rids[KEEP], MessageKind.WON)

        await _until(keep_won_mailed, "the other advocate's WON mail", 60)
        await asyncio.sleep(3)
        assert not _sent_to(mail, GONE, rids[GONE], MessageKind.WON)
        assert len(mail.to(GONE_EMAIL)) == erased_mail_count == 1  # the LEAD, before
        sent = [
            CODEC.decode(m.value) for m in await read_records(topics, NOTIFICATIONS_SENT, key=GONE)
        ]
        assert {s.kind for s in sent if isinstance(s, NotificationSent)} == {"LEAD"}

        # A later referral naming them is rejected; their held reward is still held.
        late = await _refer(topics, GONE, 2, now)
        declared = ConversionEvent(
            f"cv-decl-{GONE}",
            PROGRAM,
            f"p-decl-{GONE}",
            now - timedelta(minutes=30),
            declared_advocate_id=GONE,
        )
        await _publish(topics, CONVERSIONS, declared.prospect_id, declared)

        async def rejected() -> bool:
            found = {(s.prospect_id, s.status, s.reason) for s in await _statuses(topics, GONE)}
            return {
                (late, ReferralStatus.REJECTED, "ADVOCATE_ERASED"),
                (declared.prospect_id, ReferralStatus.REJECTED, "ADVOCATE_ERASED"),
            } <= found

        await _until(rejected, "later referrals REJECTED ADVOCATE_ERASED", 60)
        history = [s for s in await _statuses(topics, GONE) if s.prospect_id == prospects[GONE]]
        assert history[-1].status is ReferralStatus.REWARD_PENDING
        assert not any(s.status is ReferralStatus.REJECTED for s in history)

        # Idempotent: erasing again publishes nothing; export shows the erased person.
        again = run_cli(topics, "erase", GONE)
        assert again.returncode == 0 and "already erased" in again.stdout, again.stderr
        exported = run_cli(topics, "export", GONE)
        assert exported.returncode == 0, exported.stderr
        document = json.loads(exported.stdout)
        assert document["profile"] == "erased"
        assert GONE_EMAIL not in exported.stdout and GONE_NAME not in exported.stdout
        assert prospects[GONE] in {r["prospect_id"] for r in document["referrals"]}
        assert document["rewards"] == []  # held: nothing issued
        codes = fleet.stop()
        assert set(codes.values()) == {0}, codes
    finally:
        fleet.stop()
        mail.stop()


async def test_export_prints_what_the_topics_hold_about_one_advocate(
    topics: KafkaSettings,
) -> None:
    at = datetime(2026, 3, 2, 15, 0, tzinfo=UTC)
    mine = _profile("adv-1", "ann@example.com", "Ann", at)
    lead = ReferralStatusChanged(
        "st-1", "r-1", PROGRAM, "adv-1", "p-1", Channel.EMAIL, MatchedBy.CODE,
        ReferralStatus.LEAD, 1, at,
    )  # fmt: skip
    won = ReferralStatusChanged(
        "st-2", "r-1", PROGRAM, "adv-1", "p-1", Channel.EMAIL, MatchedBy.CODE,
        ReferralStatus.WON, 1, at + timedelta(days=1), deal_id="d-1",
    )  # fmt: skip
    others = ReferralStatusChanged(
        "st-3", "r-2", PROGRAM, "adv-2", "p-2", Channel.EMAIL, MatchedBy.CODE,
        ReferralStatus.LEAD, 1, at,
    )  # fmt: skip
    payout = PayoutCommand(
        "po-1", 1, PROGRAM, "adv-1", "r-1", RewardType.GIFT_CARD, 5_000, "USD", "tier-1", 1, 1,
        at + timedelta(days=2), PayoutKind.PAYOUT, Recipient.ADVOCATE,
    )  # fmt: skip
    result = PayoutResult("po-1", 1, PayoutStatus.PAID, at + timedelta(days=3))
    sent = NotificationSent("n-1", "adv-1", "LEAD", "EMAIL", at, "r-1")
    await _publish(topics, ADVOCATES, "adv-1", mine)
    await _publish(topics, STATUS, "adv-1", lead, won, lead)  # a status delivered twice
    await _publish(topics, STATUS, "adv-2", others)
    await _publish(topics, PAYOUTS_V2, "adv-1", payout)
    await _publish(topics, PAYOUT_RESULTS, "po-1", result)
    await _publish(topics, NOTIFICATIONS_SENT, "adv-1", sent)

    done = run_cli(topics, "export", "adv-1")
    assert done.returncode == 0, done.stderr
    document = json.loads(done.stdout)
    assert document["advocate_id"] == "adv-1"
    assert document["profile"]["email"] == "ann@example.com"
    assert document["profile"]["display_name"] == "Ann"
    [referral] = document["referrals"]
    assert (referral["referral_id"], referral["status"]) == ("r-1", "WON")
    assert [s["status_id"] for s in referral["history"]] == ["st-1", "st-2"]
    [reward] = document["rewards"]
    assert (reward["payout_id"], reward["amount_minor"], reward["recipient"]) == (
        "po-1",
        5000,
        "ADVOCATE",
    )
    assert [(r["status"], r["occurred_at"]) for r in reward["results"]] == [
        ("PAID", "2026-03-05T15:00:00.000Z")
    ]
    assert [m["notification_id"] for m in document["messages"]] == ["n-1"]

    unknown = json.loads(run_cli(topics, "export", "adv-nobody").stdout)
    assert unknown == {
        "advocate_id": "adv-nobody", "profile": None, "referrals": [], "rewards": [],
        "messages": [],
    }  # fmt: skip
    assert run_cli(topics, "erase", "adv-1").returncode == 0
    assert json.loads(run_cli(topics, "export", "adv-1").stdout)["profile"] == "erased"
