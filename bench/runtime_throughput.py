"""Throughput of the shared runtime against a bare aiokafka loop, measured in the same run.

Both read the same N ShareEvents from one topic and write one NotificationSent per input:
- baseline: a bare consume -> decode -> encode -> produce loop (aiokafka, idempotent producer,
  no transactions, offsets committed per batch): the fastest honest loop on this broker;
- runtime: `referrals.streams.runtime.StreamRuntime` with exactly-once (a transaction per task and
  poll, offsets inside it), read_committed input, DLQ checks and metrics on.
Prints both rates and the ratio (target: the runtime at least half the baseline).

    .venv/bin/python bench/runtime_throughput.py [--records 100000] [--bootstrap HOST:PORT]

Without --bootstrap it starts the project's own broker on free ports in a temporary directory.
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import tempfile
import time
import uuid
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path

from aiokafka import TopicPartition

from referrals.contract.avro import AvroCodec
from referrals.contract.records import Channel, NotificationSent, ShareEvent
from referrals.contract.topics import NOTIFICATIONS_SENT, SHARES, TOPICS, TopicNames, create_topics
from referrals.platform.metrics import Health, RuntimeMetrics
from referrals.platform.settings import KafkaSettings, ServiceSettings
from referrals.streams.kafka import make_admin, make_consumer, make_producer
from referrals.streams.processor import Inbound, Outbound, Processor
from referrals.streams.runtime import StreamRuntime
from referrals.tools import broker

PARTITIONS = 6


class Echo(Processor):
    name = "bench"
    inputs = (SHARES,)

    def process(self, record: Inbound, now: datetime) -> Iterable[Outbound]:
        share = record.value
        assert isinstance(share, ShareEvent)
        sent = NotificationSent(share.event_id, share.advocate_id, "BENCH", "NONE", now)
        return [Outbound(NOTIFICATIONS_SENT, share.advocate_id, sent)]


async def fill(settings: KafkaSettings, n: int) -> None:
    codec = AvroCodec()
    when = datetime(2026, 5, 1, tzinfo=UTC)
    producer = make_producer(settings, linger_ms=20)
    await producer.start()
    topic = TopicNames(settings.topic_prefix)(SHARES)
    try:
        for i in range(n):
            adv = f"adv-{i % 5000}"
            value = codec.encode(ShareEvent(f"ev-{i}", "p", adv, Channel.EMAIL, "CODE", when))
            await producer.send(topic, value, key=adv.encode())
        await producer.flush()
    finally:
        await producer.stop()


async def count_outputs(settings: KafkaSettings, topic: str) -> int:
    consumer = make_consumer(settings)
    await consumer.start()
    try:
        parts = [TopicPartition(topic, p) for p in range(PARTITIONS)]
        consumer.assign(parts)
        await consumer.seek_to_beginning(*parts)
        end = await consumer.end_offsets(parts)
        total = 0
        while any([await consumer.position(tp) < end[tp] for tp in parts]):
            batch = await consumer.getmany(timeout_ms=200, max_records=10000)
            total += sum(len(v) for v in batch.values())
        return total
    finally:
        await consumer.stop()


async def baseline(settings: KafkaSettings, n: int, out_topic: str) -> float:
    codec = AvroCodec()
    names = TopicNames(settings.topic_prefix)
    consumer = make_consumer(
        settings, names(SHARES), group_id=f"bench-base-{uuid.uuid4()}", read_committed=False
    )
    producer = make_producer(settings)
    await consumer.start()
    await producer.start()
    seen = 0
    started = time.perf_counter()
    try:
        while seen < n:
            batch = await consumer.getmany(timeout_ms=100, max_records=2000)
            now = datetime.now(UTC)
            for messages in batch.values():
                for msg in messages:
                    share = codec.decode(msg.value, "ShareEvent")
                    assert isinstance(share, ShareEvent)
                    sent = NotificationSent(share.event_id, share.advocate_id, "B", "N", now)
                    await producer.send(out_topic, codec.encode(sent), key=msg.key)
                    seen += 1
            await producer.flush()
            await consumer.commit()
        return seen / (time.perf_counter() - started)
    finally:
        await consumer.stop()
        await producer.stop()


async def runtime_rate(settings: KafkaSettings, n: int, out_topic: str) -> float:
    service = ServiceSettings(
        group_id=f"bench-runtime-{uuid.uuid4()}", max_batch=2000, state_backend="memory"
    )
    runtime = StreamRuntime(
        Echo(),
        kafka=settings,
        settings=service,
        codec=AvroCodec(),
        catalogue=TOPICS,
        metrics=RuntimeMetrics("bench"),
        health=Health(),
    )
    stop = asyncio.Event()
    task = asyncio.create_task(runtime.run(stop))
    metrics = runtime.metrics
    started: float | None = None
    while True:
        done = metrics.records_in.labels(SHARES)._value.get()
        if started is None and done > 0:
            started, base = time.perf_counter(), done
        if done >= n:
            break
        if task.done():
            task.result()
        await asyncio.sleep(0.01)
    assert started is not None
    rate = (n - base) / (time.perf_counter() - started)
    stop.set()
    await task
    produced = await count_outputs(settings, out_topic)
    assert produced == n, f"runtime produced {produced} outputs for {n} inputs"
    return rate


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


async def main_async(bootstrap: str, n: int) -> None:
    prefix = f"bench{uuid.uuid4().hex[:6]}."
    settings = KafkaSettings(bootstrap_servers=bootstrap, topic_prefix=prefix)
    admin = make_admin(settings)
    await admin.start()
    try:
        await create_topics(admin, TopicNames(prefix), partitions=PARTITIONS)
        await create_topics(admin, TopicNames(prefix + "base."), partitions=PARTITIONS)
    finally:
        await admin.close()
    t0 = time.perf_counter()
    await fill(settings, n)
    print(f"filled {n} ShareEvents in {time.perf_counter() - t0:.1f} s")
    base_out = TopicNames(prefix + "base.")(NOTIFICATIONS_SENT)
    base = await baseline(settings, n, base_out)
    print(f"baseline  bare aiokafka loop (at least once):      {base:>9,.0f} records/s")
    ours = await runtime_rate(settings, n, TopicNames(prefix)(NOTIFICATIONS_SENT))
    print(f"runtime   StreamRuntime (exactly once, read_committed): {ours:>9,.0f} records/s")
    print(f"ratio     runtime / baseline = {ours / base:.2f}  (target >= 0.50)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--bootstrap")
    args = parser.parse_args()
    if args.bootstrap:
        asyncio.run(main_async(args.bootstrap, args.records))
        return
    with tempfile.TemporaryDirectory() as tmp:
        cfg = broker.BrokerConfig(
            port=_free_port(), controller_port=_free_port(), data_dir=Path(tmp) / "kafka"
        )
        broker.start(cfg)
        try:
            asyncio.run(main_async(cfg.bootstrap, args.records))
        finally:
            broker.stop(cfg)


if __name__ == "__main__":
    main()
