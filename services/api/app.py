"""API entrypoint: `referrals run api` calls `main()`.

Settings come from the environment once (prefix API_, `settings.py`; Kafka from KAFKA_*; the
amount ceilings from REFERRALS_*). Without a readable tokens file it refuses to start (exit 2,
one clear line). SIGTERM or SIGINT stops it cleanly: health goes NOT_SERVING, calls in flight get
API_SHUTDOWN_GRACE_S, then the Kafka clients close; exit 0.
"""

from __future__ import annotations

import asyncio
import logging
import signal

from referrals.platform.errors import ConfigError
from referrals.platform.logs import configure
from referrals.platform.pauses import PauseMetrics, watching
from referrals.platform.settings import AmountLimits, KafkaSettings, load
from services.api.auth import load_tokens
from services.api.core import Core
from services.api.interceptor import ApiMetrics
from services.api.portal_component import PortalComponent
from services.api.server import ApiServer, Component
from services.api.settings import ApiSettings

log = logging.getLogger(__name__)


def components(
    settings: ApiSettings, kafka: KafkaSettings, limits: AmountLimits, metrics: ApiMetrics
) -> list[Component]:
    """The API's parts, each serving its services: Ingest, Programs and Payouts (`Core`), and
    Advocates over the portal's read model (kept under API_STATE_DIR)."""
    portal = PortalComponent(kafka, settings.state_dir, metrics.registry)
    return [Core(settings, kafka, limits), portal]


async def serve(settings: ApiSettings, stop: asyncio.Event) -> None:
    tokens = load_tokens(settings.tokens_file)
    kafka = KafkaSettings.from_env()
    metrics = ApiMetrics()
    parts = components(settings, kafka, load(AmountLimits), metrics)
    server = ApiServer(settings, tokens, parts, metrics)
    await server.start()
    unwatch = watching(PauseMetrics(metrics.registry), stop)
    try:
        await stop.wait()
    finally:
        unwatch()
        await server.stop()


def main() -> int:
    try:
        settings = load(ApiSettings, "API")
    except ConfigError as err:
        configure("api")
        log.error("cannot start: %s", err)
        return 2
    configure("api", settings.log_level)

    async def run() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await serve(settings, stop)
        log.info("stopped cleanly")

    try:
        asyncio.run(run())
    except ConfigError as err:
        log.error("cannot start: %s", err)
        return 2
    return 0
