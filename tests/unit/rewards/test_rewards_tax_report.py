"""The year-end tax report without a broker: what each advocate was paid in a calendar year of
the program's time zone, net of clawbacks, against the program's threshold."""

from __future__ import annotations

import csv
import hashlib
import io
from dataclasses import replace
from datetime import UTC, datetime
from types import SimpleNamespace

from referrals.contract.avro import AvroCodec
from referrals.contract.records import (
    AdvocateProfile,
    PayoutCommand,
    PayoutKind,
    PayoutResult,
    PayoutStatus,
    ProgramConfig,
    Recipient,
    RewardType,
)
from referrals.platform.errors import PermanentError
from referrals.programs.document import canonical_json, validate
from referrals.streams.dlq import dead_letter
from services.rewards.adapters.payout_reports import tax_messages
from services.rewards.domain.tax_report import COLUMNS, TaxProgram, tax_report, to_csv

NEW_YORK = TaxProgram("America/New_York", "USD", 60_000)  # tax_threshold "600.00"
MID_2026 = datetime(2026, 6, 1, tzinfo=UTC)


def _payout(
    payout_id: str,
    amount: int,
    advocate: str = "adv-1",
    *,
    program: str = "acme",
    attempt: int = 1,
    issued_at: datetime = MID_2026,
) -> PayoutCommand:
    return PayoutCommand(
        payout_id,
        attempt,
        program,
        advocate,
        f"ref-{payout_id}",
        RewardType.GIFT_CARD,
        amount,
        "USD",
        "referral-reward",
        1,
        1,
        issued_at,
    )


def _clawback(payout_id: str, amount: int, at: datetime, advocate: str = "adv-1") -> PayoutCommand:
    return replace(
        _payout(payout_id, amount, advocate, issued_at=at),
        kind=PayoutKind.CLAWBACK,
        original_payout_id="po-x",
    )


def _paid(payout_id: str, at: datetime = MID_2026, attempt: int = 1) -> PayoutResult:
    return PayoutResult(payout_id, attempt, PayoutStatus.PAID, at)


def _amounts(report: object) -> list[tuple[str, int, int, int]]:
    return [(r.advocate_id, r.paid_minor, r.clawed_back_minor, r.net_minor) for r in report.rows]  # type: ignore[attr-defined]


def test_a_payout_counts_in_the_year_of_its_paid_result_in_the_program_s_time_zone() -> None:
    payouts = [_payout("a", 100, "adv-late"), _payout("b", 200, "adv-early")]
    results = [
        _paid("a", datetime(2027, 1, 1, 3, 0, tzinfo=UTC)),  # 22:00 on Dec 31st in New York
        _paid("b", datetime(2026, 1, 1, 4, 30, tzinfo=UTC)),  # 23:30 on Dec 31st, 2025
    ]
    programs = {"acme": NEW_YORK}
    assert _amounts(tax_report(2026, payouts, results, programs, {})) == [("adv-late", 100, 0, 100)]
    assert _amounts(tax_report(2025, payouts, results, programs, {})) == [
        ("adv-early", 200, 0, 200)
    ]
    in_utc = {"acme": TaxProgram("UTC")}  # the same instants, in UTC: the other way round
    assert _amounts(tax_report(2026, payouts, results, in_utc, {})) == [("adv-early", 200, 0, 200)]


def test_clawbacks_are_subtracted_in_the_year_they_were_issued() -> None:
    payouts = [
        _payout("a", 70_000),
        _clawback("cb-1", 20_000, datetime(2026, 12, 31, 23, 0, tzinfo=UTC)),  # 18:00 NY: 2026
        _clawback("cb-2", 5_000, datetime(2027, 1, 1, 6, 0, tzinfo=UTC)),  # 2027 in New York
        _clawback("cb-3", 1_000, datetime(2027, 1, 1, 6, 0, tzinfo=UTC), advocate="adv-2"),
    ]
    report = tax_report(2026, payouts, [_paid("a")], {"acme": NEW_YORK}, {})
    assert _amounts(report) == [("adv-1", 70_000, 20_000, 50_000)]
    [row] = report.rows
    assert not row.reaches_threshold  # 500.00 net, 700.00 paid: the net is what counts
    next_year = tax_report(2027, payouts, [_paid("a")], {"acme": NEW_YORK}, {})
    assert _amounts(next_year) == [("adv-1", 0, 5_000, -5_000), ("adv-2", 0, 1_000, -1_000)]


def test_the_threshold_is_reached_at_the_threshold_itself() -> None:
    payouts = [_payout("a", 60_000, "adv-at"), _payout("b", 59_999, "adv-below")]
    results = [_paid("a"), _paid("b")]
    report = tax_report(2026, payouts, results, {"acme": NEW_YORK}, {})
    assert [(r.advocate_id, r.reaches_threshold) for r in report.rows] == [
        ("adv-at", True),
        ("adv-below", False),
    ]
    none = tax_report(2026, payouts, results, {"acme": TaxProgram("UTC", "USD", None)}, {})
    assert all(r.tax_threshold_minor is None and not r.reaches_threshold for r in none.rows)
    euros = tax_report(2026, payouts, results, {"acme": TaxProgram("UTC", "EUR", 100)}, {})
    assert all(r.tax_threshold_minor is None for r in euros.rows)  # not comparable with USD


def test_a_payout_reported_paid_twice_counts_once() -> None:
    payouts = [_payout("a", 5_000), _payout("a", 5_000, attempt=2), _payout("b", 700)]
    results = [
        _paid("a"),
        _paid("a"),  # finance sent the same answer twice
        _paid("a", attempt=2),  # and a retry was paid too: reconcile's PAID_TWICE, not income
        _paid("b", attempt=3),  # an attempt never issued: not a payment of b
        PayoutResult("c", 1, PayoutStatus.FAILED, MID_2026),
    ]
    report = tax_report(2026, payouts, results, {"acme": NEW_YORK}, {})
    assert _amounts(report) == [("adv-1", 5_000, 0, 5_000)]


def test_friends_and_other_programs_are_left_out_and_so_are_advocates_with_nothing() -> None:
    friend = replace(_payout("f", 2_500, "prospect-1"), recipient=Recipient.FRIEND)
    other = _payout("o", 900, "adv-2", program="other")
    unpaid = _payout("u", 300, "adv-3")
    payouts = [_payout("a", 100), friend, other, unpaid]
    results = [_paid("a"), _paid("f"), _paid("o")]
    everything = tax_report(2026, payouts, results, {"acme": NEW_YORK}, {})
    assert [(r.program_id, r.advocate_id) for r in everything.rows] == [
        ("acme", "adv-1"),
        ("other", "adv-2"),
    ]
    assert everything.unknown_programs == ["other"]  # reported as UTC, without a threshold
    only_acme = tax_report(2026, payouts, results, {"acme": NEW_YORK}, {}, program_id="acme")
    assert [r.advocate_id for r in only_acme.rows] == ["adv-1"] and not only_acme.unknown_programs


def test_the_csv_has_exact_decimals_and_says_whether_a_form_is_on_file() -> None:
    payouts = [_payout("a", 60_000, "adv-1"), _payout("b", 1_050, "adv-2")]
    payouts += [_payout("c", 1, "adv-3"), _clawback("cb", 2_000, MID_2026, "adv-2")]
    results = [_paid("a"), _paid("b"), _paid("c")]
    forms = {"adv-1": True, "adv-2": False}
    text = to_csv(tax_report(2026, payouts, results, {"acme": NEW_YORK}, forms))
    rows = list(csv.reader(io.StringIO(text)))
    assert tuple(rows[0]) == COLUMNS
    assert [",".join(row) for row in rows[1:]] == [
        "acme,adv-1,USD,600.00,0.00,600.00,60000,0,60000,600.00,true,true",
        "acme,adv-2,USD,10.50,20.00,-9.50,1050,2000,-950,600.00,false,false",
        "acme,adv-3,USD,0.01,0.00,0.01,1,0,1,600.00,false,unknown",
    ]


# -- from consumed records: dead letters, program versions, profiles ------------------------------
CODEC = AvroCodec()
RESULTS = "t1.rewards.payout-results.v1"


def _msg(value: bytes | None, partition: int = 0, offset: int = 0, **more: object) -> object:
    return SimpleNamespace(value=value, partition=partition, offset=offset, **more)


def _config(version: int, time_zone: str, threshold: str | None) -> ProgramConfig:
    rewards: dict[str, object] = {
        "tiers": [{"from_referral": 1, "amount": "50.00", "reward_type": "GIFT_CARD"}]
    }
    if threshold is not None:
        rewards["tax_threshold"] = threshold
    doc = {"program_id": "acme", "currency": "USD", "time_zone": time_zone, "rewards": rewards}
    text = canonical_json(validate(doc))
    digest = hashlib.sha256(text.encode()).hexdigest()
    return ProgramConfig("acme", version, text, digest, MID_2026)


def _profile(advocate: str, on_file: bool) -> AdvocateProfile:
    return AdvocateProfile("acme", advocate, "a@x.example", "A", "0" * 64, False, on_file, MID_2026)


def test_from_records_dead_lettered_results_do_not_count_and_the_latest_versions_do() -> None:
    payouts = [_msg(CODEC.encode(_payout(p, 10_000, f"adv-{p}")), 0, n) for n, p in enumerate("ab")]
    refused = _msg(CODEC.encode(_paid("a")), 1, 5)
    accepted = _msg(CODEC.encode(_paid("b")), 1, 6)
    letter = dead_letter(
        service="rewards",
        topic=RESULTS,
        partition=1,
        offset=5,
        timestamp_ms=0,
        key=b"a",
        value=refused.value,  # type: ignore[attr-defined]
        error=PermanentError("key", reason="KEY_MISMATCH"),
    )
    dead = [_msg(letter.value, headers=list(letter.headers))]
    programs = [
        _msg(CODEC.encode(_config(2, "America/New_York", "100.00"))),
        _msg(CODEC.encode(_config(1, "UTC", None))),  # older, arriving late: not in force
        _msg(b"garbage"),
    ]
    advocates = [
        _msg(CODEC.encode(_profile("adv-a", True)), key=b"adv-a"),
        _msg(CODEC.encode(_profile("adv-b", False)), key=b"adv-b"),
        _msg(CODEC.encode(_profile("adv-b", True)), key=b"adv-b"),  # the latest profile counts
        _msg(None, key=b"adv-a"),  # erased: a tombstone
    ]
    report = tax_messages(
        2026,
        payouts=payouts,
        results=[refused, accepted],
        dead=dead,
        results_topic=RESULTS,
        programs=programs,
        advocates=advocates,
    )
    [row] = report.rows
    assert (row.advocate_id, row.paid_minor, row.tax_threshold_minor) == ("adv-b", 10_000, 10_000)
    assert row.reaches_threshold and row.tax_form_on_file is True
    assert not report.unknown_programs
