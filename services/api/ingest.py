"""`Ingest`: records in for systems that cannot speak Kafka, under `referrals publish`'s rules.

A request is checked whole by the function `referrals publish` uses (`check_records`): any bad
record and the call is INVALID_ARGUMENT with a BadRequest naming each (`deals[2].occurred_at`),
and nothing is published. A good request goes out in one Kafka transaction and is answered
after it commits, so `accepted` means committed. The same event_id sent twice is the services'
to ignore, as for any producer.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from datetime import UTC, datetime

import grpc
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError
from google.protobuf.message import Message

from referrals.contract.avro import AvroCodec
from referrals.contract.publish import Prepared, PublishRefused, check_records, send_transaction
from referrals.contract.topics import (
    ADVOCATES,
    CONVERSIONS,
    DEALS,
    PAYOUT_RESULTS,
    SHARES,
    TopicNames,
)
from referrals.platform.settings import AmountLimits, KafkaSettings
from referrals.streams.kafka import make_producer, transactional_id
from services.api.convert import to_json_object
from services.api.errors import abort, bad_request
from services.api.proto import referrals_pb2 as pb
from services.api.proto import referrals_pb2_grpc as rpc

log = logging.getLogger(__name__)


class Publisher:
    """One transactional producer for the API's writes, one transaction at a time (a Kafka
    producer has at most one open transaction). A producer left in doubt by a failure or a
    cancelled call is replaced before the next transaction."""

    def __init__(self, kafka: KafkaSettings, client_id: str = "referrals-api") -> None:
        self.kafka = kafka
        self.names = TopicNames(kafka.topic_prefix)
        self.client_id = client_id
        self._producer: AIOKafkaProducer | None = None
        self._lock = asyncio.Lock()

    async def start(self) -> None:
        async with self._lock:
            await self._ensure()

    async def _ensure(self) -> AIOKafkaProducer:
        if self._producer is None:
            producer = make_producer(
                self.kafka,
                client_id=self.client_id,
                transactional_id=transactional_id(self.kafka, self.client_id),
            )
            try:
                await producer.start()
            except BaseException:
                await asyncio.shield(producer.stop())
                raise
            self._producer = producer
        return self._producer

    async def publish(self, topic: str, records: list[Prepared]) -> int:
        async with self._lock:
            producer = await self._ensure()
            try:
                return await send_transaction(producer, self.names(topic), records)
            except PublishRefused:
                raise  # aborted cleanly: the producer is fine
            except BaseException:
                self._producer = None
                await asyncio.shield(producer.stop())
                raise

    async def stop(self) -> None:
        async with self._lock:
            if self._producer is not None:
                await self._producer.stop()
                self._producer = None


class IngestService(rpc.IngestServicer):
    def __init__(
        self,
        publisher: Publisher,
        *,
        limits: AmountLimits,
        max_records: int,
        codec: AvroCodec | None = None,
    ) -> None:
        self.publisher = publisher
        self.limits = limits
        self.max_records = max_records
        self.codec = codec or AvroCodec()

    async def PublishAdvocates(
        self, request: pb.PublishAdvocatesRequest, context: grpc.aio.ServicerContext
    ) -> pb.PublishResponse:
        return await self._publish(ADVOCATES, "advocates", request.advocates, context)

    async def PublishShares(
        self, request: pb.PublishSharesRequest, context: grpc.aio.ServicerContext
    ) -> pb.PublishResponse:
        return await self._publish(SHARES, "shares", request.shares, context)

    async def PublishConversions(
        self, request: pb.PublishConversionsRequest, context: grpc.aio.ServicerContext
    ) -> pb.PublishResponse:
        return await self._publish(CONVERSIONS, "conversions", request.conversions, context)

    async def PublishDeals(
        self, request: pb.PublishDealsRequest, context: grpc.aio.ServicerContext
    ) -> pb.PublishResponse:
        return await self._publish(DEALS, "deals", request.deals, context)

    async def PublishPayoutResults(
        self, request: pb.PublishPayoutResultsRequest, context: grpc.aio.ServicerContext
    ) -> pb.PublishResponse:
        return await self._publish(PAYOUT_RESULTS, "results", request.results, context)

    async def _publish(
        self,
        topic: str,
        name: str,
        messages: Sequence[Message],
        context: grpc.aio.ServicerContext,
    ) -> pb.PublishResponse:
        if len(messages) > self.max_records:
            await bad_request(
                context,
                f"too many records: at most {self.max_records} per request "
                "(API_MAX_RECORDS); nothing was published",
                [(name, f"has {len(messages)} records; the limit is {self.max_records}")],
            )
        objects = [(index, to_json_object(m)) for index, m in enumerate(messages)]
        prepared, problems = check_records(
            topic, objects, self.codec, now=datetime.now(UTC), limits=self.limits
        )
        if problems:
            await bad_request(
                context,
                f"{len(problems)} bad record(s); nothing was published",
                [
                    (f"{name}[{p.position}]" + (f".{p.field}" if p.field else ""), p.message)
                    for p in problems
                ],
            )
        if not prepared:
            return pb.PublishResponse(accepted=0)
        try:
            accepted = await self.publisher.publish(topic, prepared)
        except PublishRefused as refused:
            await bad_request(
                context,
                "the broker refused records; nothing was published",
                [(f"{name}[{index - 1}]", _describe(err)) for index, err in refused.refused],
            )
        except KafkaError as err:
            log.warning("publishing to %s failed: %r", topic, err)
            await abort(
                context,
                grpc.StatusCode.UNAVAILABLE,
                f"Kafka did not take the records ({type(err).__name__}); nothing was "
                "published; retry",
            )
        return pb.PublishResponse(accepted=accepted)


def _describe(err: BaseException) -> str:
    return f"{type(err).__name__}: {err}" if str(err) else type(err).__name__
