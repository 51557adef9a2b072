"""The rewards service slowed down for kill tests: `python -m tests.integration.slow_rewards`.

The real rewards wiring (`REWARDS_*` settings, runtime, processor) with one difference: every
input record first sleeps SLOW_REWARDS_DELAY_MS (default 3), so a test can SIGKILL the process
while it is still working through its input. The sleep lives here, not in the service: it blocks
the event loop, which production code must never do.
"""

from __future__ import annotations

import os
import sys
import time
from datetime import datetime

from referrals.contract.avro import AvroCodec
from referrals.contract.topics import TOPICS
from referrals.platform.metrics import RuntimeMetrics
from referrals.platform.settings import ServiceSettings, load
from referrals.streams.processor import Inbound, Output
from referrals.streams.service import run_service
from services.rewards.adapters.processor import RewardsProcessor
from services.rewards.adapters.settings import RewardsSettings, rewards_settings


class SlowRewards(RewardsProcessor):
    """The rewards processor, `delay_s` slower per record."""

    def __init__(self, metrics: RuntimeMetrics, settings: RewardsSettings, delay_s: float) -> None:
        super().__init__(metrics, settings)
        self.delay_s = delay_s

    def process(self, record: Inbound, now: datetime) -> list[Output]:
        time.sleep(self.delay_s)
        return super().process(record, now)


def main() -> int:
    delay_s = float(os.environ.get("SLOW_REWARDS_DELAY_MS", "3")) / 1000

    def build(settings: ServiceSettings, metrics: RuntimeMetrics) -> SlowRewards:
        return SlowRewards(metrics, rewards_settings(settings), delay_s)

    return run_service(
        "rewards", load(RewardsSettings, "REWARDS"), build, codec=AvroCodec(), catalogue=TOPICS
    )


if __name__ == "__main__":
    sys.exit(main())
