"""`referrals approve|retry PAYOUT_ID` and `referrals reconcile`: the Kafka side.

approve / retry:
1. find the payout's owner (advocate) on `rewards.by-payout.v1`, reading only the partition
   its payout_id hashes to;
2. read that advocate's partition of `referral.status.v1` (read_committed, from the beginning
   to the end as of now) for the payout's statuses;
3. refuse unless the latest one allows the command (`commands.check`); else publish a
   `RewardCommand` keyed by payout_id on `rewards.by-payout.v1` (one transaction).
reconcile reads `rewards.payouts.v1` and `rewards.payout-results.v1` whole (read_committed),
leaving out the results the rewards service dead-lettered (`rewards.payout-results.v1.dlq`).

Each function takes typed values and returns a result or raises a `ReferralsError`; it prints
nothing, so the CLI and a future API call the same functions and each words the answer its way.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.partitioner import DefaultPartitioner

from referrals.contract.avro import AvroCodec
from referrals.contract.records import (
    PayoutCommand,
    PayoutOwner,
    PayoutResult,
    Record,
    ReferralStatusChanged,
    RewardAction,
    RewardCommand,
)
from referrals.contract.topics import (
    PAYOUT_RESULTS,
    PAYOUTS,
    REWARDS_BY_PAYOUT,
    STATUS,
    TopicNames,
    dlq_of,
)
from referrals.platform.errors import DecodeError, ReferralsError
from referrals.platform.settings import KafkaSettings
from referrals.streams.dlq import header_dict
from referrals.streams.kafka import make_consumer, make_producer
from services.rewards.domain import commands

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


@dataclass(frozen=True, slots=True)
class Sent:
    """An approve or retry published for the rewards service to carry out."""

    action: RewardAction
    attempt: int  # the payout attempt the command releases (approve) or issues (retry)
    command: RewardCommand
    latest: ReferralStatusChanged  # the payout's status when the command was sent

    def describe(self) -> str:
        """What the operator is told: the command, the state it found and whose payout it is."""
        verb = (
            "approval" if self.action is RewardAction.APPROVE else f"retry (attempt {self.attempt})"
        )
        return (
            f"{verb} of payout {self.command.payout_id} sent (it was "
            f"{commands.describe(self.latest)}; advocate {self.latest.advocate_id}, referral "
            f"{self.latest.referral_id}); command {self.command.command_id}"
        )


async def approve(settings: KafkaSettings, payout_id: str, by: str) -> Sent:
    """Releases a reward held for approval; `commands.Refused` in any other state."""
    return await request(settings, RewardAction.APPROVE, payout_id, by)


async def retry(settings: KafkaSettings, payout_id: str, by: str) -> Sent:
    """Re-issues a FAILED payout as its next attempt; `commands.Refused` in any other state."""
    return await request(settings, RewardAction.RETRY, payout_id, by)


async def request(settings: KafkaSettings, action: RewardAction, payout_id: str, by: str) -> Sent:
    """Checks the payout's history allows `action` (else `commands.Refused`), then sends it."""
    history = await payout_history(settings, payout_id)
    attempt = commands.check(action, payout_id, history)
    command = commands.make_command(action, payout_id, attempt, by, datetime.now(UTC))
    await _send(settings, command)
    return Sent(action, attempt, command, history[-1])


async def _send(settings: KafkaSettings, command: RewardCommand) -> None:
    """One command keyed by payout_id, in its own transaction: read_committed sees it once."""
    producer = make_producer(
        settings, client_id="referrals-cli", transactional_id=f"referrals-cli-{uuid.uuid4()}"
    )
    await producer.start()
    try:
        async with producer.transaction():
            topic = TopicNames(settings.topic_prefix)(REWARDS_BY_PAYOUT)
            value = AvroCodec().encode(command)
            await producer.send(topic, value, key=command.payout_id.encode())
    finally:
        await producer.stop()


async def reconcile(settings: KafkaSettings) -> commands.Report:
    """Issued, paid, failed and outstanding payouts per program and currency."""
    payouts = await read_records(settings, PAYOUTS)
    results = await read_records(settings, PAYOUT_RESULTS)
    try:
        dead = await read_records(settings, dlq_of(PAYOUT_RESULTS))
    except TopicReadError:  # no DLQ topic: nothing was dead-lettered
        dead = []
    physical = TopicNames(settings.topic_prefix)(PAYOUT_RESULTS)
    return reconcile_messages(payouts, results, dead, physical, AvroCodec())


def reconcile_messages(
    payouts: list[Any], results: list[Any], dead: list[Any], results_topic: str, codec: AvroCodec
) -> commands.Report:
    """The report from consumed records: results the rewards service dead-lettered (found on
    the results' `.dlq` by their original partition and offset) are not counted, since the
    service never acted on them."""
    rejected = dead_lettered(dead, results_topic)
    kept = [m for m in results if (m.partition, m.offset) not in rejected]
    issued, bad_payouts = decoded(payouts, codec)
    answered, bad_results = decoded(kept, codec)
    report = commands.reconcile(
        [p for p in issued if isinstance(p, PayoutCommand)],
        [r for r in answered if isinstance(r, PayoutResult)],
    )
    report.skipped = bad_payouts + bad_results
    report.dead_lettered = len(results) - len(kept)
    return report


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


def check_unique(report: commands.Report) -> None:
    """Payouts are exactly once: a (payout_id, attempt) issued twice, or a payout PAID on two
    attempts (the money moved twice), is an error to investigate."""
    if report.duplicates:
        raise ReferralsError(
            f"{len(report.duplicates)} (payout_id, attempt) issued more than once",
            reason="DUPLICATE_PAYOUT",
        )
    if report.paid_twice:
        raise ReferralsError(
            f"{len(report.paid_twice)} payout(s) PAID on more than one attempt",
            reason="PAID_TWICE",
        )
