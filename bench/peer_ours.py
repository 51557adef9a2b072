"""The peers' step on our runtime (bench/peers.py starts it as a process of its own).

`referrals.streams.runtime.StreamRuntime` as a service uses it: exactly once (a transaction per
task and poll, offsets and store writes inside it), read_committed input, a RocksDB task store
with its changelog. Input: ReferralStatusChanged (WON) records in Avro on referral.status.v1,
keyed by advocate; each advocate's WONs are counted in the store `wins`, and every EVERY-th
emits a PayoutCommand (Avro) on rewards.payouts.v2. Writes the monotonic time it processed its
first record to FIRST_FILE. Settings from the environment: BOOTSTRAP, PREFIX, EVERY, STATE_DIR.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
import uuid
from collections.abc import Iterable
from datetime import datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from referrals.contract.avro import AvroCodec
from referrals.contract.records import (
    PayoutCommand,
    ReferralStatusChanged,
    RewardType,
)
from referrals.contract.topics import PAYOUTS_V2, STATUS, TOPICS
from referrals.platform.metrics import Health, RuntimeMetrics
from referrals.platform.settings import KafkaSettings, ServiceSettings
from referrals.streams.processor import Inbound, Outbound, Processor
from referrals.streams.runtime import StreamRuntime

EVERY = int(os.environ.get("EVERY", "3"))


class TierCount(Processor):
    """Counts each advocate's WONs; every EVERY-th is a tier reached: a payout."""

    name = "peer"
    inputs = (STATUS,)
    stores = ("wins",)
    first: float | None = None

    def process(self, record: Inbound, now: datetime) -> Iterable[Outbound]:
        if self.first is None:
            self.first = time.monotonic()
            Path(os.environ["FIRST_FILE"]).write_text(str(self.first))
        status = record.value
        assert isinstance(status, ReferralStatusChanged)
        store = self.store(record.partition, "wins")
        key = status.advocate_id.encode()
        held = store.get(key)
        wins = (int.from_bytes(held, "big") if held else 0) + 1
        store.put(key, wins.to_bytes(4, "big"))
        if wins % EVERY:
            return []
        tier = wins // EVERY
        payout = PayoutCommand(
            payout_id=f"{status.advocate_id}#{tier}",
            attempt=1,
            program_id=status.program_id,
            advocate_id=status.advocate_id,
            referral_id=status.referral_id,
            reward_type=RewardType.GIFT_CARD,
            amount_minor=5_000 * tier,
            currency="EUR",
            rule_id=f"tier-{tier}",
            tier=tier,
            config_version=status.config_version,
            issued_at=now,
        )
        return [Outbound(PAYOUTS_V2, status.advocate_id, payout)]


async def main() -> None:
    kafka = KafkaSettings(
        bootstrap_servers=os.environ["BOOTSTRAP"], topic_prefix=os.environ["PREFIX"]
    )
    service = ServiceSettings(
        group_id=f"peer-ours-{uuid.uuid4().hex[:6]}",
        state_dir=Path(os.environ["STATE_DIR"]),
        state_backend="rocksdb",
        log_level="WARNING",
    )
    runtime = StreamRuntime(
        TierCount(),
        kafka=kafka,
        settings=service,
        codec=AvroCodec(),
        catalogue=TOPICS,
        metrics=RuntimeMetrics("peer"),
        health=Health(),
    )
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    await runtime.run(stop)


if __name__ == "__main__":
    asyncio.run(main())
