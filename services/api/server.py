"""The API's gRPC server and what runs beside it: health, reflection, metrics, readiness.

A `Component` is one part of the API with its own servicers and Kafka clients: `core.Core`
(Ingest, Programs, Payouts) and, once wired, the portal (Advocates). `ApiServer` registers every
component's servicers on one `grpc.aio` server behind the `Gate` interceptor (tokens, roles,
deadlines, metrics), with server reflection and `grpc.health.v1` always on and open. Each
component is started in the background and reports its readiness with the callback it is
given; health is SERVING (and /readyz 200) once every component has reported ready, and
NOT_SERVING again while any reports it is not.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Sequence
from typing import Protocol

import grpc
from aiohttp import web
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from referrals.platform.errors import ConfigError
from referrals.platform.metrics import Health, serve
from referrals.streams.backoff import Backoff
from services.api.auth import Tokens
from services.api.interceptor import ApiMetrics, Gate
from services.api.proto import referrals_pb2 as pb
from services.api.settings import ApiSettings

log = logging.getLogger(__name__)
# Every service of the contract, registered or not (reflection describes them all).
CONTRACT_SERVICES = tuple(s.full_name for s in pb.DESCRIPTOR.services_by_name.values())
Ready = Callable[[bool], None]
STARTING_GRACE_S = 5.0


class Component(Protocol):
    """A part of the API: registers its servicers, then starts its clients and says when it
    can answer (`ready(True)`; `ready(False)` when it no longer can)."""

    name: str

    def register(self, server: grpc.aio.Server) -> None: ...

    async def start(self, ready: Ready) -> None: ...

    async def stop(self) -> None: ...


class Readiness:
    """Ready when every component says so; each change is pushed to the health service."""

    def __init__(self, names: Sequence[str]) -> None:
        self.state = dict.fromkeys(names, False)
        self.changed = asyncio.Event()

    def reporter(self, name: str) -> Ready:
        def report(ready: bool) -> None:
            if self.state.get(name) != ready:
                self.state[name] = ready
                log.info("%s %s", name, "ready" if ready else "not ready")
                self.changed.set()

        return report

    def ready(self) -> bool:
        return all(self.state.values())


def tls_credentials(settings: ApiSettings) -> grpc.ServerCredentials | None:
    """Server credentials from API_TLS_CERT and API_TLS_KEY (both or neither)."""
    if settings.tls_cert is None and settings.tls_key is None:
        return None
    if settings.tls_cert is None or settings.tls_key is None:
        raise ConfigError("API_TLS_CERT and API_TLS_KEY go together: set both or neither")
    try:
        chain = settings.tls_cert.read_bytes()
        key = settings.tls_key.read_bytes()
    except OSError as err:
        raise ConfigError(f"cannot read the TLS certificate or key: {err}") from err
    return grpc.ssl_server_credentials([(key, chain)])


class ApiServer:
    def __init__(
        self,
        settings: ApiSettings,
        tokens: Tokens,
        components: Sequence[Component],
        metrics: ApiMetrics | None = None,
    ) -> None:
        self.settings = settings
        self.components = list(components)
        self.metrics = metrics or ApiMetrics()
        self.readiness = Readiness([c.name for c in self.components])
        self.health = Health(ready=False)
        self.grpc_health = health.aio.HealthServicer()
        limit = settings.max_request_bytes
        self.server = grpc.aio.server(
            interceptors=[Gate(tokens, self.metrics)],
            options=[
                ("grpc.max_receive_message_length", limit),
                ("grpc.max_send_message_length", settings.max_response_bytes),
            ],
        )
        self.port = 0
        self.metrics_port = 0
        self._runner: web.AppRunner | None = None
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        """Binds and serves; components start in the background (health NOT_SERVING until
        every one is ready)."""
        for component in self.components:
            component.register(self.server)
        health_pb2_grpc.add_HealthServicer_to_server(self.grpc_health, self.server)
        names = (*CONTRACT_SERVICES, health.SERVICE_NAME, reflection.SERVICE_NAME)
        reflection.enable_server_reflection(names, self.server)
        await self._set_health(False)
        address = f"{self.settings.grpc_host}:{self.settings.grpc_port}"
        credentials = tls_credentials(self.settings)
        if credentials is None:
            self.port = self.server.add_insecure_port(address)
        else:
            self.port = self.server.add_secure_port(address, credentials)
        await self.server.start()
        self._runner, self.metrics_port = await serve(
            self.metrics.registry,
            self.health,
            self.settings.metrics_host,
            self.settings.metrics_port,
        )
        log.info(
            "API serving",
            extra={"port": self.port, "metrics_port": self.metrics_port, "tls": bool(credentials)},
        )
        self._tasks.append(asyncio.create_task(self._follow_readiness()))
        for component in self.components:
            ready = self.readiness.reporter(component.name)
            self._tasks.append(asyncio.create_task(self._start(component, ready)))

    async def _start(self, component: Component, ready: Ready) -> None:
        """Starts a component, retrying with backoff while it cannot (the broker down)."""
        backoff = Backoff()
        while True:
            try:
                await component.start(ready)
            except Exception as err:
                self.health.problem(component.name, f"cannot start: {err!r}")
                await asyncio.sleep(backoff.next())
                continue
            self.health.resolved(component.name)
            return

    async def _follow_readiness(self) -> None:
        while True:
            ready = self.readiness.ready()
            self.health.ready = ready
            if ready:
                for component in self.components:
                    self.health.resolved(component.name)
            await self._set_health(ready)
            self.readiness.changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.readiness.changed.wait(), 5.0)
            self.health.tick()

    async def _set_health(self, ready: bool) -> None:
        status = (
            health_pb2.HealthCheckResponse.SERVING
            if ready
            else health_pb2.HealthCheckResponse.NOT_SERVING
        )
        for name in ("", *CONTRACT_SERVICES):
            await self.grpc_health.set(name, status)

    async def stop(self, grace: float | None = None) -> None:
        """Health NOT_SERVING, then in-flight calls get `grace` seconds, then the components
        and the metrics endpoint stop."""
        await self.grpc_health.enter_graceful_shutdown()
        await self.server.stop(self.settings.shutdown_grace_s if grace is None else grace)
        # A component still starting is given a moment to finish, so that its clients are
        # stopped whole rather than cancelled half-connected; one that cannot start is cancelled.
        starting = [t for t in self._tasks[1:] if not t.done()]
        if starting:
            await asyncio.wait(starting, timeout=STARTING_GRACE_S)
        for task in self._tasks:
            task.cancel()
        # A Kafka client cancelled in the middle of its start can take long to let go: bounded.
        _, stuck = await asyncio.wait(self._tasks, timeout=STARTING_GRACE_S)
        if stuck:
            log.warning("%d start-up task(s) did not stop in time", len(stuck))
        for component in self.components:
            await component.stop()
        if self._runner is not None:
            await self._runner.cleanup()
