"""Reading a topic's committed records to its current end: the CLI's and reports' reads.

`read_records` reads read_committed from the beginning to the last stable offset of each
partition it reads, and returns the raw messages in (partition, offset) order. With keys, it
reads only the partitions those keys hash to (`partition_for`: the producers' default murmur2
partitioner) and returns only those keys' records: how one person's records are found on a
topic keyed by advocate_id without reading the others' partitions.
"""

from __future__ import annotations

import time
from collections.abc import Collection
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition

from referrals.platform.errors import ReferralsError
from referrals.platform.settings import KafkaSettings
from referrals.streams.kafka import absent_topic, make_consumer, stop_quietly
from referrals.streams.murmur import partition_of
from referrals.streams.topics import TopicNames

READ_LIMIT_S = 120.0  # a topic read that makes no progress for this long is an error


class TopicReadError(ReferralsError):
    reason = "TOPIC_READ"


def partition_for(key: str, partitions: list[int]) -> int:
    """The partition a producer's default (murmur2) partitioner sends `key` to."""
    ordered = sorted(partitions)
    return ordered[partition_of(key.encode("utf-8"), len(ordered))]


async def read_records(
    settings: KafkaSettings,
    topic: str,
    *,
    key: str | None = None,
    keys: Collection[str] | None = None,
    client_id: str = "referrals-cli-rewards",
) -> list[Any]:
    """Every committed record of `topic` up to its current end; with `key` (or `keys`), only
    those keys' records, reading just the partitions they hash to."""
    wanted = set(keys or ()) | ({key} if key is not None else set())
    if keys is not None and not wanted:
        return []
    physical = TopicNames(settings.topic_prefix)(topic)
    consumer = make_consumer(settings, client_id=client_id)
    await consumer.start()
    try:
        await consumer._client.force_metadata_update()
        found = sorted(consumer.partitions_for_topic(physical) or ())
        if not found:
            raise TopicReadError(await absent_topic(consumer._client, physical))
        chosen = sorted({partition_for(k, found) for k in wanted}) if wanted else found
        parts = [TopicPartition(physical, p) for p in chosen]
        consumer.assign(parts)
        await consumer.seek_to_beginning(*parts)
        raw = {k.encode("utf-8") for k in wanted}
        return [m for m in await _drain(consumer, parts) if not raw or m.key in raw]
    finally:
        await stop_quietly(consumer)


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
