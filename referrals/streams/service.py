"""Wiring for one service process (the hexkit `inject` idea): settings -> clients -> runtime.

`run_service` configures logging, serves /metrics and health, runs the stream runtime until
SIGTERM or SIGINT, then shuts everything down cleanly and returns the exit status.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Callable
from datetime import datetime, timedelta

from referrals.platform.errors import ConfigError
from referrals.platform.logs import configure
from referrals.platform.metrics import Health, RuntimeMetrics, serve
from referrals.platform.pauses import PauseMetrics, watching
from referrals.platform.settings import KafkaSettings, ServiceSettings
from referrals.streams.processor import Processor
from referrals.streams.runtime import FatalRuntimeError, StreamRuntime, utc_now
from referrals.streams.serde import Codec
from referrals.streams.topics import Catalogue

log = logging.getLogger(__name__)


def service_clock(settings: ServiceSettings) -> Callable[[], datetime]:
    """A service's clock: the wall clock plus its CLOCK_OFFSET_S (tests and drills only)."""
    offset = timedelta(seconds=settings.clock_offset_s)
    return (lambda: utc_now() + offset) if offset else utc_now


async def serve_processor(
    processor: Processor,
    settings: ServiceSettings,
    kafka: KafkaSettings,
    metrics: RuntimeMetrics,
    stop: asyncio.Event,
    *,
    codec: Codec,
    catalogue: Catalogue,
) -> None:
    health = Health()
    runner, port = await serve(
        metrics.registry, health, settings.metrics_host, settings.metrics_port
    )
    log.info("metrics and health endpoints up", extra={"port": port, "service": processor.name})
    runtime = StreamRuntime(
        processor,
        kafka=kafka,
        settings=settings,
        codec=codec,
        catalogue=catalogue,
        metrics=metrics,
        health=health,
        clock=service_clock(settings),
    )
    unwatch = watching(PauseMetrics(metrics.registry), stop)
    try:
        await runtime.run(stop)
    finally:
        unwatch()
        await runner.cleanup()


def run_service(
    name: str,
    settings: ServiceSettings,
    build: Callable[[ServiceSettings, RuntimeMetrics], Processor],
    *,
    codec: Codec,
    catalogue: Catalogue,
) -> int:
    """Runs one service in the foreground; SIGTERM/SIGINT stop it cleanly. Returns exit status."""
    configure(name, settings.log_level)
    kafka = KafkaSettings.from_env()
    metrics = RuntimeMetrics(name)
    processor = build(settings, metrics)

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        log.info(
            "starting", extra={"bootstrap": kafka.bootstrap_servers, "group": settings.group_id}
        )
        await serve_processor(
            processor, settings, kafka, metrics, stop, codec=codec, catalogue=catalogue
        )
        log.info("stopped cleanly")

    try:
        asyncio.run(main())
    except (ConfigError, FatalRuntimeError) as err:
        log.error("cannot continue: %s", err)
        return 2
    return 0
