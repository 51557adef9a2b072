"""A bulk loader of advocates' state: N AdvocateProfile records (and a share for one in
`share_every`), written the fast way, not one record at a time through the CLI.

Records are encoded with the contract's codec and written in partition batches
(`AIOKafkaProducer.create_batch` / `send_batch`, many batches in flight), each to the
partition the default partitioner (murmur2 of the key, as every Kafka client) gives its key,
so the services see exactly what a producer of the contract would have written.

    .venv/bin/python bench/bulkload.py --bootstrap HOST:PORT [--prefix P] [--advocates 1000000]
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta

from aiokafka import AIOKafkaProducer
from aiokafka.partitioner import DefaultPartitioner

from referrals.contract.avro import AvroCodec
from referrals.contract.records import AdvocateProfile, Channel, Record, ShareEvent
from referrals.contract.topics import ADVOCATES, SHARES, TopicNames
from referrals.platform.settings import KafkaSettings
from referrals.streams.kafka import make_producer

IN_FLIGHT = 64  # batches awaiting the broker's answer at once


def profiles(program_id: str, n: int, tag: str, now: datetime) -> Iterator[tuple[str, Record]]:
    enrolled = now - timedelta(days=400)
    for i in range(n):
        adv = f"{tag}-adv-{i:07d}"
        email = f"{adv}@bulk.example"
        yield (
            adv,
            AdvocateProfile(
                program_id=program_id,
                advocate_id=adv,
                email=email,
                display_name=f"Bulk Advocate {i}",
                email_sha256=hashlib.sha256(email.encode()).hexdigest(),
                opted_out=i % 25 == 0,
                tax_form_on_file=i % 4 != 0,
                updated_at=enrolled,
            ),
        )


def shares(
    program_id: str, n: int, every: int, tag: str, now: datetime
) -> Iterator[tuple[str, Record]]:
    for i in range(0, n, every):
        adv = f"{tag}-adv-{i:07d}"
        yield (
            adv,
            ShareEvent(
                event_id=f"{tag}-sh-{i}",
                program_id=program_id,
                advocate_id=adv,
                channel=Channel.SOCIAL,
                referral_code=f"{tag}-code-{i}",
                occurred_at=now - timedelta(days=30 + i % 300),
            ),
        )


async def write(
    kafka: KafkaSettings,
    topic: str,
    records: Iterator[tuple[str, Record]],
    progress: Callable[[int], None] | None = None,
) -> int:
    """Writes every (key, record) to `topic` (logical name); returns how many."""
    codec, name = AvroCodec(), TopicNames(kafka.topic_prefix)(topic)
    producer: AIOKafkaProducer = make_producer(kafka, client_id="bench-bulkload", linger_ms=50)
    await producer.start()
    try:
        parts = sorted(await producer.partitions_for(name))
        pick = DefaultPartitioner()
        batches = {p: producer.create_batch() for p in parts}
        pending: set[asyncio.Future[object]] = set()
        written = 0

        async def flush(p: int) -> None:
            batch = batches[p]
            batch.close()
            pending.add(await producer.send_batch(batch, name, partition=p))
            batches[p] = producer.create_batch()
            while len(pending) >= IN_FLIGHT:
                done, _ = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                for fut in done:
                    fut.result()
                pending.difference_update(done)

        for key, record in records:
            k = key.encode()
            p = pick(k, parts, parts)
            value = codec.encode(record)
            if batches[p].append(key=k, value=value, timestamp=None) is None:
                await flush(p)
                if batches[p].append(key=k, value=value, timestamp=None) is None:
                    raise RuntimeError("a record larger than a whole batch")
            written += 1
            if progress is not None and written % 100_000 == 0:
                progress(written)
        for p in parts:
            if batches[p].record_count():
                await flush(p)
        for fut in pending:
            await fut
        return written
    finally:
        await producer.stop()


async def load(
    kafka: KafkaSettings,
    program_id: str,
    advocates: int,
    *,
    share_every: int = 10,
    tag: str = "bulk",
    show: Callable[[str], None] = print,
) -> tuple[int, int]:
    """Profiles, then shares; returns (profiles, shares) written."""
    now = datetime.now(UTC)
    began = time.monotonic()

    def progress(n: int) -> None:
        show(f"  bulk load: {n:,} records in {time.monotonic() - began:.0f} s")

    n_profiles = await write(kafka, ADVOCATES, profiles(program_id, advocates, tag, now), progress)
    n_shares = await write(kafka, SHARES, shares(program_id, advocates, share_every, tag, now))
    return n_profiles, n_shares


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--prefix", default="")
    parser.add_argument("--program", default="demo-b2b")
    parser.add_argument("--advocates", type=int, default=1_000_000)
    args = parser.parse_args()
    kafka = KafkaSettings(bootstrap_servers=args.bootstrap, topic_prefix=args.prefix)
    began = time.monotonic()
    n, s = asyncio.run(load(kafka, args.program, args.advocates))
    print(f"{n:,} profiles and {s:,} shares in {time.monotonic() - began:.1f} s")


if __name__ == "__main__":
    main()
