"""Notifications service entrypoint: thank-you, status and "refer again" messages to advocates.

`main` (what `referrals run notifications` calls) runs the processor on the shared service
wiring (`referrals.streams.service.run_service`): settings read once from `NOTIFICATIONS_*`; the
processor owns its sender and starts the unsubscribe endpoint beside the metrics endpoint.
SIGTERM or SIGINT stops it cleanly: the runtime closes every task (deliveries in progress get a
grace period; what was accepted but not yet recorded is journaled), then the endpoint and the
sender stop.
"""

from __future__ import annotations

import logging
import os

from referrals.contract.avro import AvroCodec
from referrals.contract.topics import configured
from referrals.platform.errors import ConfigError
from referrals.platform.logs import configure
from referrals.platform.metrics import RuntimeMetrics
from referrals.platform.settings import AmountLimits, KafkaSettings, ServiceSettings, load
from referrals.streams.service import run_service, service_clock
from services.notifications.adapters.config import NotificationsSettings, check_startup
from services.notifications.adapters.processor import NotificationsProcessor
from services.notifications.adapters.unsubscribe import UnsubscribeEndpoint

__all__ = ["NotificationsProcessor", "NotificationsSettings", "build", "main"]
log = logging.getLogger(__name__)


def build(settings: ServiceSettings, metrics: RuntimeMetrics) -> NotificationsProcessor:
    if not isinstance(settings, NotificationsSettings):
        settings = load(NotificationsSettings, "NOTIFICATIONS")
    processor = NotificationsProcessor(metrics, settings, service_clock(settings))
    processor.endpoint = UnsubscribeEndpoint(
        settings, KafkaSettings.from_env(), processor.stats, processor.clock
    )
    return processor


def main() -> int:
    """Runs the service; exit status 2 for settings it refuses (`config.check_startup`)."""
    try:
        settings = load(NotificationsSettings, "NOTIFICATIONS")
        check_startup(settings, os.environ)
    except ConfigError as err:
        configure("notifications")
        log.error("cannot start: %s", err)
        return 2
    return run_service(
        "notifications",
        settings,
        build,
        codec=AvroCodec(),
        catalogue=configured(load(AmountLimits)),
    )
