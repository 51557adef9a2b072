"""A re-key hop's records handed straight to their task (`referrals.streams.loopback`),
against the real broker: exactly once, in order per source, and handed over (not written) once
the task's partition of the re-key topic is drained; through a transaction the group refuses
and through tasks moving between two instances.

The processor re-keys shares (by advocate) by their code, then counts shares per code: the n-th
share of a code emits "<code>#<n>=<event>". A share lost or handled twice shows as a missing
or repeated event; one handed over ahead of a share of the same advocate and code that was
forwarded before it shows as counts out of order."""

from __future__ import annotations

import asyncio
import dataclasses
import re
from collections import defaultdict
from collections.abc import Iterable
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from aiokafka import TopicPartition

from referrals.contract.records import Channel, ShareEvent
from referrals.contract.topics import NOTIFICATIONS_SENT, SHARES
from referrals.platform.settings import KafkaSettings
from referrals.streams import runtime as runtime_module
from referrals.streams.kafka import make_admin
from referrals.streams.loopback import HANDED_OVER_OFFSET, high_watermarks
from referrals.streams.processor import Inbound, Outbound, Output, Processor
from referrals.streams.runtime import StreamRuntime
from referrals.streams.topics import Role, TopicNames, TopicSpec, create_named_topics
from referrals.streams.txn_offsets import GroupMetadata

from .helpers import produce, read_topic
from .test_runtime_faults import CODEC, WHEN, running, sent, settings_for, until

pytestmark = pytest.mark.broker
REKEYED = "tests.shares-by-code.v1"
ADVOCATES = 7
CODES = 5
SENT_ID = re.compile(r"(c\d+)#(\d+)=ev-(\d+)")


class ReKeying(Processor):
    name = "rekeying"
    inputs = (SHARES, REKEYED)
    stores = ("counts",)
    internal_topics = (TopicSpec(REKEYED, "ShareEvent", "referral_code", Role.INTERNAL),)
    loopback = (REKEYED,)

    def process(self, record: Inbound, now: datetime) -> Iterable[Output]:
        share = record.value
        assert isinstance(share, ShareEvent)
        if record.topic == SHARES:
            return [Outbound(REKEYED, share.referral_code, share)]
        counts = self.store(record.partition, "counts")
        key = share.referral_code.encode()
        n = int(counts.get(key) or b"0") + 1
        counts.put(key, str(n).encode())
        return [sent(f"{share.referral_code}#{n}=ev-{share.event_id}", share.advocate_id, now)]


def shares(start: int, stop: int) -> list[tuple[bytes, bytes]]:
    out = []
    for i in range(start, stop):
        adv = f"adv-{i % ADVOCATES}"
        value = ShareEvent(str(i), "p", adv, Channel.EMAIL, f"c{(i // ADVOCATES) % CODES}", WHEN)
        out.append((adv.encode(), CODEC.encode(value)))
    return out


async def publish(kafka: KafkaSettings, start: int, stop: int, batch: int = 40) -> None:
    """Shares `start`..`stop - 1` in batches a little apart, so that later ones find the task
    drained."""
    for first in range(start, stop, batch):
        await produce(kafka, SHARES, shares(first, min(first + batch, stop)))
        await asyncio.sleep(0.2)


async def check_outputs(kafka: KafkaSettings, total: int) -> None:
    """Every share handled once, each code counted 1..n with no gap or repeat, and the shares
    of one advocate and code counted in the order they were published."""
    records = await read_topic(kafka, NOTIFICATIONS_SENT, expect=total, within=90, quiet=2.0)
    counted: dict[str, list[int]] = defaultdict(list)
    by_pair: dict[tuple[int, str], list[tuple[int, int]]] = defaultdict(list)
    events: list[int] = []
    for m in records:
        found = SENT_ID.fullmatch(CODEC.decode(m.value).notification_id)
        assert found is not None
        code, n, i = found.group(1), int(found.group(2)), int(found.group(3))
        counted[code].append(n)
        by_pair[(i % ADVOCATES, code)].append((i, n))
        events.append(i)
    assert sorted(events) == list(range(total)), "a share lost or handled twice"
    for code, ns in counted.items():
        assert sorted(ns) == list(range(1, len(ns) + 1)), f"{code}: counts out of step {ns}"
    for pair, seen in by_pair.items():
        order = [i for i, _ in sorted(seen, key=lambda s: s[1])]
        assert order == sorted(order), f"advocate and code {pair} handled out of order: {order}"


@pytest.fixture
async def rekeyed(topics: KafkaSettings) -> KafkaSettings:
    """The contract's topics, and the re-key topic (the runtime checks its inputs are
    co-partitioned before it creates its internal topics)."""
    admin = make_admin(topics, "tests-rekeyed")
    await admin.start()
    try:
        await create_named_topics(
            admin, {TopicNames(topics.topic_prefix)(REKEYED): {}}, partitions=3
        )
    finally:
        await admin.close()
    return topics


def handed(runtime: StreamRuntime) -> float:
    value: float = runtime.metrics.handed_over.labels(REKEYED)._value.get()
    return value


async def test_rekeyed_records_are_handed_to_their_task_once_exactly_and_in_order(
    rekeyed: KafkaSettings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A backlog waits when the instance starts, taken 10 records a transaction; then shares
    arrive in batches, a little apart, while every third transaction resets the floors (as
    tasks moving and failed transactions do): each time the next transactions forward until
    the ends are read, and none may hand a share over before those forwarded earlier from
    its source are handled. The ends read arrive 50 ms late, so they predate what was
    forwarded meanwhile."""
    topics, backlog, total = rekeyed, 600, 1000

    async def late(*args: Any) -> dict[TopicPartition, int]:
        found = await high_watermarks(*args)
        await asyncio.sleep(0.05)
        return found

    monkeypatch.setattr(runtime_module, "high_watermarks", late)
    await produce(topics, SHARES, shares(0, backlog))
    settings = settings_for(topics, tmp_path, max_batch=10)
    async with running(ReKeying(), topics, settings) as runtime:
        await read_topic(topics, NOTIFICATIONS_SENT, expect=backlog, within=90, quiet=5.0)
        commit = runtime._commit
        commits = {"n": 0}

        async def commit_and_reset(*args: Any, **kwargs: Any) -> bool:
            """Every third transaction resets the floors after it commits."""
            done = await commit(*args, **kwargs)
            commits["n"] += 1
            if commits["n"] % 3 == 0 and runtime._loopback is not None:
                runtime._loopback.reset()
            return done

        runtime._commit = commit_and_reset  # type: ignore[method-assign]
        await publish(topics, backlog, total)
        await check_outputs(topics, total)
        over = handed(runtime)
    written = await read_topic(topics, REKEYED, within=10, quiet=1.0)
    assert over > 0 and written, f"{over:.0f} handed over, {len(written)} forwarded"
    assert len(written) + over == total, "each share either written or handed over, not both"


async def test_what_a_previous_owner_forwarded_is_handled_before_anything_is_handed_over(
    rekeyed: KafkaSettings, tmp_path: Path
) -> None:
    """Shares forwarded to the re-key topic by an instance gone before it handled them (here:
    written there directly) come before the later shares of the same advocate and code that
    this instance could hand over."""
    topics, forwarded, total = rekeyed, 150, 600
    await produce(
        topics,
        REKEYED,
        [(CODEC.decode(v).referral_code.encode(), v) for _, v in shares(0, forwarded)],
    )
    await produce(topics, SHARES, shares(forwarded, total))
    settings = settings_for(topics, tmp_path, max_batch=20)
    async with running(ReKeying(), topics, settings) as runtime:
        await read_topic(topics, NOTIFICATIONS_SENT, expect=total, within=90, quiet=5.0)
        await publish(topics, total, total + 200)
        await check_outputs(topics, total + 200)
        assert handed(runtime) > 0


async def test_a_refused_transaction_that_handed_records_over_is_redone_once(
    rekeyed: KafkaSettings, tmp_path: Path
) -> None:
    """The group refuses a transaction (a zombie's generation) after records were handed over:
    the target tasks' state is undone with it, and the records are redone once."""
    topics = rekeyed
    async with running(ReKeying(), topics, settings_for(topics, tmp_path)) as runtime:
        await publish(topics, 0, 200)
        await until(lambda: handed(runtime) > 0)
        real = runtime._membership
        stale = {"left": 1, "handed": handed(runtime)}

        def membership() -> GroupMetadata | None:
            found = real()
            if found is not None and stale["left"] and handed(runtime) > stale["handed"]:
                stale["left"] -= 1
                return dataclasses.replace(found, generation=found.generation - 1)
            return found

        runtime._membership = membership  # type: ignore[method-assign]
        await publish(topics, 200, 600)
        await until(lambda: not stale["left"])
        assert runtime.metrics.transactions.labels("fenced")._value.get() >= 1
        await check_outputs(topics, 600)


async def test_tasks_moving_between_two_instances_keep_each_share_once_and_in_order(
    rekeyed: KafkaSettings, tmp_path: Path
) -> None:
    """A second instance takes half the tasks and leaves again: each instance hands over only
    to tasks it owns, and a task taken over waits for what its sources' previous owner
    forwarded before handing anything over."""
    topics = rekeyed
    total = 600
    async with running(ReKeying(), topics, settings_for(topics, tmp_path / "a")) as a:
        await publish(topics, 0, 200)
        assert a._loopback is not None
        tasks = a._loopback.partitions
        async with running(ReKeying(), topics, settings_for(topics, tmp_path / "b")) as b:
            await until(lambda: bool(b._tasks) and len(a._tasks) + len(b._tasks) == tasks)
            await publish(topics, 200, 400)
            await until(lambda: handed(b) > 0)
        await until(lambda: len(a._tasks) == tasks)
        await publish(topics, 400, total)
        await check_outputs(topics, total)
        assert handed(a) > 0


class Gated(ReKeying):
    """Holds every share in its task while the gate is shut, and the shares after them while
    any is held (in order, as attribution holds events until their program arrives); only the
    task's timers release them, once the gate is open."""

    name = "gated"

    def __init__(self) -> None:
        self.open = False

    def process(self, record: Inbound, now: datetime) -> Iterable[Output]:
        if record.topic != SHARES:
            return super().process(record, now)
        store = self.store(record.partition, "counts")
        if not self.open or next(store.scan(b"held/"), None) is not None:
            store.put(b"held/%012d" % int(record.value.event_id), CODEC.encode(record.value))
            return []
        return super().process(record, now)

    def punctuate(self, task: int, now: datetime) -> Iterable[Output]:
        if not self.open:
            return []
        store = self.store(task, "counts")
        out: list[Output] = []
        for key, value in list(store.scan(b"held/")):
            store.delete(key)
            share = CODEC.decode(value)
            out.append(Outbound(REKEYED, share.referral_code, share))
        return out


async def test_records_released_by_a_task_s_timers_keep_their_place_before_later_ones(
    rekeyed: KafkaSettings, tmp_path: Path
) -> None:
    """Shares held in their task are released by its timers while later shares keep coming:
    the later ones, handed over, must not overtake the released ones (from the same task,
    whatever partition they came from)."""
    topics, total = rekeyed, 600
    gated = Gated()
    async with running(gated, topics, settings_for(topics, tmp_path)) as runtime:
        stream = asyncio.create_task(publish(topics, 0, total, batch=10))
        await asyncio.sleep(1.0)
        gated.open = True
        await stream
        await check_outputs(topics, total)
        assert handed(runtime) > 0


class Forwarding(ReKeying):
    """ReKeying that forwards each share as consumed (`Outbound.raw`), and notes, for each
    share handed over, whether its task got the very record the re-key stage forwarded."""

    def __init__(self) -> None:
        super().__init__()
        self.forwarded: dict[str, ShareEvent] = {}
        self.handed_same: list[bool] = []

    def process(self, record: Inbound, now: datetime) -> Iterable[Output]:
        share = record.value
        if record.topic == SHARES:
            self.forwarded[share.event_id] = share
            return [Outbound(REKEYED, share.referral_code, share, raw=record.raw_value)]
        if record.offset == HANDED_OVER_OFFSET:
            self.handed_same.append(share is self.forwarded[share.event_id])
        return super().process(record, now)


async def test_a_record_forwarded_as_consumed_is_neither_encoded_nor_decoded_again(
    rekeyed: KafkaSettings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A re-key stage that forwards its input unchanged passes the bytes it consumed: what
    the re-key topic holds is those bytes (no share is encoded by the runtime), and a share
    handed over in the same cycle reaches its task as the record forwarded, not decoded again.
    Every share still counted once and in order. Both paths are taken: a backlog waits when the
    instance starts, forwarded until the partitions' ends are read (late, as in the first
    test); the shares that follow, a little apart, find the partitions drained."""
    topics, backlog, total = rekeyed, 200, 400
    batches = [shares(first, min(first + 20, total)) for first in range(backlog, total, 20)]
    waiting = shares(0, backlog)
    published = {CODEC.decode(v).event_id: v for _, v in waiting}
    published |= {CODEC.decode(v).event_id: v for batch in batches for _, v in batch}
    encoded: list[str] = []
    encode = CODEC.encode

    def counting(record: Any, version: int | None = None) -> bytes:
        encoded.append(type(record).__name__)
        return encode(record, version)

    async def late(*args: Any) -> dict[TopicPartition, int]:
        found = await high_watermarks(*args)
        await asyncio.sleep(0.05)
        return found

    monkeypatch.setattr(runtime_module, "high_watermarks", late)
    await produce(topics, SHARES, waiting)
    monkeypatch.setattr(CODEC, "encode", counting)
    forwarding = Forwarding()
    settings = settings_for(topics, tmp_path, max_batch=10)
    async with running(forwarding, topics, settings) as runtime:
        for batch in batches:
            await produce(topics, SHARES, batch)
            await asyncio.sleep(0.1)
        await check_outputs(topics, total)
        over = handed(runtime)
    written = await read_topic(topics, REKEYED, within=10, quiet=1.0)
    assert over > 0 and written, f"{over:.0f} handed over, {len(written)} forwarded"
    assert len(written) + over == total
    assert "ShareEvent" not in encoded, "a forwarded share was encoded again"
    for m in written:
        assert m.value == published[CODEC.decode(m.value).event_id]
    assert len(forwarding.handed_same) == over and all(forwarding.handed_same)
