"""Attribution service entrypoint: settings, wiring, `referrals run attribution`.

The adapter (`adapter.AttributionProcessor`) runs on the shared stream runtime; the decisions
are the pure core's (`domain/`). `build` is the wiring the runtime and the tests share.
"""

from __future__ import annotations

from pydantic_settings import SettingsConfigDict

from referrals.contract.avro import AvroCodec
from referrals.contract.topics import configured
from referrals.platform.metrics import RuntimeMetrics
from referrals.platform.settings import AmountLimits, ServiceSettings, load
from referrals.streams.service import run_service, service_clock
from services.attribution.adapters.processor import (
    TOUCH_RETENTION_MARGIN_DAYS,
    AttributionProcessor,
)

DEFAULT_GROUP = "referrals-attribution"


class AttributionSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="ATTRIBUTION_")

    group_id: str = DEFAULT_GROUP
    metrics_port: int = 9201
    # Late shares and profiles reach the referrals waiting for them at each punctuation; every
    # 200 ms keeps a late match's LEAD close behind its share, and an idle punctuation costs
    # only a look at an empty in-memory set per task.
    punctuate_ms: int = 200
    # Shares are kept as touches for the longest attribution window of any program plus this
    # many days of event time (behind the newest share), then pruned (`adapters/directory`).
    touch_retention_margin_days: float = TOUCH_RETENTION_MARGIN_DAYS


def build(settings: ServiceSettings, metrics: RuntimeMetrics) -> AttributionProcessor:
    """The processor, its RocksDB directory under the state directory, one per group."""
    group = settings.group_id or DEFAULT_GROUP
    codec = AvroCodec()
    clock = service_clock(settings)  # the runtime's clock, offset included
    return AttributionProcessor(
        metrics,
        settings.state_dir / group / "attribution" / "directory",
        codec=codec,
        unknown_program_wait_s=settings.unknown_program_wait_s,
        wall=lambda: clock().timestamp(),
        touch_margin_days=(
            settings.touch_retention_margin_days
            if isinstance(settings, AttributionSettings)
            else TOUCH_RETENTION_MARGIN_DAYS
        ),
    )


def main() -> int:
    return run_service(
        "attribution",
        load(AttributionSettings, "ATTRIBUTION"),
        build,
        codec=AvroCodec(),
        catalogue=configured(load(AmountLimits)),
    )
