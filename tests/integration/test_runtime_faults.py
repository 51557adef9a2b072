"""The runtime under the faults of the reliability issue, in-process against the real broker:
a zombie's checkpoint, a fenced task, a task that fails to open, failing timers, a failing
global-table follower, and a slow restore that outlasts the session timeout.

Each test names the finding it guards; each fails on the runtime as it was before the fix."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from aiokafka.errors import ProducerFenced
from prometheus_client import CollectorRegistry

from referrals.contract.avro import AvroCodec
from referrals.contract.records import Channel, NotificationSent, ShareEvent
from referrals.contract.topics import (
    ADVOCATES,
    CONVERSIONS,
    NOTIFICATIONS_SENT,
    SHARES,
    TOPICS,
    TopicNames,
)
from referrals.platform.metrics import Health, RuntimeMetrics
from referrals.platform.settings import KafkaSettings, ServiceSettings
from referrals.streams.dlq import header_dict
from referrals.streams.globals import GlobalTables
from referrals.streams.kafka import make_producer
from referrals.streams.processor import Inbound, Outbound, Output, Processor
from referrals.streams.runtime import LAG_EVERY_S, StreamRuntime
from referrals.streams.stores import StoreManager
from referrals.streams.txn_offsets import GroupMetadata

from .helpers import produce, read_topic

pytestmark = pytest.mark.broker
CODEC = AvroCodec()
WHEN = datetime(2026, 5, 1, tzinfo=UTC)


def share(i: int, advocate: str | None = None) -> tuple[bytes, bytes]:
    adv = advocate or f"adv-{i % 7}"
    return adv.encode(), CODEC.encode(ShareEvent(f"ev-{i}", "p", adv, Channel.EMAIL, "C", WHEN))


def sent(notification_id: str, advocate: str, now: datetime) -> Outbound:
    value = NotificationSent(notification_id, advocate, "TEST", "TEST", now)
    return Outbound(NOTIFICATIONS_SENT, advocate, value)


class Counting(Processor):
    """Counts shares per advocate in a durable store; the n-th share of an advocate emits
    "<advocate>#<n>", so lost or stale state shows as a repeated id."""

    name = "counting"
    inputs = (SHARES,)
    stores = ("counts",)

    def process(self, record: Inbound, now: datetime) -> Iterable[Output]:
        adv = record.value.advocate_id
        counts = self.store(record.partition, "counts")
        n = int(counts.get(adv.encode()) or b"0") + 1
        counts.put(adv.encode(), str(n).encode())
        return [sent(f"{adv}#{n}", adv, now)]


def settings_for(kafka: KafkaSettings, state_dir: Path, **extra: Any) -> ServiceSettings:
    return ServiceSettings(
        group_id=f"{kafka.topic_prefix}group",
        state_dir=state_dir,
        session_timeout_ms=6000,
        punctuate_ms=100,
        **extra,
    )


@asynccontextmanager
async def running(
    processor: Processor, kafka: KafkaSettings, settings: ServiceSettings
) -> AsyncIterator[StreamRuntime]:
    runtime = StreamRuntime(
        processor,
        kafka=kafka,
        settings=settings,
        codec=CODEC,
        catalogue=TOPICS,
        metrics=RuntimeMetrics(processor.name),
        health=Health(),
    )
    stop = asyncio.Event()
    task = asyncio.create_task(runtime.run(stop))
    try:
        yield runtime
        assert not task.done(), f"the runtime stopped by itself: {task.exception()!r}"
    finally:
        stop.set()
        await asyncio.wait_for(task, 60)


async def until(check: Callable[[], Awaitable[bool] | bool], within: float = 60.0) -> None:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        result = check()
        if await result if isinstance(result, Awaitable) else result:
            return
        await asyncio.sleep(0.1)
    raise AssertionError("condition not reached in time")


async def outputs(kafka: KafkaSettings, expect: int | None = None) -> Counter[str]:
    records = await read_topic(kafka, NOTIFICATIONS_SENT, expect=expect, within=60, quiet=1.0)
    return Counter(CODEC.decode(m.value).notification_id for m in records)


async def dead_letters(kafka: KafkaSettings) -> int:
    return len(await read_topic(kafka, f"{SHARES}.dlq", within=3, quiet=1.0))


async def test_a_checkpoint_never_claims_changelog_entries_the_local_store_does_not_hold(
    topics: KafkaSettings, tmp_path: Path
) -> None:
    """Finding: the checkpoint recorded the changelog's end at close. Here another writer (the
    new owner of a zombie's task) appends to the changelog while this instance still holds the
    task; after a clean stop and restart, the store must hold that write."""
    settings = settings_for(topics, tmp_path)
    await produce(topics, SHARES, [share(i, "adv-z") for i in range(3)])
    async with running(Counting(), topics, settings):
        await until(lambda: _has(topics, "adv-z#3"))
        changelog = TopicNames(topics.topic_prefix)("counting.counts.changelog")
        producer = make_producer(topics, client_id="new-owner")
        await producer.start()
        try:  # the new owner counted 10 shares of adv-z; written to every task's changelog
            for partition in range(3):
                await producer.send_and_wait(changelog, b"10", key=b"adv-z", partition=partition)
        finally:
            await producer.stop()
    async with running(Counting(), topics, settings):  # restores from its checkpoint
        await produce(topics, SHARES, [share(100, "adv-z")])
        await until(lambda: _has(topics, "adv-z#11", "adv-z#4"))
    ids = await outputs(topics)
    assert "adv-z#11" in ids and "adv-z#4" not in ids


async def _has(kafka: KafkaSettings, *any_of: str) -> bool:
    seen = await read_topic(kafka, NOTIFICATIONS_SENT, within=1.0, quiet=0.3)
    return any(CODEC.decode(m.value).notification_id in any_of for m in seen)


async def test_a_fenced_producer_drops_the_tasks_and_the_process_takes_them_back(
    topics: KafkaSettings, tmp_path: Path
) -> None:
    """Finding: "producer fenced by another owner" ended the whole process. Another producer
    takes the process's transactional id (as a restarted copy of it would); the instance must
    drop its tasks, rejoin, take them back and process everything exactly once."""
    settings = settings_for(topics, tmp_path)
    await produce(topics, SHARES, [share(i) for i in range(20)])
    async with running(Counting(), topics, settings) as runtime:
        await outputs(topics, expect=20)
        assert runtime._identity is not None
        usurper = make_producer(topics, transactional_id=runtime._identity.transactional_id)
        await usurper.start()
        await usurper.stop()
        await produce(topics, SHARES, [share(i) for i in range(20, 60)])
        ids = await outputs(topics, expect=60)
        assert runtime.metrics.transactions.labels("fenced")._value.get() >= 1
    assert sum(ids.values()) == 60 and max(ids.values()) == 1
    assert set(ids) == {f"adv-{a}#{n}" for a in range(7) for n in range(1, (9 if a < 4 else 8) + 1)}


async def test_a_transaction_under_a_generation_the_group_has_left_aborts_and_is_redone(
    topics: KafkaSettings, tmp_path: Path
) -> None:
    """A zombie (paused past its session timeout) commits under the generation it had: the
    group refuses the offsets, and the transaction, its outputs and state writes abort; the
    instance drops its tasks, rejoins, and the records are processed once."""
    settings = settings_for(topics, tmp_path)
    await produce(topics, SHARES, [share(i) for i in range(20)])
    async with running(Counting(), topics, settings) as runtime:
        await outputs(topics, expect=20)
        real = runtime._membership
        stale = {"left": 1}

        def membership() -> GroupMetadata | None:
            found = real()
            if found is not None and stale["left"]:
                stale["left"] -= 1
                return dataclasses.replace(found, generation=found.generation - 1)
            return found

        runtime._membership = membership  # type: ignore[method-assign]
        await produce(topics, SHARES, [share(i) for i in range(20, 60)])
        ids = await outputs(topics, expect=60)
        assert not stale["left"], "the stale generation was never used"
        assert runtime.metrics.transactions.labels("fenced")._value.get() >= 1
    assert sum(ids.values()) == 60 and max(ids.values()) == 1
    assert set(ids) == {f"adv-{a}#{n}" for a in range(7) for n in range(1, (9 if a < 4 else 8) + 1)}


async def test_an_owner_of_the_previous_version_is_fenced_when_its_task_opens(
    topics: KafkaSettings, tmp_path: Path
) -> None:
    """Before one producer per process, each task had its own transactional id and committed
    offsets without a generation: during a rolling upgrade, such an owner (a zombie) is fenced
    by its id when the new version opens the task, and its open transaction never commits."""
    settings = settings_for(topics, tmp_path)
    old_owner = make_producer(topics, transactional_id=f"{settings.group_id}-0")
    await old_owner.start()
    try:
        await old_owner.begin_transaction()
        sent_value = CODEC.encode(NotificationSent("old-owner", "adv", "TEST", "TEST", WHEN))
        names = TopicNames(topics.topic_prefix)
        await old_owner.send(names(NOTIFICATIONS_SENT), sent_value, key=b"adv", partition=0)
        await produce(topics, SHARES, [share(i) for i in range(10)])
        async with running(Counting(), topics, settings):
            ids = await outputs(topics, expect=10)
        with pytest.raises(ProducerFenced):
            await old_owner.commit_transaction()
    finally:
        await old_owner.stop()
    assert "old-owner" not in ids and sum(ids.values()) == 10 and max(ids.values()) == 1
    assert "old-owner" not in await outputs(topics)


async def test_a_restarted_process_keeps_its_transactional_id_and_a_twin_gets_another(
    topics: KafkaSettings, tmp_path: Path
) -> None:
    """The id comes from the state directory: a restart aborts its predecessor's open
    transaction at once (same id); two processes sharing a directory never share one."""
    settings = settings_for(topics, tmp_path)
    async with running(Counting(), topics, settings) as first:
        await until(first.health.is_ready)
        assert first._identity is not None
        before = first._identity.transactional_id
        async with running(Counting(), topics, settings) as twin:
            await until(twin.health.is_ready)
            assert twin._identity is not None
            assert twin._identity.transactional_id != before
    async with running(Counting(), topics, settings) as again:
        await until(again.health.is_ready)
        assert again._identity is not None and again._identity.transactional_id == before
    assert before.startswith(f"{settings.group_id}-")  # the services' ACL prefix


async def test_a_task_whose_stores_fail_to_open_is_retried_and_nothing_is_dead_lettered(
    topics: KafkaSettings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Finding: an exception while opening a store (raised in the rebalance callback, which
    aiokafka only logs) left tasks with producers but no stores, and every record of them was
    dead-lettered as a KeyError."""
    real = StoreManager.open_tasks
    failures = [OSError("disk full"), OSError("disk full")]

    async def flaky(self: StoreManager, tasks: frozenset[int]) -> None:
        if failures:
            raise failures.pop()
        await real(self, tasks)

    monkeypatch.setattr(StoreManager, "open_tasks", flaky)
    await produce(topics, SHARES, [share(i) for i in range(30)])
    async with running(Counting(), topics, settings_for(topics, tmp_path)) as runtime:
        problems: list[str] = []
        original = runtime.health.problem
        runtime.health.problem = lambda name, text: problems.append(name) or original(name, text)  # type: ignore[method-assign]
        ids = await outputs(topics, expect=30)
        await until(runtime.health.is_ready)
    assert not failures, "the failures were never hit"
    assert sum(ids.values()) == 30 and max(ids.values()) == 1
    assert await dead_letters(topics) == 0
    assert "tasks" in problems


class FailingTimers(Counting):
    """Each task's timer writes a marker and emits "timer-<task>" once; the first calls fail
    after writing, as a bug in the middle of a release would."""

    name = "timers"

    def __init__(self, failures: int) -> None:
        self.failures = failures

    def punctuate(self, task: int, now: datetime) -> list[Output]:
        counts = self.store(task, "counts")
        if counts.get(b"#timer") is not None:
            return []
        counts.put(b"#timer", b"1")
        if self.failures > 0:
            self.failures -= 1
            raise RuntimeError("a bug in a timer")
        return [sent(f"timer-{task}", "timers", now)]


async def test_failing_timers_commit_nothing_are_retried_and_mark_the_service_not_ready(
    topics: KafkaSettings, tmp_path: Path
) -> None:
    """Finding: a timer error switched the task's timers off until restart, health green."""
    processor = FailingTimers(failures=3)
    await produce(topics, SHARES, [share(i) for i in range(10)])
    async with running(processor, topics, settings_for(topics, tmp_path)) as runtime:
        seen: list[str] = []
        original = runtime.health.problem
        runtime.health.problem = lambda name, text: seen.append(name) or original(name, text)  # type: ignore[method-assign]
        ids = await outputs(topics, expect=13)
        await until(runtime.health.is_ready)
    assert processor.failures == 0
    assert {i for i in ids if i.startswith("timer-")} == {"timer-0", "timer-1", "timer-2"}
    assert sum(ids.values()) == 13 and max(ids.values()) == 1  # records redone, never twice
    assert any(name.startswith("timers:task-") for name in seen)


class Follower(Processor):
    name = "follower"
    inputs = (CONVERSIONS,)
    globals = (SHARES,)

    def __init__(self) -> None:
        self.seen: list[str] = []

    def on_global(self, topic: str, key: str | None, record: Any) -> None:
        self.seen.append(record.event_id)


async def test_the_global_table_follower_survives_a_failure_and_reports_it(
    topics: KafkaSettings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Finding: one failed send ended the follower silently; health stayed green."""
    real = GlobalTables._apply
    calls = {"n": 0}

    async def flaky(self: GlobalTables, batch: dict[Any, list[Any]]) -> None:
        if batch and calls["n"] == 0:
            calls["n"] += 1
            raise ConnectionError("the dead-letter send failed")
        await real(self, batch)

    processor = Follower()
    async with running(processor, topics, settings_for(topics, tmp_path)) as runtime:
        await until(runtime.health.is_ready)
        monkeypatch.setattr(GlobalTables, "_apply", flaky)  # after bootstrap: while following
        problems: list[str] = []
        original = runtime.health.problem
        runtime.health.problem = lambda name, text: problems.append(name) or original(name, text)  # type: ignore[method-assign]
        await produce(topics, SHARES, [share(i) for i in range(5)])
        await until(lambda: len(set(processor.seen)) == 5)
        await until(runtime.health.is_ready)
    assert calls["n"] == 1 and problems == ["globals"]


class Lagging(Follower):
    def __init__(self) -> None:
        super().__init__()
        # (partition, offsets) as told, and the topic's lag gauge at that moment.
        self.behind: list[tuple[int, int, float]] = []
        self.registry: CollectorRegistry | None = None

    def global_behind(self, topic: str, partition: int, offsets: int) -> None:
        assert topic == SHARES and self.registry is not None
        gauge = self.registry.get_sample_value("referrals_global_table_lag", {"topic": SHARES})
        self.behind.append((partition, offsets, gauge or 0.0))


async def test_the_follower_tells_the_processor_how_far_behind_it_is_until_it_caught_up(
    topics: KafkaSettings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Attribution holds expiry while the shares follower lags its inputs: the follower must
    say when it is behind a partition's end and, once it caught up, say 0; its gauge shows the
    topic's lag meanwhile."""
    real = GlobalTables._apply
    gate = asyncio.Event()
    gate.set()

    async def held(self: GlobalTables, batch: dict[Any, list[Any]]) -> None:
        await gate.wait()
        await real(self, batch)

    processor = Lagging()
    async with running(processor, topics, settings_for(topics, tmp_path)) as runtime:
        await until(runtime.health.is_ready)
        processor.registry = runtime.metrics.registry
        gate.clear()  # the follower's next batch waits while the whole backlog is published
        monkeypatch.setattr(GlobalTables, "_apply", held)
        await produce(topics, SHARES, [share(i) for i in range(6000)])
        gate.set()
        await until(lambda: len(processor.seen) == 6000)
        await until(lambda: bool(processor.behind) and _caught_up(processor.behind))
        lag = processor.registry.get_sample_value("referrals_global_table_lag", {"topic": SHARES})
    assert max(n for _, n, _ in processor.behind) > 0  # it was behind, and said so
    # The gauge sums the topic's partitions: never below what one of them was behind.
    assert all(gauge >= n for _, n, gauge in processor.behind)
    assert lag == 0


def _caught_up(told: list[tuple[int, int, float]]) -> bool:
    last: dict[int, int] = {}
    for partition, offsets, _ in told:
        last[partition] = offsets
    return not any(last.values())


async def test_a_restore_longer_than_the_session_timeout_does_not_rebalance_forever(
    topics: KafkaSettings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Finding: restores ran inside the rebalance callback, where no heartbeats are sent; one
    outlasting the session timeout (6 s here) rebalanced again and again."""
    real = StoreManager.open_tasks
    slow = {"left": 1}

    async def slow_open(self: StoreManager, tasks: frozenset[int]) -> None:
        if slow["left"]:
            slow["left"] -= 1
            await asyncio.sleep(8.0)
        await real(self, tasks)

    monkeypatch.setattr(StoreManager, "open_tasks", slow_open)
    assignments = {"n": 0}
    real_assigned = StreamRuntime.on_assigned

    async def counted(self: StreamRuntime, assigned: set[Any]) -> None:
        assignments["n"] += 1
        await real_assigned(self, assigned)

    monkeypatch.setattr(StreamRuntime, "on_assigned", counted)
    await produce(topics, SHARES, [share(i) for i in range(20)])
    async with running(Counting(), topics, settings_for(topics, tmp_path)):
        ids = await outputs(topics, expect=20)
    assert sum(ids.values()) == 20 and max(ids.values()) == 1
    assert assignments["n"] == 1, f"{assignments['n']} assignments: the member was thrown out"


class Oversized(Counting):
    """Share "ev-3" makes an output far over Kafka's record limit; the others are normal."""

    name = "oversized"

    def process(self, record: Inbound, now: datetime) -> Iterable[Output]:
        out = list(super().process(record, now))
        if record.value.event_id == "ev-3":
            adv = record.value.advocate_id
            return [*out, sent("x" * 1_100_000, adv, now)]
        return out


async def test_a_record_whose_output_exceeds_the_record_limit_is_dead_lettered_not_retried(
    topics: KafkaSettings, tmp_path: Path
) -> None:
    """Finding (poison by size): an output over 1 MiB aborted the transaction, the task was
    rebuilt and the same record failed again, forever."""
    await produce(topics, SHARES, [share(i, "adv-s") for i in range(6)])
    async with running(Oversized(), topics, settings_for(topics, tmp_path)):
        ids = await outputs(topics, expect=5)
        dead = await read_topic(topics, f"{SHARES}.dlq", expect=1, within=30)
    # ev-3 is undone whole (its count too): the next share counts as the 4th
    assert set(ids) == {f"adv-s#{n}" for n in range(1, 6)} and max(ids.values()) == 1
    assert [header_dict(m.headers)["dlq.error.reason"] for m in dead] == ["OUTPUT_TOO_LARGE"]


class Tables(Processor):
    name = "tables"
    inputs = (ADVOCATES, SHARES)

    def __init__(self) -> None:
        self.deletes: list[str | None] = []

    def deleted(self, record: Inbound, now: datetime) -> Iterable[Output]:
        self.deletes.append(record.key)
        return ()


async def test_a_tombstone_deletes_a_compacted_tables_key_and_is_bad_input_elsewhere(
    topics: KafkaSettings, tmp_path: Path
) -> None:
    """Finding: a tombstone on the advocates topic (an erasure request by the contract) was
    dead-lettered as bad input."""
    processor = Tables()
    await produce(topics, ADVOCATES, [(b"adv-gone", None)])  # type: ignore[list-item]
    await produce(topics, SHARES, [(b"adv-1", None)])  # type: ignore[list-item]
    async with running(processor, topics, settings_for(topics, tmp_path)):
        await until(lambda: processor.deletes == ["adv-gone"])
        dead = await read_topic(topics, f"{SHARES}.dlq", expect=1, within=30)
    assert [header_dict(m.headers)["dlq.error.reason"] for m in dead] == ["TOMBSTONE"]
    assert await read_topic(topics, f"{ADVOCATES}.dlq", within=2) == []


async def test_a_bad_global_record_is_dead_lettered_once_not_again_at_each_restart(
    topics: KafkaSettings, tmp_path: Path
) -> None:
    """Found by the fault suite: every start re-read the global tables and dead-lettered the
    same bad records again (hundreds of copies of a few bad program records)."""
    await produce(topics, SHARES, [(b"adv-1", b"plain text, not Avro"), share(1)])
    for _ in range(3):
        processor = Follower()
        async with running(processor, topics, settings_for(topics, tmp_path)) as runtime:
            await until(runtime.health.is_ready)
            assert processor.seen == ["ev-1"]
    await produce(topics, SHARES, [(b"adv-1", b"more plain text")])
    async with running(Follower(), topics, settings_for(topics, tmp_path)) as runtime:
        await until(runtime.health.is_ready)
    dead = await read_topic(topics, f"{SHARES}.dlq", within=5, quiet=2)
    assert sorted(int(header_dict(m.headers)["dlq.original.offset"]) for m in dead) == [0, 2]


class SlowToOpen(Counting):
    """Counting whose tasks are handed over only when the test says so (`assign` runs after
    each task's state is restored, before it processes anything)."""

    name = "slowopen"

    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.assigning = asyncio.Event()

    async def assign(self, tasks: frozenset[int]) -> None:
        self.assigning.set()
        await self.release.wait()
        await super().assign(tasks)


async def test_not_ready_until_every_assigned_task_is_open(
    topics: KafkaSettings, tmp_path: Path
) -> None:
    """Finding: /readyz answered ready as soon as the consumer joined the group, before any
    task's state was restored, so a rolling restart could stop the old instance while the new
    one processed nothing yet."""
    processor = SlowToOpen()
    await produce(topics, SHARES, [share(i) for i in range(6)])
    async with running(processor, topics, settings_for(topics, tmp_path)) as runtime:
        await asyncio.wait_for(processor.assigning.wait(), 60)
        await asyncio.sleep(0.5)  # the loop runs on meanwhile
        assert runtime.health.alive()
        assert not runtime.health.is_ready(), "ready while its tasks are still opening"
        processor.release.set()
        await until(runtime.health.is_ready)
        ids = await outputs(topics, expect=6)
    assert sum(ids.values()) == 6


async def test_a_caught_up_task_shows_no_lag_for_its_inputs_commit_markers(
    topics: KafkaSettings, tmp_path: Path
) -> None:
    """An input written in transactions (every topic between our services) ends each one with a
    commit marker, an offset no consumer is given. A task that has processed every record
    showed one record of lag per partition and transaction end, on the gauges and so on the
    dashboards and alerts: an idle pipeline never read 0."""
    producer = make_producer(
        topics, client_id="tests-txn", transactional_id=f"{topics.topic_prefix}t"
    )
    await producer.start()
    try:
        async with producer.transaction():
            for i in range(30):
                key, value = share(i)
                await producer.send(TopicNames(topics.topic_prefix)(SHARES), value, key=key)
    finally:
        await producer.stop()
    async with running(Counting(), topics, settings_for(topics, tmp_path)) as runtime:
        done = runtime.metrics.records_in.labels(SHARES)
        await until(lambda: done._value.get() == 30)
        lag = runtime.metrics.lag.labels(SHARES)
        await asyncio.sleep(3 * LAG_EVERY_S)  # the gauges set since the last record
        await until(lambda: lag._value.get() == 0, within=10)
        per_partition = [
            runtime.metrics.registry.get_sample_value(
                "referrals_consumer_partition_lag", {"topic": SHARES, "partition": str(p)}
            )
            for p in range(3)
        ]
        assert per_partition == [0, 0, 0]  # each set by the runtime (None if never set)
