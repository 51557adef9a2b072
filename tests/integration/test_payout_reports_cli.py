"""`referrals reconcile` and `referrals tax-report` against the real broker, over records the
test publishes to the topics as the rewards service, finance and the platform would."""

from __future__ import annotations

import csv
import io
import json
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest

from referrals.contract.avro import AvroCodec
from referrals.contract.records import (
    AdvocateProfile,
    PayoutCommand,
    PayoutKind,
    PayoutResult,
    PayoutStatus,
    Recipient,
    RewardType,
)
from referrals.contract.topics import (
    ADVOCATES,
    PAYOUT_RESULTS,
    PAYOUTS,
    PAYOUTS_V2,
    TopicNames,
    dlq_of,
)
from referrals.platform.errors import InvalidRecord
from referrals.platform.settings import KafkaSettings
from referrals.streams.dlq import dead_letter
from referrals.streams.kafka import make_producer

from ..conftest import REPO
from .helpers import produce, read_topic, run_cli

pytestmark = pytest.mark.broker
CODEC = AvroCodec()
ACME = REPO / "deploy" / "programs" / "acme-b2b.yaml"  # USD, America/New_York, threshold 600.00
JUNE = datetime(2026, 6, 1, tzinfo=UTC)
NEW_YEARS_EVE_NY = datetime(2027, 1, 1, 2, 0, tzinfo=UTC)  # 21:00 on Dec 31st, 2026 in New York


def payout(payout_id: str, advocate: str, amount: int, **v2: object) -> PayoutCommand:
    base = PayoutCommand(
        payout_id,
        1,
        "acme-b2b",
        advocate,
        f"ref-{payout_id}",
        RewardType.GIFT_CARD,
        amount,
        "USD",
        "referral-reward",
        1,
        1,
        JUNE,
    )
    return replace(base, **v2)  # type: ignore[arg-type]


ADVOCATE_PAYOUTS = [
    payout("po-a", "adv-1", 50_000),
    payout("po-b", "adv-1", 20_000),
    payout("po-c", "adv-2", 5_000),
    payout("po-d", "adv-2", 7_500),
]
FRIEND = payout("po-f", "adv-1", 2_500, recipient=Recipient.FRIEND, rule_id="friend", tier=0)
CLAWBACK = payout("cb-c", "adv-2", 5_000, kind=PayoutKind.CLAWBACK, original_payout_id="po-c")


async def publish_records(topics: KafkaSettings) -> None:
    def keyed(p: PayoutCommand, version: int | None = None) -> tuple[bytes, bytes]:
        return p.advocate_id.encode(), CODEC.encode(p, version)

    await produce(topics, PAYOUTS, [keyed(p, version=1) for p in ADVOCATE_PAYOUTS])
    await produce(topics, PAYOUTS_V2, [keyed(p) for p in [*ADVOCATE_PAYOUTS, FRIEND, CLAWBACK]])
    results = [
        PayoutResult("po-a", 1, PayoutStatus.PAID, NEW_YEARS_EVE_NY),
        PayoutResult("po-a", 1, PayoutStatus.PAID, NEW_YEARS_EVE_NY),  # reported twice
        PayoutResult("po-b", 1, PayoutStatus.PAID, NEW_YEARS_EVE_NY),
        PayoutResult("po-c", 1, PayoutStatus.PAID, JUNE),
        PayoutResult("po-f", 1, PayoutStatus.PAID, JUNE),
    ]
    await produce(
        topics, PAYOUT_RESULTS, [(r.payout_id.encode(), CODEC.encode(r)) for r in results]
    )
    # po-d's PAID: dead-lettered by the rewards service, so never acted on and not counted.
    await produce(
        topics,
        PAYOUT_RESULTS,
        [(b"po-d", CODEC.encode(PayoutResult("po-d", 1, PayoutStatus.PAID, JUNE)))],
    )
    [refused] = [m for m in await read_topic(topics, PAYOUT_RESULTS, expect=6) if m.key == b"po-d"]
    letter = dead_letter(
        service="rewards",
        topic=TopicNames(topics.topic_prefix)(PAYOUT_RESULTS),
        partition=refused.partition,
        offset=refused.offset,
        timestamp_ms=refused.timestamp,
        key=refused.key,
        value=refused.value,
        error=InvalidRecord("in the future", reason="TIME_OUT_OF_RANGE", field="occurred_at"),
    )
    producer = make_producer(topics, client_id="tests-rewards-stand-in")
    await producer.start()
    try:
        dlq = TopicNames(topics.topic_prefix)(dlq_of(PAYOUT_RESULTS))
        await producer.send_and_wait(
            dlq, letter.value, key=letter.key, headers=list(letter.headers)
        )
    finally:
        await producer.stop()
    profiles = [
        AdvocateProfile("acme-b2b", "adv-1", "a@x.example", "A", "0" * 64, False, True, JUNE)
    ]
    await produce(topics, ADVOCATES, [(p.advocate_id.encode(), CODEC.encode(p)) for p in profiles])


async def test_reconcile_reads_v2_with_friends_and_clawbacks_and_checks_v1_against_it(
    topics: KafkaSettings,
) -> None:
    await publish_records(topics)
    ran = run_cli(topics, "reconcile", "--json")
    assert ran.returncode == 0, ran.stderr
    report = json.loads(ran.stdout)
    [line] = report["programs"]
    assert line["issued"] == {"count": 5, "amount_minor": 85_000, "amount": "850.00"}
    assert line["paid"]["count"] == 4 and line["paid"]["amount"] == "775.00"  # po-d dead-lettered
    assert line["outstanding"]["amount"] == "75.00"
    assert line["friends"]["issued"] == {"count": 1, "amount_minor": 2_500, "amount": "25.00"}
    assert line["friends"]["paid"]["count"] == 1
    assert line["clawed_back"] == {"count": 1, "amount_minor": 5_000, "amount": "50.00"}
    assert report["errors"] == [] and report["dead_lettered_results"] == 1

    table = run_cli(topics, "reconcile")
    assert table.returncode == 0, table.stderr
    # ... attempts, clawed back, friends (the part of issued that went to friends)
    assert table.stdout.splitlines()[1].split()[-7:] == "5 1 / 50.00 1 / 25.00".split()

    # An advocate payout on v1 alone: one of the two topics is wrong.
    stray = payout("po-stray", "adv-3", 100)
    await produce(topics, PAYOUTS, [(b"adv-3", CODEC.encode(stray, 1))])
    ran = run_cli(topics, "reconcile")
    assert ran.returncode == 1
    assert (
        "payout po-stray attempt 1: on rewards.payouts.v1 but not on rewards.payouts.v2"
        in ran.stdout
    )
    assert "V1_V2_MISMATCH" in ran.stderr


async def test_tax_report_writes_the_year_s_net_per_advocate_as_csv(
    topics: KafkaSettings, tmp_path: Path
) -> None:
    put = run_cli(topics, "program", "put", str(ACME))
    assert put.returncode == 0, put.stderr
    await publish_records(topics)

    ran = run_cli(topics, "tax-report", "--year", "2026")
    assert ran.returncode == 0, ran.stderr
    rows = list(csv.DictReader(io.StringIO(ran.stdout)))
    assert [dict(r) for r in rows] == [
        {
            "program_id": "acme-b2b",
            "advocate_id": "adv-1",
            "currency": "USD",
            "paid": "700.00",  # paid at 21:00 on New Year's Eve, New York time; friends aside
            "clawed_back": "0.00",
            "net": "700.00",
            "paid_minor": "70000",
            "clawed_back_minor": "0",
            "net_minor": "70000",
            "tax_threshold": "600.00",
            "reaches_threshold": "true",
            "tax_form_on_file": "true",
        },
        {
            "program_id": "acme-b2b",
            "advocate_id": "adv-2",
            "currency": "USD",
            "paid": "50.00",  # po-d's PAID was dead-lettered
            "clawed_back": "50.00",
            "net": "0.00",
            "paid_minor": "5000",
            "clawed_back_minor": "5000",
            "net_minor": "0",
            "tax_threshold": "600.00",
            "reaches_threshold": "false",
            "tax_form_on_file": "unknown",
        },
    ]
    assert run_cli(topics, "tax-report", "--year", "2027").stdout.count("\n") == 1  # header only

    out = tmp_path / "tax-2026.csv"
    ran = run_cli(
        topics, "tax-report", "--year", "2026", "--program", "acme-b2b", "--output", str(out)
    )
    assert ran.returncode == 0, ran.stderr
    assert "wrote 2 row(s)" in ran.stderr and ran.stdout == ""
    assert len(out.read_text().splitlines()) == 3
    other = run_cli(topics, "tax-report", "--year", "2026", "--program", "other")
    assert other.stdout.splitlines() == [other.stdout.splitlines()[0]]
