"""Notifications service entrypoint (skeleton) on the shared stream runtime.

Message planning and delivery arrive with the notifications issue. Today the service
decodes and validates its inputs, dead-letters bad ones, follows program configs and counts what
it consumed.
"""

from __future__ import annotations

from dataclasses import dataclass

from referrals.metrics import RuntimeMetrics
from referrals.programs import ProgramAwareProcessor
from referrals.service import run_service
from referrals.settings import ServiceSettings, load
from referrals.topics import ADVOCATES, SHARES, STATUS


@dataclass(frozen=True)
class NotificationsSettings(ServiceSettings):
    group_id: str = "referrals-notifications"
    metrics_port: int = 9203


class NotificationsProcessor(ProgramAwareProcessor):
    name = "notifications"
    inputs = (STATUS, ADVOCATES, SHARES)


def build(settings: ServiceSettings, metrics: RuntimeMetrics) -> NotificationsProcessor:
    return NotificationsProcessor(metrics)


def main() -> int:
    return run_service("notifications", load(NotificationsSettings, "NOTIFICATIONS"), build)
