"""`referrals report`: a program's benchmarks, measured from its topics (never from the generator).

Reads the topics (`read_topics`), computes the figures (`report_figures`, where each figure is
defined), compares them with the simulator's ground truth (`report_compare`) and writes
report.json and the self-contained report.html (`report_html`).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any, NamedTuple

from aiokafka import TopicPartition

from referrals.contract.avro import AvroCodec
from referrals.contract.topics import (
    ADVOCATES,
    NOTIFICATIONS_SENT,
    PAYOUT_RESULTS,
    PAYOUTS,
    PAYOUTS_V2,
    PROGRAMS,
    SHARES,
    STATUS,
    TopicNames,
    spec_for,
)
from referrals.platform.errors import DecodeError
from referrals.platform.settings import KafkaSettings
from referrals.programs.document import from_canonical
from referrals.streams.kafka import absent_topic, make_consumer
from referrals.tools import report_html
from referrals.tools.report_compare import compare
from referrals.tools.report_figures import Report, ReportInputs, compute


def write(report: Report, out_dir: Path, truth: Mapping[str, Any] | None = None) -> Path:
    """Writes report.json and report.html into `out_dir`; returns the HTML's path."""
    out_dir.mkdir(parents=True, exist_ok=True)
    comparisons = compare(report, truth) if truth is not None else None
    data = report.to_dict()
    if comparisons is not None:
        data["comparisons"] = [asdict(c) for c in comparisons]
    (out_dir / "report.json").write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    page = out_dir / "report.html"
    page.write_text(report_html.render(report, comparisons), encoding="utf-8")
    return page


_READ = (
    ADVOCATES,
    SHARES,
    STATUS,
    PAYOUTS,
    PAYOUTS_V2,
    PAYOUT_RESULTS,
    NOTIFICATIONS_SENT,
    PROGRAMS,
)
_IDLE_POLLS = 20  # 20 empty polls of 0.5 s: the log's end is not coming (a stuck partition)


async def read_topics(settings: KafkaSettings, program_id: str) -> ReportInputs:
    """Reads the report's topics from the beginning to their end offsets, read_committed."""
    logs = await read_logs(settings, _READ, client_id="referrals-report")
    codec = AvroCodec()
    undecodable: dict[str, int] = {}

    def records(topic: str) -> list[tuple[int, Any]]:
        """Decoded records; bad input (already in the topic's .dlq) is counted, not fatal."""
        expected, out = spec_for(topic).record, []
        for logged in logs[topic]:
            try:
                out.append((logged.timestamp, codec.decode(logged.value, expected)))
            except DecodeError:
                undecodable[topic] = undecodable.get(topic, 0) + 1
        return out

    configs = [c for _, c in records(PROGRAMS) if c.program_id == program_id]
    latest = max(configs, key=lambda c: c.version, default=None)
    return ReportInputs(
        program_id=program_id,
        currency=from_canonical(latest.document).currency if latest is not None else None,
        profiles=[r for _, r in records(ADVOCATES)],
        shares=[r for _, r in records(SHARES)],
        statuses=records(STATUS),
        payouts=records(PAYOUTS),
        payout_results=[r for _, r in records(PAYOUT_RESULTS)],
        payouts_v2=records(PAYOUTS_V2),
        notifications=[r for _, r in records(NOTIFICATIONS_SENT)],
        undecodable=undecodable,
    )


class Logged(NamedTuple):
    """One committed record as read: where it sits in its topic, when it was written, its value."""

    partition: int
    offset: int
    timestamp: int  # the record's Kafka timestamp (ms)
    key: bytes | None
    value: bytes


async def read_logs(
    settings: KafkaSettings,
    topics: Sequence[str],
    *,
    client_id: str,
    tombstones: bool = False,
) -> dict[str, list[Logged]]:
    """Logical topic -> every committed record of it from the beginning to its end offsets
    (read_committed), by partition and offset; tombstones (value b"") only with `tombstones`."""
    names = TopicNames(settings.topic_prefix)
    consumer = make_consumer(settings, client_id=client_id)
    await consumer.start()
    try:
        logs = await _read_to_end(
            consumer, [names(topic) for topic in topics], tombstones=tombstones
        )
    finally:
        await consumer.stop()
    return {topic: logs[names(topic)] for topic in topics}


async def _read_to_end(
    consumer: Any, topics: list[str], *, tombstones: bool = False
) -> dict[str, list[Logged]]:
    """topic -> every committed record, in offset order per partition."""
    await consumer._client.force_metadata_update()  # tracking no topic yet: learns them all
    parts = []
    for topic in topics:
        partitions = consumer.partitions_for_topic(topic)
        if not partitions:
            raise FileNotFoundError(await absent_topic(consumer._client, topic))
        parts += [TopicPartition(topic, p) for p in sorted(partitions)]
    consumer.assign(parts)
    await consumer.seek_to_beginning(*parts)
    end = await consumer.end_offsets(parts)
    found: list[tuple[str, int, int, int, bytes | None, bytes]] = []
    idle = 0
    while idle < _IDLE_POLLS and any([await consumer.position(tp) < end[tp] for tp in parts]):
        batch = await consumer.getmany(timeout_ms=500, max_records=10_000)
        idle = 0 if batch else idle + 1
        for tp, messages in batch.items():
            found += [
                (tp.topic, tp.partition, m.offset, m.timestamp, m.key, m.value) for m in messages
            ]
    logs: dict[str, list[Logged]] = {topic: [] for topic in topics}
    for topic, partition, offset, timestamp, key, value in sorted(found, key=lambda f: f[:3]):
        if value or tombstones:  # a tombstone on a compacted topic: a deletion (an erasure)
            logs[topic].append(Logged(partition, offset, timestamp, key, value or b""))
    return logs


def run_report(*, program_id: str, out: Path, truth_file: Path | None) -> int:
    """Reads the topics, writes the report; 1 if a figure that must be exact disagrees."""
    truth = json.loads(truth_file.read_text(encoding="utf-8")) if truth_file else None
    inputs = asyncio.run(read_topics(KafkaSettings.from_env(), program_id))
    report = compute(inputs)
    page = write(report, out, truth)
    figures = report.figures.to_dict()
    print(
        f"{report.program_id}: {figures['enrolled']} advocates enrolled, {figures['active']} active"
        f" ({figures['active_share']:.1%}); {figures['referrals_attributed']} referrals attributed,"
        f" {figures['referrals_won']} won ({figures['conversion_overall']:.1%});"
        f" {report.payouts['issued']} payouts issued, {report.payouts['paid']} paid"
    )
    money = report.money
    print(
        f"  friend rewards {money['friend_rewards']['count']}, clawbacks"
        f" {money['clawbacks']['count']}, denials {money['denials']}, fraud holds"
        f" {money['fraud_holds']}, pause holds {money['pause_holds']}"
    )
    failed = [c for c in compare(report, truth) if not c.ok] if truth is not None else []
    for c in failed:
        kind = "must be exact" if c.exact else f"tolerance {c.tolerance:g}"
        print(f"  MISMATCH {c.name}: measured {c.measured:g}, truth {c.truth:g} ({kind})")
    print(f"report: {page}")
    return 1 if any(c.exact for c in failed) else 0
