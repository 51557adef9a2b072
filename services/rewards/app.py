"""Rewards service entrypoint: `referrals run rewards` calls `main()`.

Settings come from the environment once (prefix REWARDS_, see `settings.py`); `build` wires the
processor (`adapter.py`) that the shared runtime runs.
"""

from __future__ import annotations

from referrals.metrics import RuntimeMetrics
from referrals.service import run_service
from referrals.settings import ServiceSettings, load
from services.rewards.adapter import RewardsProcessor
from services.rewards.settings import RewardsSettings, rewards_settings

__all__ = ["RewardsProcessor", "RewardsSettings", "build", "main"]


def build(settings: ServiceSettings, metrics: RuntimeMetrics) -> RewardsProcessor:
    return RewardsProcessor(metrics, rewards_settings(settings))


def main() -> int:
    return run_service("rewards", load(RewardsSettings, "REWARDS"), build)
