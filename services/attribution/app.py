"""Attribution service entrypoint (skeleton) on the shared stream runtime.

The matching logic arrives with the attribution issue. Today the service decodes and validates
its inputs, dead-letters bad ones, follows program configs and counts what it consumed.
"""

from __future__ import annotations

from dataclasses import dataclass

from referrals.metrics import RuntimeMetrics
from referrals.programs import ProgramAwareProcessor
from referrals.service import run_service
from referrals.settings import ServiceSettings, load
from referrals.topics import ADVOCATES, CONVERSIONS, DEALS, SHARES


@dataclass(frozen=True)
class AttributionSettings(ServiceSettings):
    group_id: str = "referrals-attribution"
    metrics_port: int = 9201


class AttributionProcessor(ProgramAwareProcessor):
    name = "attribution"
    inputs = (ADVOCATES, SHARES, CONVERSIONS, DEALS)


def build(settings: ServiceSettings, metrics: RuntimeMetrics) -> AttributionProcessor:
    return AttributionProcessor(metrics)


def main() -> int:
    return run_service("attribution", load(AttributionSettings, "ATTRIBUTION"), build)
