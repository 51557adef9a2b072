"""The limit: how fast the broker and a bare Python chain move a WON deal's records here.

1. `chain plain` and `chain transactional`: a bare aiokafka chain (no runtime, no stores, no
   checks, no metrics) carrying WON deals through the pipeline's hops, decoding and encoding
   each record with the contract's Avro codec at every hop, in the pipeline's process layout:
     attribution process   hop 1  referral.deals.v1 -> attribution.deals-by-prospect.v1 (re-key)
                           hop 2  deals-by-prospect -> referral.status.v1 (WON, by advocate)
     rewards process       hop 3  referral.status.v1 -> rewards.payouts.v1 + .v2, and the
                                  PayoutOwner on rewards.by-payout.v1
     notifications process hop 3' referral.status.v1 -> notifications.sent.v1
   Three hops in series, the status topic read by two services: four consumers, five outputs
   per deal. Plain: idempotent producers (acks=all), offsets committed after each batch's
   outputs were flushed (at least once). Transactional: a transaction per batch and stage with
   its offsets inside it, read_committed reads. The figure is input events/s from the moment
   every stage is connected to the moment the last output is committed; the outputs are then
   counted (read_committed) and must equal the inputs.
2. `kafka producer-perf` and `kafka consumer-perf`: Kafka's own ProducerPerformance and
   ConsumerPerformance (org.apache.kafka.tools, from deploy/kafka/lib) at the size of one
   encoded DealEvent: what this broker takes and gives with no Python at all.

    .venv/bin/python bench/limit.py [--records N] [--perf-records N] [--bootstrap HOST:PORT]
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import multiprocessing as mp
import re
import subprocess
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from queue import Empty
from typing import Any

import common
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import NewTopic
from figures import Part, save

from referrals.contract.avro import AvroCodec
from referrals.contract.records import (
    Channel,
    DealEvent,
    DealStage,
    MatchedBy,
    NotificationSent,
    PayoutCommand,
    PayoutOwner,
    ReferralStatus,
    ReferralStatusChanged,
    RewardType,
)
from referrals.contract.topics import (
    DEALS,
    DEALS_BY_PROSPECT,
    NOTIFICATIONS_SENT,
    PAYOUTS,
    PAYOUTS_V2,
    REWARDS_BY_PAYOUT,
    STATUS,
    TopicNames,
)
from referrals.platform.settings import KafkaSettings
from referrals.streams.kafka import make_admin, make_consumer, make_producer
from referrals.tools import broker

PARTITIONS = 6
WHEN = datetime(2026, 5, 1, tzinfo=UTC)
HOPS_NOTE = (
    "3 hops in series as the pipeline: deals -> deals-by-prospect (re-key) -> status (WON) "
    "-> payouts v1+v2 and a PayoutOwner; status also -> notifications.sent (4 consumers, "
    "5 outputs per deal), in 3 processes as attribution/rewards/notifications"
)
# Stage name -> (input topic, process it runs in).
STAGES = {
    "rekey": (DEALS, "attribution"),
    "attribute": (DEALS_BY_PROSPECT, "attribution"),
    "reward": (STATUS, "rewards"),
    "notify": (STATUS, "notifications"),
}
FINAL = ("reward", "notify")


def deal(i: int) -> DealEvent:
    return DealEvent(
        event_id=f"ev-{i}",
        program_id="bench",
        deal_id=f"deal-{i}",
        prospect_id=f"p-{i}",
        stage=DealStage.WON,
        occurred_at=WHEN,
        amount_minor=120_000,
        currency="EUR",
        declared_advocate_id=f"adv-{i % 5000}",
    )


def step(stage: str, codec: AvroCodec, value: bytes, now: datetime) -> list[tuple[str, str, bytes]]:
    """One hop's work on one record: decode, the record(s) it becomes, encoded."""
    if stage == "rekey":
        d = codec.decode(value, "DealEvent")
        assert isinstance(d, DealEvent)
        return [(DEALS_BY_PROSPECT, d.prospect_id, codec.encode(d))]
    if stage == "attribute":
        d = codec.decode(value, "DealEvent")
        assert isinstance(d, DealEvent)
        adv = d.declared_advocate_id or "?"
        status = ReferralStatusChanged(
            status_id=f"st-{d.deal_id}",
            referral_id=f"r-{d.prospect_id}",
            program_id=d.program_id,
            advocate_id=adv,
            prospect_id=d.prospect_id,
            channel=Channel.EMAIL,
            matched_by=MatchedBy.DECLARED,
            status=ReferralStatus.WON,
            config_version=1,
            occurred_at=d.occurred_at,
            deal_id=d.deal_id,
            amount_minor=d.amount_minor,
            currency=d.currency,
        )
        return [(STATUS, adv, codec.encode(status))]
    s = codec.decode(value, "ReferralStatusChanged")
    assert isinstance(s, ReferralStatusChanged)
    if stage == "notify":
        sent = NotificationSent(f"n-{s.status_id}", s.advocate_id, "WON", "EMAIL", now)
        return [(NOTIFICATIONS_SENT, s.advocate_id, codec.encode(sent))]
    payout = PayoutCommand(
        payout_id=f"pay-{s.referral_id}",
        attempt=1,
        program_id=s.program_id,
        advocate_id=s.advocate_id,
        referral_id=s.referral_id,
        reward_type=RewardType.GIFT_CARD,
        amount_minor=5_000,
        currency="EUR",
        rule_id="tier-1",
        tier=1,
        config_version=s.config_version,
        issued_at=now,
    )
    owner = PayoutOwner(payout.payout_id, s.advocate_id, s.program_id, s.referral_id, now)
    return [
        (PAYOUTS, s.advocate_id, codec.encode(payout, version=1)),
        (PAYOUTS_V2, s.advocate_id, codec.encode(payout)),
        (REWARDS_BY_PAYOUT, payout.payout_id, codec.encode(owner)),
    ]


@dataclass
class Stage:
    name: str
    consumer: AIOKafkaConsumer
    producer: AIOKafkaProducer
    group: str


async def open_stage(
    settings: KafkaSettings, names: TopicNames, name: str, transactional: bool
) -> Stage:
    topic = names(STAGES[name][0])
    group = f"limit-{name}-{uuid.uuid4().hex[:6]}"
    consumer = make_consumer(settings, group_id=group, read_committed=transactional)
    producer = make_producer(
        settings, transactional_id=f"{group}-tx" if transactional else None, linger_ms=5
    )
    await consumer.start()
    await producer.start()
    consumer.assign([TopicPartition(topic, p) for p in range(PARTITIONS)])
    return Stage(name, consumer, producer, group)


async def run_stage(stage: Stage, names: TopicNames, n: int, transactional: bool) -> float:
    """Moves n records through the stage; returns the monotonic time its last batch committed."""
    codec = AvroCodec()
    seen = 0
    while seen < n:
        batch = await stage.consumer.getmany(timeout_ms=100, max_records=2000)
        if not batch:
            continue
        now = datetime.now(UTC)
        offsets = {tp: msgs[-1].offset + 1 for tp, msgs in batch.items() if msgs}
        if transactional:
            async with stage.producer.transaction():
                for msgs in batch.values():
                    for msg in msgs:
                        for topic, key, value in step(stage.name, codec, msg.value, now):
                            await stage.producer.send(names(topic), value, key=key.encode())
                        seen += 1
                await stage.producer.send_offsets_to_transaction(offsets, stage.group)
        else:
            for msgs in batch.values():
                for msg in msgs:
                    for topic, key, value in step(stage.name, codec, msg.value, now):
                        await stage.producer.send(names(topic), value, key=key.encode())
                    seen += 1
            await stage.producer.flush()
            await stage.consumer.commit(offsets)
    return time.monotonic()


async def _process(args: dict[str, Any], ready: Any, go: Any, done: Any) -> None:
    settings = KafkaSettings(bootstrap_servers=args["bootstrap"])
    names = TopicNames(args["prefix"])
    stages = [
        await open_stage(settings, names, name, args["transactional"]) for name in args["stages"]
    ]
    ready.put(args["process"])
    while not go.is_set():  # noqa: ASYNC110 (a multiprocessing event: nothing to await)
        await asyncio.sleep(0.005)
    try:
        ends = await asyncio.gather(
            *(run_stage(s, names, args["n"], args["transactional"]) for s in stages)
        )
        done.put({s.name: end for s, end in zip(stages, ends, strict=True)})
    finally:
        for s in stages:
            await s.consumer.stop()
            await s.producer.stop()


def process_main(args: dict[str, Any], ready: Any, go: Any, done: Any) -> None:
    asyncio.run(_process(args, ready, go, done))


async def fill(settings: KafkaSettings, names: TopicNames, n: int) -> None:
    codec = AvroCodec()
    producer = make_producer(settings, linger_ms=20)
    await producer.start()
    try:
        for i in range(n):
            d = deal(i)
            await producer.send(names(DEALS), codec.encode(d), key=d.deal_id.encode())
        await producer.flush()
    finally:
        await producer.stop()


async def count(settings: KafkaSettings, topic: str) -> int:
    """Records readable read_committed in the topic (every partition, to its end)."""
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


async def make_topics(settings: KafkaSettings, names: TopicNames, topics: list[str]) -> None:
    """Creates the topics (PARTITIONS each) and waits until each partition has a leader."""
    admin = make_admin(settings)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(names(t), PARTITIONS, 1) for t in topics])
    finally:
        await admin.close()
    probe = make_consumer(settings)
    await probe.start()
    try:
        for topic in topics:
            while len(probe.partitions_for_topic(names(topic)) or ()) < PARTITIONS:
                await probe._client.force_metadata_update()
                await asyncio.sleep(0.05)
    finally:
        await probe.stop()


async def one_process(args: dict[str, Any]) -> tuple[float, dict[str, float]]:
    """Every stage in this process (the smoke test's form): (start, stage -> end)."""
    settings = KafkaSettings(bootstrap_servers=args["bootstrap"])
    names = TopicNames(args["prefix"])
    stages = [await open_stage(settings, names, name, args["transactional"]) for name in STAGES]
    started = time.monotonic()
    try:
        ends = await asyncio.gather(
            *(run_stage(s, names, args["n"], args["transactional"]) for s in stages)
        )
        return started, {s.name: end for s, end in zip(stages, ends, strict=True)}
    finally:
        for s in stages:
            await s.consumer.stop()
            await s.producer.stop()


def chain(
    bootstrap: str, n: int, transactional: bool, *, processes: bool = True
) -> tuple[float, dict[str, int]]:
    """Runs the chain once on fresh topics; returns (input events/s, outputs counted)."""
    prefix = f"limit{'tx' if transactional else 'pl'}{uuid.uuid4().hex[:6]}."
    settings = KafkaSettings(bootstrap_servers=bootstrap, topic_prefix="")
    names = TopicNames(prefix)
    outputs = [
        DEALS_BY_PROSPECT,
        STATUS,
        PAYOUTS,
        PAYOUTS_V2,
        REWARDS_BY_PAYOUT,
        NOTIFICATIONS_SENT,
    ]
    asyncio.run(make_topics(settings, names, [DEALS, *outputs]))
    asyncio.run(fill(settings, names, n))
    if processes:
        started, ends = in_processes(bootstrap, prefix, n, transactional)
    else:
        args = {"bootstrap": bootstrap, "prefix": prefix, "n": n, "transactional": transactional}
        started, ends = asyncio.run(one_process(args))
    rate = n / (max(ends[s] for s in FINAL) - started)
    counted = {
        topic: asyncio.run(count(settings, names(topic)))
        for topic in (PAYOUTS, PAYOUTS_V2, NOTIFICATIONS_SENT)
    }
    return rate, counted


def in_processes(
    bootstrap: str, prefix: str, n: int, transactional: bool
) -> tuple[float, dict[str, float]]:
    """The stages in the pipeline's processes: (start, stage -> end)."""
    ctx = mp.get_context("spawn")
    ready, done, go = ctx.Queue(), ctx.Queue(), ctx.Event()
    layout: dict[str, list[str]] = {}
    for stage, (_, process) in STAGES.items():
        layout.setdefault(process, []).append(stage)
    procs = []
    for process, stages in layout.items():
        args = {
            "bootstrap": bootstrap,
            "prefix": prefix,
            "stages": stages,
            "process": process,
            "n": n,
            "transactional": transactional,
        }
        proc = ctx.Process(target=process_main, args=(args, ready, go, done), name=process)
        proc.start()
        procs.append(proc)
    for _ in procs:
        ready.get(timeout=120)
    started = time.monotonic()
    go.set()
    ends: dict[str, float] = {}
    deadline = time.monotonic() + max(120.0, n / 200)
    while len(ends) < len(STAGES):
        try:
            ends.update(done.get(timeout=1.0))
        except Empty as empty:
            dead = [p.name for p in procs if p.exitcode not in (None, 0)]
            if dead or time.monotonic() > deadline:
                for p in procs:
                    p.kill()
                stalled = f"the chain stalled (failed: {dead}, finished: {sorted(ends)})"
                raise RuntimeError(stalled) from empty
    for p in procs:
        p.join(timeout=60)
    return started, ends


def kafka_perf(bootstrap: str, records: int, size: int) -> tuple[float, float]:
    """Kafka's ProducerPerformance then ConsumerPerformance on one fresh topic: records/s."""
    topic = f"perf-{uuid.uuid4().hex[:6]}"
    settings = KafkaSettings(bootstrap_servers=bootstrap)

    asyncio.run(make_topics(settings, TopicNames(""), [topic]))
    jvm = [
        "java",
        "-Xmx512m",
        f"-Dlog4j.configuration=file:{common.REPO / 'bench' / 'tools-log4j.properties'}",
        "-cp",
        str(broker.LIB_DIR / "*"),
    ]
    produced = subprocess.run(
        [
            *jvm,
            "org.apache.kafka.tools.ProducerPerformance",
            "--topic",
            topic,
            "--num-records",
            str(records),
            "--record-size",
            str(size),
            "--throughput",
            "-1",
            "--producer-props",
            f"bootstrap.servers={bootstrap}",
            "acks=all",
            "enable.idempotence=true",
            "linger.ms=5",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    # A line every 5 s, then the summary: "N records sent, R records/sec (...), ... latency".
    summary = re.findall(r"^(\d+) records sent, ([\d.]+) records/sec", produced, re.M)
    if not summary or int(summary[-1][0]) != records:
        raise RuntimeError(f"ProducerPerformance printed no summary:\n{produced}")
    producer_rate = float(summary[-1][1])
    consumed = subprocess.run(
        [
            *jvm,
            "org.apache.kafka.tools.ConsumerPerformance",
            "--bootstrap-server",
            bootstrap,
            "--topic",
            topic,
            "--messages",
            str(records),
            "--timeout",
            "60000",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    lines = [line for line in consumed.splitlines() if line.strip()]
    header = next(i for i, line in enumerate(lines) if "nMsg.sec" in line)
    row = dict(
        zip(
            [h.strip() for h in lines[header].split(",")],
            [v.strip() for v in lines[header + 1].split(",")],
            strict=False,
        )
    )
    return producer_rate, float(row["fetch.nMsg.sec"])


def main() -> None:
    logging.basicConfig(level=logging.ERROR)  # aiokafka's retries while leaders move are noise
    smoke = common.scale() == "smoke"
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=300 if smoke else 30_000)
    parser.add_argument("--perf-records", type=int, default=2_000 if smoke else 1_000_000)
    parser.add_argument("--bootstrap")
    parser.add_argument(
        "--one-process", action="store_true", help="every stage in one process (smoke test)"
    )
    args = parser.parse_args()
    part = Part("limit")
    size = len(AvroCodec().encode(deal(123_456)))
    with common.bench_broker(args.bootstrap) as bootstrap:
        for transactional, label in ((False, "chain plain"), (True, "chain transactional")):
            rate, counted = chain(
                bootstrap, args.records, transactional, processes=not args.one_process
            )
            lost = {t: c for t, c in counted.items() if c != args.records}
            mode = (
                "a transaction per batch and stage, offsets in it, read_committed"
                if transactional
                else "idempotent producers, offsets committed after each flush (at least once)"
            )
            note = f"{args.records:,} WON deals; {mode}; {HOPS_NOTE}"
            if args.one_process:
                note += " (here all in one process: --one-process)"
            if lost:
                note += f"; OUTPUTS WRONG: {lost} for {args.records} inputs"
            detail = {"inputs": args.records, "outputs": counted, "ok": not lost}
            part.add(label, rate, "events/s", note=note, detail=detail)
        if args.perf_records:
            prod, cons = kafka_perf(bootstrap, args.perf_records, size)
            note = f"{args.perf_records:,} records of {size} bytes (one encoded DealEvent)"
            part.add("kafka producer-perf", prod, "records/s", note=note + ", acks=all")
            part.add("kafka consumer-perf", cons, "records/s", note=note + ", fetch rate")
    print(f"saved {save(part, common.results_dir())}")


if __name__ == "__main__":
    main()
