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

from referrals.contract.avro import AvroCodec
from referrals.contract.topics import configured
from referrals.platform.metrics import RuntimeMetrics
from referrals.platform.settings import AmountLimits, KafkaSettings, ServiceSettings, load
from referrals.streams.service import run_service, service_clock
from services.notifications.adapters.config import DEV_UNSUBSCRIBE_SECRET, NotificationsSettings
from services.notifications.adapters.processor import NotificationsProcessor
from services.notifications.adapters.unsubscribe import UnsubscribeEndpoint

__all__ = ["NotificationsProcessor", "NotificationsSettings", "build", "main"]
log = logging.getLogger(__name__)


def build(settings: ServiceSettings, metrics: RuntimeMetrics) -> NotificationsProcessor:
    if not isinstance(settings, NotificationsSettings):
        settings = load(NotificationsSettings, "NOTIFICATIONS")
    if settings.unsubscribe_secret == DEV_UNSUBSCRIBE_SECRET:
        log.warning("NOTIFICATIONS_UNSUBSCRIBE_SECRET is not set: links use a development secret")
    processor = NotificationsProcessor(metrics, settings, service_clock(settings))
    processor.endpoint = UnsubscribeEndpoint(
        settings, KafkaSettings.from_env(), processor.stats, processor.clock
    )
    return processor


def main() -> int:
    return run_service(
        "notifications",
        load(NotificationsSettings, "NOTIFICATIONS"),
        build,
        codec=AvroCodec(),
        catalogue=configured(load(AmountLimits)),
    )
