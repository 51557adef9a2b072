"""The operator CLI against the real broker: publish JSON lines as Avro, tail them back."""

from __future__ import annotations

import json

import pytest

from referrals.contract.avro import AvroCodec
from referrals.contract.topics import ADVOCATES, DEALS, SHARES
from referrals.platform.settings import KafkaSettings

from ..conftest import REPO
from .helpers import read_topic, run_cli

pytestmark = pytest.mark.broker
SAMPLES = REPO / "deploy" / "samples"


def _lines(name: str) -> list[dict[str, object]]:
    return [json.loads(line) for line in (SAMPLES / name).read_text().splitlines() if line]


async def test_published_lines_come_back_from_tail_as_the_same_json(topics: KafkaSettings) -> None:
    published = run_cli(topics, "publish", SHARES, str(SAMPLES / "shares.jsonl"))
    assert published.returncode == 0, published.stderr
    assert "published 3 record(s)" in published.stderr

    tailed = run_cli(topics, "tail", SHARES, "--from-beginning", "--max", "3", "--timeout", "10")
    assert tailed.returncode == 0, tailed.stderr
    got = sorted(
        (json.loads(line) for line in tailed.stdout.splitlines()), key=lambda r: r["event_id"]
    )
    assert [r["event_id"] for r in got] == ["sh-1", "sh-2", "sh-3"]
    # Conventions: ISO 8601 UTC out whatever came in (offset, epoch millis); omitted -> null.
    assert got[1]["occurred_at"] == "2026-03-02T10:00:00.000Z"
    assert got[2]["occurred_at"] == "2026-03-03T11:30:00.000Z"
    assert got[1]["prospect_email_sha256"] is None
    assert got[0]["channel"] == "EMAIL"

    records = await read_topic(topics, SHARES, expect=3)
    keys = sorted(m.key for m in records)
    assert keys == [b"adv-ada", b"adv-grace", b"adv-grace"]  # keyed by advocate_id
    codec = AvroCodec()
    assert {codec.decode(m.value, "ShareEvent").event_id for m in records} == {
        "sh-1",
        "sh-2",
        "sh-3",
    }


async def test_a_file_with_a_bad_line_is_rejected_whole_naming_line_and_field(
    topics: KafkaSettings,
) -> None:
    result = run_cli(topics, "publish", SHARES, str(SAMPLES / "bad-line.jsonl"))
    assert result.returncode != 0
    assert "line 2, field 'channel': unknown symbol 'FAX'" in result.stderr
    assert "nothing was published" in result.stderr
    assert await read_topic(topics, SHARES, quiet=1.5) == []  # line 1 was valid: not sent either


def test_publish_reads_standard_input_and_reports_missing_fields(topics: KafkaSettings) -> None:
    deal = {
        "event_id": "d1",
        "program_id": "p",
        "deal_id": "x",
        "stage": "WON",
        "occurred_at": "2026-01-01T00:00:00Z",
    }
    result = run_cli(topics, "publish", DEALS, "-", stdin=json.dumps(deal) + "\n")
    assert result.returncode != 0
    assert "line 1, field 'prospect_id': required field is missing" in result.stderr


def test_publish_refuses_an_impossible_value(topics: KafkaSettings) -> None:
    deal = {
        "event_id": "d1",
        "program_id": "p",
        "deal_id": "x",
        "prospect_id": "pr",
        "stage": "WON",
        "amount_minor": -5,
        "currency": "USD",
        "occurred_at": "2026-01-01T00:00:00Z",
    }
    result = run_cli(topics, "publish", DEALS, "-", stdin=json.dumps(deal))
    assert result.returncode != 0
    assert "line 1" in result.stderr and "amount_minor" in result.stderr


def test_tail_of_an_unknown_topic_names_the_known_ones(topics: KafkaSettings) -> None:
    result = run_cli(topics, "tail", "referral.nope.v1", "--timeout", "1")
    assert result.returncode != 0
    assert "unknown topic 'referral.nope.v1'" in result.stderr
    assert "referral.shares.v1" in result.stderr


def test_publish_fails_naming_each_record_the_broker_refuses(topics: KafkaSettings) -> None:
    """A compacted topic refuses records without a key; publish printed "published 2
    record(s)" and exited 0 all the same, as it never awaited the sends' results."""
    result = run_cli(topics, "publish", ADVOCATES, "-", "--raw", stdin="first\nsecond\n")
    assert result.returncode != 0, result.stderr
    assert "published 2 record(s)" not in result.stderr
    assert "refused 2 of 2 record(s)" in result.stderr
    assert "record 1:" in result.stderr and "record 2:" in result.stderr
