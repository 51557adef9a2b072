"""The advocate portal as one of the API server's components (`server.Component`).

The server registers every servicer before it starts serving, while the portal's read model
opens only when the component starts (its store, then following the topics). So the servicer
registered is a door (`_Door`) to the portal's own: until the portal has started it answers
UNAVAILABLE, then it hands every call through. Readiness follows the read model: ready once it
has caught up with the ends it saw at start, not ready while it is behind or failing; health is
SERVING only then.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
from prometheus_client import CollectorRegistry

from referrals.platform.settings import KafkaSettings
from services.api.portal import Portal
from services.api.portal.servicer import AdvocatesServicer
from services.api.proto import referrals_pb2 as pb
from services.api.proto import referrals_pb2_grpc as pb_grpc
from services.api.server import Ready

READY_POLL_S = 0.2


class PortalComponent:
    name = "portal"

    def __init__(self, kafka: KafkaSettings, state_dir: Path, registry: CollectorRegistry) -> None:
        self.portal = Portal(kafka, state_dir, registry)
        self._started = False
        self._watch: asyncio.Task[None] | None = None

    def register(self, server: grpc.aio.Server) -> None:
        pb_grpc.add_AdvocatesServicer_to_server(_Door(self), server)  # type: ignore[no-untyped-call]

    async def start(self, ready: Ready) -> None:
        await self.portal.start()
        self._started = True
        self._watch = asyncio.create_task(self._report(ready), name="portal-readiness")

    async def _report(self, ready: Ready) -> None:
        while True:
            ready(self.portal.ready())
            await asyncio.sleep(READY_POLL_S)

    async def stop(self) -> None:
        if self._watch is not None:
            self._watch.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watch
            self._watch = None
        self._started = False
        await self.portal.stop()

    def inner(self) -> AdvocatesServicer | None:
        if not self._started:
            return None
        servicer = self.portal.servicer()
        assert isinstance(servicer, AdvocatesServicer)
        return servicer


class _Door(pb_grpc.AdvocatesServicer):
    """The Advocates servicer of a portal that may not have started yet."""

    def __init__(self, component: PortalComponent) -> None:
        self.component = component

    async def _open(self, context: grpc.aio.ServicerContext) -> AdvocatesServicer:
        inner = self.component.inner()
        if inner is None:
            await context.abort(grpc.StatusCode.UNAVAILABLE, "the portal is starting; retry")
        assert inner is not None
        return inner

    async def GetAdvocate(
        self, request: pb.GetAdvocateRequest, context: grpc.aio.ServicerContext
    ) -> pb.Advocate:
        return await (await self._open(context)).GetAdvocate(request, context)

    async def ListReferrals(
        self, request: pb.ListReferralsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListReferralsResponse:
        return await (await self._open(context)).ListReferrals(request, context)

    async def WatchReferrals(
        self, request: pb.WatchReferralsRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[pb.Referral]:
        inner = await self._open(context)
        async for referral in inner.WatchReferrals(request, context):
            yield referral

    async def EraseAdvocate(
        self, request: pb.EraseAdvocateRequest, context: grpc.aio.ServicerContext
    ) -> pb.EraseAdvocateResponse:
        return await (await self._open(context)).EraseAdvocate(request, context)
