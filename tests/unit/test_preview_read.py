"""`referrals program preview`: the history read from whole topics (order, bad input, versions),
`--since`, and the preview as a person and a machine read it."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner

from referrals.contract.avro import AvroCodec
from referrals.contract.records import (
    Channel,
    ConversionEvent,
    DealEvent,
    DealStage,
    MatchedBy,
    PayoutCommand,
    ProgramConfig,
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
    PAYOUTS,
    PAYOUTS_V2,
    PROGRAMS,
    SHARES,
    STATUS,
)
from referrals.platform.errors import ConfigError
from referrals.platform.settings import AmountLimits
from referrals.platform.timestamps import to_ms
from referrals.tools.cli import cli
from referrals.tools.preview.compare import Change, Preview, Tally, to_dict
from referrals.tools.preview.read import history_of
from referrals.tools.preview.replay import Erased
from referrals.tools.preview.run import parse_since
from referrals.tools.preview.text import to_text
from referrals.tools.report import Logged

T0 = datetime(2026, 3, 1, tzinfo=UTC)
T0_MS = to_ms(T0)
CODEC = AvroCodec()


def logged(partition: int, offset: int, at: int, record: Record, key: str) -> Logged:
    """A record written `at` ms after T0 (timestamps near the events: not in their future)."""
    return Logged(partition, offset, T0_MS + at, key.encode(), CODEC.encode(record))


def conversion(event_id: str, program: str = "acme") -> ConversionEvent:
    return ConversionEvent(event_id, program, f"p-{event_id}", T0, referral_code="c")


def status(status_id: str) -> ReferralStatusChanged:
    return ReferralStatusChanged(
        status_id, "rf-1", "acme", "adv-1", "p-1", Channel.SOCIAL, MatchedBy.CODE,
        ReferralStatus.LEAD, 1, T0,
    )  # fmt: skip


def payout(payout_id: str) -> PayoutCommand:
    return PayoutCommand(
        payout_id, 1, "acme", "adv-1", "rf-1", RewardType.GIFT_CARD, 5000, "USD", "r", 1, 1, T0
    )


def test_inputs_keep_partition_order_and_merge_by_timestamp_of_the_program_only() -> None:
    share = ShareEvent("s", "acme", "adv-1", Channel.SOCIAL, "c", T0)
    logs = {
        CONVERSIONS: [
            logged(0, 0, 30, conversion("a"), "p-a"),
            logged(0, 1, 10, conversion("b"), "p-b"),  # older stamp, later offset: stays after
            logged(1, 0, 20, conversion("c"), "p-c"),
            logged(1, 1, 21, conversion("other", program="zeta"), "p-other"),
        ],
        SHARES: [logged(0, 0, 25, share, "adv-1")],
    }
    read = history_of("acme", logs, AmountLimits())
    order = [getattr(a.record, "event_id", None) for a in read.history.arrivals]
    assert order == ["c", "s", "a", "b"]


def test_a_tombstone_on_the_advocates_topic_is_replayed_as_an_erasure() -> None:
    logs = {ADVOCATES: [Logged(0, 0, 5, b"adv-9", b"")]}
    read = history_of("acme", logs, AmountLimits())
    assert [a.record for a in read.history.arrivals] == [Erased("adv-9")]
    assert read.skipped == {}


def test_records_the_services_dead_lettered_are_not_replayed() -> None:
    wrong_key = logged(0, 0, 1, conversion("a"), "not-the-prospect")
    negative = DealEvent("d", "acme", "deal", "p", DealStage.WON, T0, amount_minor=-1)
    logs = {
        CONVERSIONS: [wrong_key, Logged(0, 1, 2, b"p-x", b"not avro")],
        DEALS: [logged(0, 0, 3, negative, "deal")],
    }
    read = history_of("acme", logs, AmountLimits())
    assert read.history.arrivals == ()
    assert read.skipped == {CONVERSIONS: 2, DEALS: 1}


def test_statuses_are_met_no_earlier_than_the_one_before_them_in_their_partition() -> None:
    logs = {
        STATUS: [
            logged(0, 0, 50, status("st-a"), "adv-1"),
            logged(0, 1, 40, status("st-b"), "adv-1"),
            logged(1, 0, 45, status("st-c"), "adv-1"),
        ]
    }
    statuses = history_of("acme", logs, AmountLimits()).history.statuses
    met = [(at - T0_MS, s.status_id) for at, s in statuses]
    assert met == [(45, "st-c"), (50, "st-a"), (50, "st-b")]


def test_issued_is_payouts_v2_or_v1_for_a_program_v2_never_saw_and_the_version_is_the_newest() -> (
    None
):
    config = ProgramConfig("acme", 3, "{}", "0" * 64, T0)
    v1_only = {PAYOUTS: [logged(0, 0, 1, payout("po-1"), "adv-1")], PROGRAMS: []}
    assert [p.payout_id for p in history_of("acme", v1_only, AmountLimits()).history.payouts] == [
        "po-1"
    ]
    both = {**v1_only, PAYOUTS_V2: [logged(0, 0, 1, payout("po-2"), "adv-1")]}
    both[PROGRAMS] = [logged(0, 0, 1, config, "acme")]
    read = history_of("acme", both, AmountLimits())
    assert [p.payout_id for p in read.history.payouts] == ["po-2"]
    assert read.history.version == 3


def test_since_is_a_date_in_the_programs_zone_or_an_iso_time() -> None:
    assert parse_since("2026-01-31", "America/New_York") == datetime(2026, 1, 31, 5, tzinfo=UTC)
    assert parse_since("2026-01-31T10:00:00+00:00", "America/New_York") == datetime(
        2026, 1, 31, 10, tzinfo=UTC
    )
    with pytest.raises(ConfigError, match="--since 'last week'"):
        parse_since("last week", "UTC")


def sample() -> Preview:
    preview = Preview("acme", "new.yaml", 4, T0 + timedelta(days=90), None, 1234)
    preview.rows[("advocate", 1, "GIFT_CARD", "USD")] = (Tally(3, 18000), Tally(3, 15000))
    preview.rows[("friend", 0, "BILL_CREDIT", "USD")] = (Tally(2, 5000), Tally(3, 7500))
    preview.clawbacks["USD"] = (Tally(1, 6000), Tally(1, 5000))
    preview.held["FRAUD_REVIEW"] = (1, 0)
    preview.changes = [
        Change(f"rf-{i}", "adv-1", "REWARDED tier 1 50.00 USD", "REWARDED tier 1 60.00 USD")
        for i in range(3)
    ]
    return preview


def test_the_text_shows_each_row_the_totals_and_the_changes_up_to_a_limit() -> None:
    text = to_text(sample(), limit=2)
    assert "advocate     1 GIFT_CARD" in text
    assert "180.00 USD" in text and "+0 +30.00 USD" in text
    assert "-1 -25.00 USD" in text  # the friend row
    assert "total" in text and "clawbacks" in text
    assert "FRAUD_REVIEW 1 (now 0)" in text
    assert "rf-0  adv-1  REWARDED tier 1 50.00 USD -> REWARDED tier 1 60.00 USD" in text
    assert "... and 1 more (--json lists them all)" in text


def test_the_json_has_every_change_and_minor_and_major_amounts() -> None:
    data = json.loads(json.dumps(to_dict(sample())))
    assert data["rewards"][0]["would_issue"] == {
        "count": 3,
        "amount_minor": 18000,
        "amount": "180.00",
    }
    assert data["rewards"][0]["difference"] == {"count": 0, "amount_minor": 3000}
    assert data["totals"][0]["issued"]["amount_minor"] == 22500
    assert data["changes"]["count"] == 3 and len(data["changes"]["referrals"]) == 3
    assert data["held"] == [{"reason": "FRAUD_REVIEW", "would_hold": 1, "held": 0}]


def test_a_bad_document_gets_the_errors_validate_gives_before_any_topic_is_read(
    tmp_path: Path,
) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("program_id: p\ncurrency: EURO\nrewards: {tiers: []}\n", encoding="utf-8")
    validated = CliRunner().invoke(cli, ["program", "validate", str(bad)])
    previewed = CliRunner().invoke(cli, ["program", "preview", str(bad)])
    assert previewed.exit_code == validated.exit_code == 1
    assert previewed.stderr == validated.stderr and "currency" in previewed.stderr
