"""Notifications service entrypoint: thank-you, status and "refer again" messages to advocates.

`main` (what `referrals run notifications` calls) wires the pieces: settings read once from
`NOTIFICATIONS_*`, the processor on the shared stream runtime, the sender it owns, and the
unsubscribe endpoint beside the metrics endpoint. SIGTERM or SIGINT stops it cleanly: the
runtime closes every task (deliveries in progress get a grace period; what was accepted but not
yet recorded is journaled), then the endpoint and the sender stop.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from datetime import timedelta

from referrals.errors import ConfigError
from referrals.logs import configure
from referrals.metrics import RuntimeMetrics
from referrals.runtime import FatalRuntimeError, utc_now
from referrals.service import serve_processor
from referrals.settings import KafkaSettings, ServiceSettings, load
from services.notifications.adapter import Clock, NotificationsProcessor
from services.notifications.config import DEV_UNSUBSCRIBE_SECRET, NotificationsSettings
from services.notifications.unsubscribe import UnsubscribeEndpoint

__all__ = ["NotificationsProcessor", "NotificationsSettings", "build", "main"]
log = logging.getLogger(__name__)


def service_clock(settings: ServiceSettings) -> Clock:
    """The runtime's clock: the wall clock plus NOTIFICATIONS_CLOCK_OFFSET_S (tests, drills)."""
    offset = timedelta(seconds=settings.clock_offset_s)
    return (lambda: utc_now() + offset) if offset else utc_now


def build(settings: ServiceSettings, metrics: RuntimeMetrics) -> NotificationsProcessor:
    if not isinstance(settings, NotificationsSettings):
        settings = load(NotificationsSettings, "NOTIFICATIONS")
    return NotificationsProcessor(metrics, settings, service_clock(settings))


async def serve(settings: NotificationsSettings, kafka: KafkaSettings, stop: asyncio.Event) -> None:
    metrics = RuntimeMetrics("notifications")
    processor = build(settings, metrics)
    endpoint = UnsubscribeEndpoint(settings, kafka, processor.stats, processor.clock)
    await endpoint.start()
    try:
        await serve_processor(processor, settings, kafka, metrics, stop)
    finally:
        await endpoint.stop()
        await processor.close()


def main() -> int:
    settings = load(NotificationsSettings, "NOTIFICATIONS")
    configure("notifications", settings.log_level)
    kafka = KafkaSettings.from_env()
    if settings.unsubscribe_secret == DEV_UNSUBSCRIBE_SECRET:
        log.warning("NOTIFICATIONS_UNSUBSCRIBE_SECRET is not set: links use a development secret")

    async def run() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        log.info(
            "starting", extra={"bootstrap": kafka.bootstrap_servers, "group": settings.group_id}
        )
        await serve(settings, kafka, stop)
        log.info("stopped cleanly")

    try:
        asyncio.run(run())
    except (ConfigError, FatalRuntimeError) as err:
        log.error("cannot continue: %s", err)
        return 2
    return 0
