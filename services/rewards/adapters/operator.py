"""`referrals approve|retry PAYOUT_ID` and `referrals reconcile`: the Kafka side.

approve / retry:
1. find the payout's owner (advocate) on `rewards.by-payout.v1`, reading only the partition
   its payout_id hashes to;
2. read that advocate's partition of `referral.status.v1` (read_committed, from the beginning
   to the end as of now) for the payout's statuses;
3. refuse unless the latest one allows the command (`commands.check`); else publish a
   `RewardCommand` keyed by payout_id on `rewards.by-payout.v1` (one transaction).
reconcile reads `rewards.payouts.v1` and `rewards.payout-results.v1` whole (read_committed).
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import json
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.partitioner import DefaultPartitioner

from referrals.contract.avro import AvroCodec
from referrals.contract.publish import Prepared, publish
from referrals.contract.records import (
    PayoutCommand,
    PayoutOwner,
    PayoutResult,
    Record,
    ReferralStatusChanged,
    RewardAction,
)
from referrals.contract.topics import PAYOUT_RESULTS, PAYOUTS, REWARDS_BY_PAYOUT, STATUS, TopicNames
from referrals.platform.errors import DecodeError, ReferralsError
from referrals.platform.settings import KafkaSettings
from referrals.streams.kafka import make_consumer
from services.rewards.adapters import commands

COMMANDS = ("approve", "retry", "reconcile")
READ_LIMIT_S = 120.0  # a topic read that makes no progress for this long is an error


class TopicReadError(ReferralsError):
    reason = "TOPIC_READ"


def partition_for(key: str, partitions: list[int]) -> int:
    """The partition a producer's default (murmur2) partitioner sends `key` to."""
    ordered = sorted(partitions)
    chosen: int = DefaultPartitioner()(key.encode("utf-8"), ordered, ordered)
    return chosen


async def read_records(settings: KafkaSettings, topic: str, *, key: str | None = None) -> list[Any]:
    """Every committed record of `topic` up to its current end; with `key`, only that key's
    records, reading just the partition the key hashes to."""
    physical = TopicNames(settings.topic_prefix)(topic)
    consumer = make_consumer(settings, client_id="referrals-cli-rewards")
    await consumer.start()
    try:
        await consumer._client.force_metadata_update()
        found = sorted(consumer.partitions_for_topic(physical) or ())
        if not found:
            raise TopicReadError(f"topic {physical} does not exist; run `referrals topics create`")
        chosen = found if key is None else [partition_for(key, found)]
        parts = [TopicPartition(physical, p) for p in chosen]
        consumer.assign(parts)
        await consumer.seek_to_beginning(*parts)
        wanted = None if key is None else key.encode("utf-8")
        return [m for m in await _drain(consumer, parts) if wanted is None or m.key == wanted]
    finally:
        await consumer.stop()


async def _drain(consumer: AIOKafkaConsumer, parts: list[TopicPartition]) -> list[Any]:
    end = await consumer.end_offsets(parts)  # read_committed: the last stable offsets
    out: list[Any] = []
    last = time.monotonic()
    while any([await consumer.position(tp) < end[tp] for tp in parts]):
        if time.monotonic() - last > READ_LIMIT_S:
            raise TopicReadError(f"reading {parts[0].topic} made no progress for {READ_LIMIT_S} s")
        batch = await consumer.getmany(timeout_ms=500, max_records=5000)
        for messages in batch.values():
            out.extend(messages)
            last = time.monotonic()
    return sorted(out, key=lambda m: (m.partition, m.offset))


def decoded(messages: list[Any], codec: AvroCodec) -> tuple[list[Record], int]:
    """The records that decode, and how many did not (bad input sits in topics too)."""
    out: list[Record] = []
    for msg in messages:
        try:
            out.append(codec.decode(msg.value or b""))
        except DecodeError:
            continue
    return out, len(messages) - len(out)


async def payout_history(settings: KafkaSettings, payout_id: str) -> list[ReferralStatusChanged]:
    """The payout's statuses in the order they were produced ([] for an unknown payout)."""
    codec = AvroCodec()
    routed, _ = decoded(await read_records(settings, REWARDS_BY_PAYOUT, key=payout_id), codec)
    owners = [r for r in routed if isinstance(r, PayoutOwner)]
    if not owners:
        return []
    statuses, _ = decoded(await read_records(settings, STATUS, key=owners[-1].advocate_id), codec)
    return [
        s for s in statuses if isinstance(s, ReferralStatusChanged) and s.payout_id == payout_id
    ]


async def request(settings: KafkaSettings, action: RewardAction, payout_id: str, by: str) -> str:
    """Checks and sends one approve / retry; returns what to tell the operator."""
    history = await payout_history(settings, payout_id)
    attempt = commands.check(action, payout_id, history)
    command = commands.make_command(action, payout_id, attempt, by, datetime.now(UTC))
    value = AvroCodec().encode(command)
    await publish(settings, REWARDS_BY_PAYOUT, [Prepared(payout_id.encode(), value)])
    latest = history[-1]
    verb = "approval" if action is RewardAction.APPROVE else f"retry (attempt {attempt})"
    return (
        f"{verb} of payout {payout_id} sent (it was {commands.describe(latest)}; advocate "
        f"{latest.advocate_id}, referral {latest.referral_id}); command {command.command_id}"
    )


async def reconcile(settings: KafkaSettings) -> commands.Report:
    codec = AvroCodec()
    payouts, bad_payouts = decoded(await read_records(settings, PAYOUTS), codec)
    results, bad_results = decoded(await read_records(settings, PAYOUT_RESULTS), codec)
    report = commands.reconcile(
        [p for p in payouts if isinstance(p, PayoutCommand)],
        [r for r in results if isinstance(r, PayoutResult)],
    )
    report.skipped = bad_payouts + bad_results
    return report


def main(
    args: argparse.Namespace, settings: KafkaSettings, out: Callable[[str], None] = print
) -> int:
    """Runs one of COMMANDS; a refusal raises `commands.Refused` (the CLI exits 1)."""
    if args.command == "reconcile":
        report = asyncio.run(reconcile(settings))
        data = commands.report_data(report)
        out(json.dumps(data, indent=2) if args.json else commands.report_text(report))
        if report.duplicates:
            raise ReferralsError(
                f"{len(report.duplicates)} (payout_id, attempt) issued more than once",
                reason="DUPLICATE_PAYOUT",
            )
        return 0
    action = RewardAction.APPROVE if args.command == "approve" else RewardAction.RETRY
    by = args.by or getpass.getuser()
    out(asyncio.run(request(settings, action, args.payout_id, by)))
    return 0
