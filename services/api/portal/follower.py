"""Following the portal's topics into the read model: every partition, no consumer group.

Each instance reads all partitions of the advocates, programs, status, payouts (v2) and payout
results topics, read_committed, from the offsets its store holds (the beginning the first
time), so any instance answers alike and a restart reads only what is new. Readiness: every
partition has reached the end offset captured at start. Lag: records between each partition's
position and its last stable offset. A record that does not decode or holds an impossible value
is skipped and counted (the services dead-letter it; the portal shows what they act on), and so
is one the read model fails to apply (logged: a bug must not stall every answer). Each status
applied once the portal has caught up is timed from its occurred_at to its batch's commit
(`referrals_portal_status_latency_seconds`: how long an advocate waits to see a change).
Broker trouble is retried with backoff: the batch being applied is dropped and fetched again
from the store's offsets, so nothing is applied twice.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition

from referrals.contract.avro import AvroCodec
from referrals.contract.records import AdvocateProfile, PayoutResult, ReferralStatusChanged
from referrals.contract.topics import TopicNames
from referrals.contract.validation import check_values
from referrals.platform.errors import PermanentError
from referrals.platform.settings import KafkaSettings
from referrals.streams.backoff import Backoff
from referrals.streams.kafka import make_consumer, partitions_of, stop_quietly
from services.api.portal.metrics import PortalMetrics
from services.api.portal.readmodel import FOLLOWED, ReadModel
from services.api.portal.view import ReferralView
from services.api.portal.watch import Hub

log = logging.getLogger(__name__)
_CHECKED = (AdvocateProfile, PayoutResult)  # input records the services check before use
FETCH_MIN_BYTES = 64 * 1024
FETCH_MAX_WAIT_MS = 100


class Follower:
    def __init__(
        self,
        kafka: KafkaSettings,
        model: ReadModel,
        hub: Hub,
        metrics: PortalMetrics,
        client_id: str = "referrals-api-portal",
        clock: Callable[[], float] = time.time,  # epoch seconds, for the status latency
    ) -> None:
        self.kafka = kafka
        self.clock = clock
        self.model = model
        self.hub = hub
        self.metrics = metrics
        self.client_id = client_id
        self.names = TopicNames(kafka.topic_prefix)
        self.codec = AvroCodec()
        self._consumer: AIOKafkaConsumer | None = None
        self._parts: list[TopicPartition] = []
        self._target: dict[TopicPartition, int] = {}  # the end offsets captured at start
        self._position: dict[TopicPartition, int] = {}
        self._caught_up = False
        self._failing = False

    async def start(self) -> None:
        """Assigns every partition and seeks to the stored offsets; captures the ends."""
        # Fetches wait for some bytes (or 100 ms) rather than returning each record alone: under
        # load that was over 200 fetches a second of every followed partition (the client has
        # no incremental fetch sessions), a third of this process's CPU in socket writes and
        # the broker's too. The portal stays within a tenth of a second of the topics.
        self._consumer = consumer = make_consumer(
            self.kafka,
            client_id=self.client_id,
            fetch_min_bytes=FETCH_MIN_BYTES,
            fetch_max_wait_ms=FETCH_MAX_WAIT_MS,
        )
        await consumer.start()
        for topic in FOLLOWED:
            self._parts += await partitions_of(consumer, self.names(topic))
        consumer.assign(self._parts)
        for tp in self._parts:
            stored = self.model.store.offset(self.names.logical(tp.topic), tp.partition)
            if stored is None:
                await consumer.seek_to_beginning(tp)
            else:
                consumer.seek(tp, stored)
        self._target = await consumer.end_offsets(self._parts)
        await self._positions()

    async def run(self) -> None:
        """Applies new records until cancelled; failures are retried, never fatal."""
        consumer = self._consumer
        assert consumer is not None, "start first"
        backoff = Backoff(0.5, 30.0)
        while True:
            try:
                batch = await consumer.getmany(timeout_ms=200, max_records=2000)
                self._apply(batch)
                await self._positions()
            except asyncio.CancelledError:
                raise
            except Exception:  # supervised: reported, retried from the stored offsets
                if not self._failing:
                    log.exception("following the portal's topics failed; retrying")
                self._failing = True
                await asyncio.sleep(backoff.next())
                await self._rewind()
                continue
            if self._failing:
                log.info("following the portal's topics again")
            self._failing = False
            backoff.reset()

    async def close(self) -> None:
        if self._consumer is not None:
            await stop_quietly(self._consumer)
            self._consumer = None

    def ready(self) -> bool:
        return self._caught_up and not self._failing

    def lag(self) -> int:
        consumer = self._consumer
        behind = 0
        for tp in self._parts:
            end = consumer.last_stable_offset(tp) if consumer is not None else None
            end = max(end if end is not None else 0, self._target.get(tp, 0))
            behind += max(0, end - self._position.get(tp, 0))
        return behind

    def _apply(self, batch: dict[TopicPartition, list[Any]]) -> None:
        txn = self.model.store.batch()
        changed: list[ReferralView] = []
        offsets: dict[tuple[str, int], int] = {}
        occurred: list[float] = []  # the statuses' event times (epoch seconds)
        for tp, messages in batch.items():
            topic = self.names.logical(tp.topic)
            for msg in messages:
                change = self._one(txn, topic, msg, occurred)
                if change is not None:
                    changed.append(change)
                offsets[(topic, tp.partition)] = msg.offset + 1
            self.metrics.applied.labels(topic).inc(len(messages))
        txn.commit(offsets)
        if self._caught_up and occurred:  # history read at start-up is not a wait
            now = self.clock()
            for at in occurred:
                self.metrics.status_latency.observe(max(0.0, now - at))
        self.hub.publish(changed)

    def _one(self, txn: Any, topic: str, msg: Any, occurred: list[float]) -> ReferralView | None:
        key = msg.key.decode("utf-8", "replace") if msg.key is not None else None
        at = datetime.fromtimestamp(msg.timestamp / 1000, UTC)
        if msg.value is None:
            return self.model.apply(txn, topic, key, None, at)
        try:
            record = self.codec.decode(msg.value)
            if isinstance(record, _CHECKED):
                check_values(record, datetime.now(UTC))
        except PermanentError:
            self.metrics.skipped.labels(topic).inc()
            return None
        try:
            change = self.model.apply(txn, topic, key, record, at)
        except Exception:  # a bug must not stall the portal on one record: logged, skipped
            log.exception("portal could not apply a record", extra={"topic": topic})
            self.metrics.skipped.labels(topic).inc()
            return None
        if isinstance(record, ReferralStatusChanged):
            occurred.append(record.occurred_at.timestamp())
        return change

    async def _positions(self) -> None:
        consumer = self._consumer
        assert consumer is not None
        for tp in self._parts:
            self._position[tp] = await consumer.position(tp)
        if not self._caught_up:
            self._caught_up = all(self._position[tp] >= self._target[tp] for tp in self._parts)
        self.metrics.lag.set(self.lag())

    async def _rewind(self) -> None:
        consumer = self._consumer
        assert consumer is not None
        for tp in self._parts:
            stored = self.model.store.offset(self.names.logical(tp.topic), tp.partition)
            if stored is None:
                await consumer.seek_to_beginning(tp)
            else:
                consumer.seek(tp, stored)
