"""`referrals reconcile` and `referrals tax-report`: the Kafka side of finance's reports.

reconcile reads `rewards.payouts.v2`, `rewards.payouts.v1` and `rewards.payout-results.v1`
whole (read_committed); tax-report reads v2, the results, `programs.config.v1` and
`referral.advocates.v1`. Both leave out the results the rewards service dead-lettered (found on
`rewards.payout-results.v1.dlq` by their original partition and offset): the service never
acted on them. The reports themselves are pure folds in the domain (`reconcile`, `tax_report`).

Each function takes typed values and returns a result or raises a `ReferralsError`; it prints
nothing, so the CLI and a future API call the same functions.
"""

from __future__ import annotations

from typing import Any

from referrals.contract.avro import AvroCodec
from referrals.contract.records import AdvocateProfile, PayoutCommand, PayoutResult, ProgramConfig
from referrals.contract.topics import (
    ADVOCATES,
    PAYOUT_RESULTS,
    PAYOUTS,
    PAYOUTS_V2,
    PROGRAMS,
    TopicNames,
    dlq_of,
)
from referrals.platform.errors import DecodeError, ReferralsError
from referrals.platform.settings import KafkaSettings
from referrals.programs.catalog import ProgramCatalog
from referrals.streams.dlq import header_dict
from services.rewards.adapters.operator import TopicReadError, decoded, read_records
from services.rewards.domain import reconcile as reconciling
from services.rewards.domain.tax_report import TaxProgram, TaxReport, tax_report


# -- reconcile ----------------------------------------------------------------------------------
async def reconcile(settings: KafkaSettings) -> reconciling.Report:
    """Issued, paid, failed, outstanding and clawed back per program and currency, and the
    checks that v1 and v2 agree."""
    payouts = await read_records(settings, PAYOUTS_V2)
    payouts_v1 = await read_records(settings, PAYOUTS)
    results, dead = await _results(settings)
    physical = TopicNames(settings.topic_prefix)(PAYOUT_RESULTS)
    return reconcile_messages(payouts, payouts_v1, results, dead, physical, AvroCodec())


async def _results(settings: KafkaSettings) -> tuple[list[Any], list[Any]]:
    """The payout results and the results' dead letters."""
    results = await read_records(settings, PAYOUT_RESULTS)
    try:
        dead = await read_records(settings, dlq_of(PAYOUT_RESULTS))
    except TopicReadError:  # no DLQ topic: nothing was dead-lettered
        dead = []
    return results, dead


def reconcile_messages(
    payouts: list[Any],
    payouts_v1: list[Any],
    results: list[Any],
    dead: list[Any],
    results_topic: str,
    codec: AvroCodec,
) -> reconciling.Report:
    """The report from consumed records: results the rewards service dead-lettered (found on
    the results' `.dlq` by their original partition and offset) are not counted, since the
    service never acted on them."""
    kept = kept_results(results, dead, results_topic)
    issued, bad_payouts = decoded(payouts, codec)
    issued_v1, bad_v1 = decoded(payouts_v1, codec)
    answered, bad_results = decoded(kept, codec)
    report = reconciling.reconcile(
        [p for p in issued if isinstance(p, PayoutCommand)],
        [r for r in answered if isinstance(r, PayoutResult)],
        [p for p in issued_v1 if isinstance(p, PayoutCommand)],
    )
    report.skipped = bad_payouts + bad_v1 + bad_results
    report.dead_lettered = len(results) - len(kept)
    return report


def kept_results(results: list[Any], dead: list[Any], results_topic: str) -> list[Any]:
    """The results the rewards service acted on: those not on the results' dead-letter topic."""
    rejected = dead_lettered(dead, results_topic)
    return [m for m in results if (m.partition, m.offset) not in rejected]


def dead_lettered(dead: list[Any], topic: str) -> set[tuple[int, int]]:
    """(partition, offset) of each record of physical `topic` found on its dead-letter topic."""
    out: set[tuple[int, int]] = set()
    for msg in dead:
        headers = header_dict(msg.headers)
        if headers.get("dlq.original.topic") != topic:
            continue
        try:
            out.add((int(headers["dlq.original.partition"]), int(headers["dlq.original.offset"])))
        except (KeyError, ValueError):
            continue
    return out


def check_consistent(report: reconciling.Report) -> None:
    """Payouts are exactly once and written to v1 and v2 together: a (payout_id, attempt)
    issued twice, a payout PAID on two attempts (the money moved twice) or v1 and v2
    disagreeing is an error to investigate."""
    if report.duplicates:
        raise ReferralsError(
            f"{len(report.duplicates)} payout attempt(s) issued more than once (DUPLICATE_PAYOUT)",
            reason="DUPLICATE_PAYOUT",
        )
    if report.paid_twice:
        raise ReferralsError(
            f"{len(report.paid_twice)} payout(s) PAID on more than one attempt (PAID_TWICE)",
            reason="PAID_TWICE",
        )
    if report.mismatches:
        raise ReferralsError(
            f"{len(report.mismatches)} payout attempt(s) differ between rewards.payouts.v1 and "
            "rewards.payouts.v2 (V1_V2_MISMATCH)",
            reason="V1_V2_MISMATCH",
        )


# -- tax report ---------------------------------------------------------------------------------
async def tax(settings: KafkaSettings, year: int, program_id: str | None = None) -> TaxReport:
    """What each advocate was paid in calendar `year`, net of clawbacks (`tax_report`)."""
    results, dead = await _results(settings)
    return tax_messages(
        year,
        payouts=await read_records(settings, PAYOUTS_V2),
        results=results,
        dead=dead,
        results_topic=TopicNames(settings.topic_prefix)(PAYOUT_RESULTS),
        programs=await read_records(settings, PROGRAMS),
        advocates=await read_records(settings, ADVOCATES),
        program_id=program_id,
    )


def tax_messages(
    year: int,
    *,
    payouts: list[Any],
    results: list[Any],
    dead: list[Any],
    results_topic: str,
    programs: list[Any],
    advocates: list[Any],
    program_id: str | None = None,
) -> TaxReport:
    """The report from consumed records (the dead-lettered results left out)."""
    codec = AvroCodec()
    issued, _ = decoded(payouts, codec)
    answered, _ = decoded(kept_results(results, dead, results_topic), codec)
    return tax_report(
        year,
        [p for p in issued if isinstance(p, PayoutCommand)],
        [r for r in answered if isinstance(r, PayoutResult)],
        latest_programs(programs, codec),
        latest_forms(advocates, codec),
        program_id,
    )


def latest_programs(messages: list[Any], codec: AvroCodec) -> dict[str, TaxProgram]:
    """Each program's latest valid version, as the services see it (`ProgramCatalog`)."""
    catalog = ProgramCatalog()
    configs, _ = decoded(messages, codec)
    for config in configs:
        if isinstance(config, ProgramConfig):
            try:
                catalog.apply(config)
            except ReferralsError:  # a bad version: the services ignored it too
                continue
    ids = {c.program_id for c in configs if isinstance(c, ProgramConfig)}
    out: dict[str, TaxProgram] = {}
    for program in filter(None, map(catalog.get, ids)):
        doc = program.document
        threshold = doc.rewards.tax_threshold_minor
        out[program.program_id] = TaxProgram(doc.time_zone, doc.currency, threshold)
    return out


def latest_forms(messages: list[Any], codec: AvroCodec) -> dict[str, bool]:
    """advocate_id -> `tax_form_on_file` of the latest profile; an erased advocate (a
    tombstone) is unknown."""
    out: dict[str, bool] = {}
    for msg in messages:  # in offset order per partition, and a key lives on one partition
        if msg.value is None:
            out.pop((msg.key or b"").decode("utf-8", "replace"), None)
            continue
        try:
            profile = codec.decode(msg.value, "AdvocateProfile")
        except DecodeError:
            continue
        if isinstance(profile, AdvocateProfile):
            out[profile.advocate_id] = profile.tax_form_on_file
    return out
