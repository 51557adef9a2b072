"""The `Advocates` gRPC service: the portal's answers from the read model, and EraseAdvocate.

Authentication and roles are the server's interceptor's; this class only answers. Until the
read model has caught up with the topics every read is UNAVAILABLE (an unknown id could be one
not read yet), so whichever instance answers, the answer is the same.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime

import grpc

from referrals.contract.personal import BadAdvocateId, erase
from referrals.platform.settings import KafkaSettings
from services.api.portal.convert import advocate_message, referral_message
from services.api.portal.metrics import PortalMetrics
from services.api.portal.readmodel import BadPageToken, ReadModel
from services.api.portal.watch import Hub, Overflow
from services.api.proto import referrals_pb2 as pb
from services.api.proto import referrals_pb2_grpc as pb_grpc


class AdvocatesServicer(pb_grpc.AdvocatesServicer):
    def __init__(
        self,
        model: ReadModel,
        hub: Hub,
        kafka: KafkaSettings,
        metrics: PortalMetrics,
        ready: Callable[[], bool],
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.model = model
        self.hub = hub
        self.kafka = kafka
        self.metrics = metrics
        self.ready = ready
        self.clock = clock

    async def _known(self, advocate_id: str, context: grpc.aio.ServicerContext) -> None:
        if not self.ready():
            await context.abort(grpc.StatusCode.UNAVAILABLE, "the portal is catching up; retry")
        if not self.model.known(advocate_id):
            await context.abort(grpc.StatusCode.NOT_FOUND, f"no advocate {advocate_id!r}")

    async def GetAdvocate(
        self, request: pb.GetAdvocateRequest, context: grpc.aio.ServicerContext
    ) -> pb.Advocate:
        await self._known(request.advocate_id, context)
        summary = self.model.summary(request.advocate_id, self.clock())
        if summary is None:  # pragma: no cover - known() said otherwise a moment ago
            await context.abort(grpc.StatusCode.NOT_FOUND, f"no advocate {request.advocate_id!r}")
        assert summary is not None
        return advocate_message(summary)

    async def ListReferrals(
        self, request: pb.ListReferralsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListReferralsResponse:
        await self._known(request.advocate_id, context)
        if request.page_size < 0:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "page_size must not be negative")
        try:
            views, token = self.model.page(
                request.advocate_id, request.page_size, request.page_token
            )
        except BadPageToken as err:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(err))
            raise  # pragma: no cover - abort raises
        return pb.ListReferralsResponse(
            referrals=[referral_message(r) for r in views], next_page_token=token
        )

    async def WatchReferrals(
        self, request: pb.WatchReferralsRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[pb.Referral]:
        await self._known(request.advocate_id, context)
        # Subscribe and read the current state with no await between: no change can fall
        # between the two, and none is seen twice.
        sub = self.hub.subscribe(request.advocate_id)
        current = self.model.current(request.advocate_id)
        self.metrics.watchers.inc()
        try:
            for view in current:
                yield referral_message(view)
            while True:
                try:
                    change = await sub.next()
                except Overflow:
                    await context.abort(
                        grpc.StatusCode.RESOURCE_EXHAUSTED, "fell too far behind; watch again"
                    )
                if change is None:  # the portal is stopping
                    return
                yield referral_message(change)
        finally:
            sub.close()
            self.metrics.watchers.dec()

    async def EraseAdvocate(
        self, request: pb.EraseAdvocateRequest, context: grpc.aio.ServicerContext
    ) -> pb.EraseAdvocateResponse:
        """Publishes the advocate's tombstone as `referrals erase` does (the same function)."""
        try:
            done = await erase(self.kafka, request.advocate_id)
        except BadAdvocateId as err:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(err))
            raise  # pragma: no cover - abort raises
        return pb.EraseAdvocateResponse(
            advocate_id=done.advocate_id, already_erased=not done.published
        )
