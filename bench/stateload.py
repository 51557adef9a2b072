"""A bulk loader of the services' own state: what rewards and notifications would hold after
consuming N advocate profiles (and a share for one in ten), written straight to their changelog
topics, so a restart restores a million advocates without the services first consuming a
million records one transaction at a time (300-750 advocates/s on the development machine,
so an hour or more).

The state is not made up: each service's own processor (built by its `app.build`, with its
settings from the environment as `referrals run` reads them) handles every profile and share
in this process, on in-memory stores, exactly as its runtime would hand them over (same
partition, same program config read from programs.config.v1); the writes it leaves in each
task's stores are the changelog entries the runtime would have produced, written to
`<service>.<store>.changelog` partition by partition. Then each service's consumer group is
committed at the inputs' ends, so the restarted service goes on from there. The input records
themselves are written by `bulkload.write` first (attribution reads them as global tables).

Run while rewards and notifications are stopped (a group with members refuses the commit).
The two services' processors run in two worker processes, one per core.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer
from aiokafka.partitioner import DefaultPartitioner

from bench import bulkload
from referrals.contract.avro import AvroCodec
from referrals.contract.records import ProgramConfig, Record
from referrals.contract.topics import ADVOCATES, PROGRAMS, SHARES, TopicNames
from referrals.platform.metrics import RuntimeMetrics
from referrals.platform.settings import KafkaSettings
from referrals.streams.kafka import make_consumer, make_producer, partitions_of
from referrals.streams.processor import Inbound, Processor
from referrals.streams.state import MemoryBackend, TaskStore
from referrals.streams.stores import changelog_topic

STATEFUL = {"rewards": (ADVOCATES,), "notifications": (ADVOCATES, SHARES)}
IN_FLIGHT = 64


def _processor(service: str, state_dir: Path) -> Processor:
    metrics = RuntimeMetrics(service)
    if service == "rewards":
        from services.rewards.adapters.settings import RewardsSettings
        from services.rewards.app import build as build_rewards

        return build_rewards(RewardsSettings(state_dir=state_dir), metrics)
    from services.notifications.adapters.config import NotificationsSettings
    from services.notifications.app import build as build_notifications

    return build_notifications(NotificationsSettings(state_dir=state_dir), metrics)


def _records(
    program_id: str, advocates: int, share_every: int, tag: str, now: datetime
) -> dict[str, Iterator[tuple[str, Record]]]:
    return {
        ADVOCATES: bulkload.profiles(program_id, advocates, tag, now),
        SHARES: bulkload.shares(program_id, advocates, share_every, tag, now),
    }


def build_state(
    service: str,
    kafka: KafkaSettings,
    config: ProgramConfig,
    partitions: int,
    advocates: int,
    share_every: int,
    tag: str,
    now: datetime,
    state_dir: str,
) -> dict[str, int]:
    """In a worker process: `service`'s processor handles the records; its stores' writes go
    to its changelogs. Returns the entries written per store."""
    p = _processor(service, Path(state_dir))
    tasks = frozenset(range(partitions))
    p.task_stores = {
        t: {name: TaskStore(name, t, MemoryBackend()) for name in p.stores} for t in tasks
    }
    p.on_global(PROGRAMS, config.program_id, config)
    asyncio.run(p.assign(tasks))
    pick, parts = DefaultPartitioner(), list(range(partitions))
    offsets, handled = dict.fromkeys(tasks, 0), 0
    for topic, records in _records(config.program_id, advocates, share_every, tag, now).items():
        if topic not in STATEFUL[service]:
            continue
        for key, record in records:
            k = key.encode()
            task = pick(k, parts, parts)
            inbound = Inbound(topic, task, offsets[task], key, record, 0)
            offsets[task] += 1
            list(p.process(inbound, now))  # new advocates: no message, no payout
            handled += 1
            if handled % 10_000 == 0:  # the effects staged meanwhile (metrics) run
                for t in tasks:
                    p.committed(t)
    entries: dict[str, list[tuple[int, bytes, bytes | None]]] = {name: [] for name in p.stores}
    for task, stores in p.task_stores.items():
        for name, store in stores.items():
            entries[name].extend((task, k, v) for k, v in store.changes())
    asyncio.run(_write_changelogs(kafka, service, entries))
    return {name: len(e) for name, e in entries.items()}


async def _write_changelogs(
    kafka: KafkaSettings, service: str, entries: dict[str, list[tuple[int, bytes, bytes | None]]]
) -> None:
    names = TopicNames(kafka.topic_prefix)
    producer = make_producer(kafka, client_id=f"bench-stateload-{service}", linger_ms=50)
    await producer.start()
    try:
        for store, rows in entries.items():
            await _write_rows(producer, names(changelog_topic(service, store)), rows)
    finally:
        await producer.stop()


async def _write_rows(
    producer: Any, topic: str, rows: list[tuple[int, bytes, bytes | None]]
) -> None:
    """Each (partition, key, value) to its partition of `topic`, in batches, many in flight."""
    batches: dict[int, Any] = {}
    pending: set[asyncio.Future[object]] = set()

    async def flush(task: int) -> None:
        batch = batches.pop(task)
        batch.close()
        pending.add(await producer.send_batch(batch, topic, partition=task))
        while len(pending) >= IN_FLIGHT:
            done, _ = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            for fut in done:
                fut.result()
            pending.difference_update(done)

    for task, key, value in rows:
        batch = batches.setdefault(task, producer.create_batch())
        if batch.append(key=key, value=value, timestamp=None) is None:
            await flush(task)
            batch = batches[task] = producer.create_batch()
            if batch.append(key=key, value=value, timestamp=None) is None:
                raise RuntimeError("a state entry larger than a whole batch")
    for task in list(batches):
        await flush(task)
    for fut in pending:
        await fut


async def _config(kafka: KafkaSettings, program_id: str) -> ProgramConfig:
    """The program's latest config on programs.config.v1, as the services read it."""
    consumer = make_consumer(kafka, client_id="bench-stateload-programs")
    await consumer.start()
    try:
        parts = await partitions_of(consumer, TopicNames(kafka.topic_prefix)(PROGRAMS))
        consumer.assign(parts)
        await consumer.seek_to_beginning(*parts)
        ends = await consumer.end_offsets(parts)
        found: ProgramConfig | None = None
        codec = AvroCodec()
        while [tp for tp in parts if await consumer.position(tp) < ends[tp]]:
            for messages in (await consumer.getmany(timeout_ms=500)).values():
                for m in messages:
                    if m.key == program_id.encode() and m.value is not None:
                        record = codec.decode(m.value)
                        if isinstance(record, ProgramConfig):
                            found = record
        if found is None:
            raise RuntimeError(f"no config for program {program_id!r} on {PROGRAMS}")
        return found
    finally:
        await consumer.stop()


async def _commit_at_end(kafka: KafkaSettings, group: str, topics: tuple[str, ...]) -> None:
    """The group's committed offsets at the ends of `topics` (the group must have no members)."""
    names = TopicNames(kafka.topic_prefix)
    probe = make_consumer(kafka, client_id="bench-stateload-ends")
    await probe.start()
    try:
        parts = [tp for t in topics for tp in await partitions_of(probe, names(t))]
        ends = await probe.end_offsets(parts)
    finally:
        await probe.stop()
    consumer = AIOKafkaConsumer(
        bootstrap_servers=kafka.bootstrap_servers, group_id=group, enable_auto_commit=False
    )
    await consumer.start()
    try:
        consumer.assign(parts)
        await consumer.commit({tp: ends[tp] for tp in parts})
    finally:
        await consumer.stop()


async def load(
    kafka: KafkaSettings,
    program_id: str,
    advocates: int,
    groups: dict[str, str],
    work: Path,
    *,
    partitions: int,
    share_every: int = 10,
    tag: str = "bulk",
    show: Callable[[str], None] = print,
) -> dict[str, dict[str, int]]:
    """The inputs (profiles, shares) to their topics, then rewards' and notifications' state to
    their changelogs and their groups committed at the inputs' ends. `groups`: service -> its
    consumer group. Returns the changelog entries written per service and store."""
    now = datetime.now(UTC)
    began = time.monotonic()
    await bulkload.write(kafka, ADVOCATES, bulkload.profiles(program_id, advocates, tag, now))
    await bulkload.write(
        kafka, SHARES, bulkload.shares(program_id, advocates, share_every, tag, now)
    )
    show(f"  inputs written in {time.monotonic() - began:.1f} s; building each service's state")
    config = await _config(kafka, program_id)
    loop = asyncio.get_running_loop()
    spawn = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=len(STATEFUL), mp_context=spawn) as pool:
        jobs = {
            service: loop.run_in_executor(
                pool,
                build_state,
                service,
                kafka,
                config,
                partitions,
                advocates,
                share_every,
                tag,
                now,
                str(work / f"stateload-{service}-{os.getpid()}"),
            )
            for service in STATEFUL
        }
        written = {service: await job for service, job in jobs.items()}
    show(f"  state written to the changelogs in {time.monotonic() - began:.1f} s: {written}")
    for service, topics in STATEFUL.items():
        await _commit_at_end(kafka, groups[service], topics)
    return written
