"""The API's own component: Ingest, Programs and Payouts, and the one Kafka producer Ingest
writes with. Ready once that producer has started (it has reached the brokers)."""

from __future__ import annotations

import grpc

from referrals.contract.avro import AvroCodec
from referrals.platform.settings import AmountLimits, KafkaSettings
from services.api.ingest import IngestService, Publisher
from services.api.payouts import PayoutsService
from services.api.programs import ProgramsService
from services.api.proto import referrals_pb2_grpc as rpc
from services.api.server import Ready
from services.api.settings import ApiSettings


class Core:
    name = "core"

    def __init__(self, settings: ApiSettings, kafka: KafkaSettings, limits: AmountLimits) -> None:
        codec = AvroCodec()
        self.publisher = Publisher(kafka)
        self.ingest = IngestService(
            self.publisher, limits=limits, max_records=settings.max_records, codec=codec
        )
        self.programs = ProgramsService(kafka, codec)
        self.payouts = PayoutsService(
            kafka,
            command_timeout_s=settings.command_timeout_s,
            max_response_bytes=settings.max_response_bytes,
        )

    def register(self, server: grpc.aio.Server) -> None:
        rpc.add_IngestServicer_to_server(self.ingest, server)  # type: ignore[no-untyped-call]
        rpc.add_ProgramsServicer_to_server(self.programs, server)  # type: ignore[no-untyped-call]
        rpc.add_PayoutsServicer_to_server(self.payouts, server)  # type: ignore[no-untyped-call]

    async def start(self, ready: Ready) -> None:
        await self.publisher.start()
        ready(True)

    async def stop(self) -> None:
        await self.publisher.stop()
