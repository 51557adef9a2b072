"""Rewards service entrypoint: `referrals run rewards` calls `main()`.

Settings come from the environment once (prefix REWARDS_, see `settings.py`); `build` wires the
processor (`adapter.py`) that the shared runtime runs.
"""

from __future__ import annotations

from referrals.contract.avro import AvroCodec
from referrals.contract.topics import configured
from referrals.platform.metrics import RuntimeMetrics
from referrals.platform.settings import AmountLimits, ServiceSettings, load
from referrals.streams.service import run_service
from services.rewards.adapters.processor import RewardsProcessor
from services.rewards.adapters.settings import RewardsSettings, rewards_settings

__all__ = ["RewardsProcessor", "RewardsSettings", "build", "main"]


def build(settings: ServiceSettings, metrics: RuntimeMetrics) -> RewardsProcessor:
    return RewardsProcessor(metrics, rewards_settings(settings))


def main() -> int:
    return run_service(
        "rewards",
        load(RewardsSettings, "REWARDS"),
        build,
        codec=AvroCodec(),
        catalogue=configured(load(AmountLimits)),
    )
