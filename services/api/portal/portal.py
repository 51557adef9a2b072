"""The portal as the API server owns it: the read model, its follower, the watchers, the servicer.

portal = Portal(kafka, state_dir, registry)
await portal.start()       # opens the store, resumes following from its offsets
portal.ready()             # caught up with the ends captured at start (health: SERVING)
portal.lag()               # records behind, for metrics
add_AdvocatesServicer_to_server(portal.servicer(), server)
await portal.stop()        # ends open WatchReferrals streams, closes consumer and store
"""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

from prometheus_client import CollectorRegistry

from referrals.platform.settings import KafkaSettings
from services.api.portal.follower import Follower
from services.api.portal.metrics import PortalMetrics
from services.api.portal.readmodel import ReadModel
from services.api.portal.servicer import AdvocatesServicer
from services.api.portal.store import Store
from services.api.portal.watch import Hub
from services.api.proto import referrals_pb2_grpc


class Portal:
    def __init__(self, kafka: KafkaSettings, state_dir: Path, registry: CollectorRegistry) -> None:
        self.kafka = kafka
        self.state_dir = state_dir
        self.metrics = PortalMetrics(registry)
        self.hub = Hub()
        self._store: Store | None = None
        self._model: ReadModel | None = None
        self._follower: Follower | None = None
        self._task: asyncio.Task[None] | None = None
        self._servicer: AdvocatesServicer | None = None

    async def start(self) -> None:
        """Opens the store under `state_dir/portal` and starts following (does not wait to be
        caught up: see `ready`)."""
        self._store = Store(self.state_dir / "portal")
        self._model = ReadModel(self._store)
        self._follower = Follower(self.kafka, self._model, self.hub, self.metrics)
        try:
            await self._follower.start()
        except BaseException:
            await self.stop()
            raise
        self._task = asyncio.create_task(self._follower.run(), name="portal-follower")

    async def stop(self) -> None:
        self.hub.close()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._follower is not None:
            await self._follower.close()
            self._follower = None
        if self._store is not None:
            self._store.close()
            self._store = None

    def ready(self) -> bool:
        return self._follower is not None and self._follower.ready()

    def lag(self) -> int:
        return 0 if self._follower is None else self._follower.lag()

    def servicer(self) -> referrals_pb2_grpc.AdvocatesServicer:
        """The Advocates servicer (one per portal; call after `start`)."""
        if self._servicer is None:
            assert self._model is not None, "start the portal first"
            self._servicer = AdvocatesServicer(
                self._model, self.hub, self.kafka, self.metrics, self.ready
            )
        return self._servicer
