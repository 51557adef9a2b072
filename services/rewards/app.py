"""Rewards service entrypoint (skeleton) on the shared stream runtime.

The reward rules and payouts arrive with the rewards issue. Today the service decodes and validates
its inputs, dead-letters bad ones, follows program configs and counts what it consumed.
"""

from __future__ import annotations

from dataclasses import dataclass

from referrals.metrics import RuntimeMetrics
from referrals.programs import ProgramAwareProcessor
from referrals.service import run_service
from referrals.settings import ServiceSettings, load
from referrals.topics import ADVOCATES, PAYOUT_RESULTS, STATUS


@dataclass(frozen=True)
class RewardsSettings(ServiceSettings):
    group_id: str = "referrals-rewards"
    metrics_port: int = 9202


class RewardsProcessor(ProgramAwareProcessor):
    name = "rewards"
    inputs = (STATUS, ADVOCATES, PAYOUT_RESULTS)


def build(settings: ServiceSettings, metrics: RuntimeMetrics) -> RewardsProcessor:
    return RewardsProcessor(metrics)


def main() -> int:
    return run_service("rewards", load(RewardsSettings, "REWARDS"), build)
