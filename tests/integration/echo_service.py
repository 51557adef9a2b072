"""Test-only services on the shared runtime. Run as `python -m tests.integration.echo_service`.

ECHO_MODE=echo (default): each ShareEvent in, one NotificationSent out, notification_id = the
share's event_id. ECHO_MODE=count: counts shares per advocate in a durable store and emits
notification_id "<advocate>#<n>" for the n-th share, so lost or doubled state shows as a
missing or repeated id. ECHO_DELAY_MS slows each record so a test can kill the process
mid-stream."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterable
from datetime import datetime

from pydantic_settings import SettingsConfigDict

from referrals.contract.avro import AvroCodec
from referrals.contract.records import NotificationSent, ShareEvent
from referrals.contract.topics import NOTIFICATIONS_SENT, SHARES, TOPICS
from referrals.platform.settings import ServiceSettings, load
from referrals.streams.processor import Inbound, Outbound, Processor
from referrals.streams.service import run_service

PID = os.getpid()


class EchoSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="ECHO_")

    group_id: str = "tests-echo"
    delay_ms: float = 0.0
    mode: str = "echo"


class Echo(Processor):
    name = "echo"
    inputs = (SHARES,)

    def __init__(self, delay_s: float) -> None:
        self.delay_s = delay_s

    def process(self, record: Inbound, now: datetime) -> Iterable[Outbound]:
        share = record.value
        assert isinstance(share, ShareEvent)
        if self.delay_s:
            time.sleep(self.delay_s)
        # The channel names the process, so a doubled output says which instances wrote it.
        sent = NotificationSent(share.event_id, share.advocate_id, "ECHO", f"pid-{PID}", now)
        return [Outbound(NOTIFICATIONS_SENT, share.advocate_id, sent)]


class Count(Echo):
    name = "count"
    stores = ("counts",)

    def process(self, record: Inbound, now: datetime) -> Iterable[Outbound]:
        share = record.value
        assert isinstance(share, ShareEvent)
        if self.delay_s:
            time.sleep(self.delay_s)
        counts = self.store(record.partition, "counts")
        key = share.advocate_id.encode()
        n = int(counts.get(key) or b"0") + 1
        counts.put(key, str(n).encode())
        sent = NotificationSent(f"{share.advocate_id}#{n}", share.advocate_id, "COUNT", "TEST", now)
        return [Outbound(NOTIFICATIONS_SENT, share.advocate_id, sent)]


def main() -> int:
    settings = load(EchoSettings, "ECHO")
    kind = Count if settings.mode == "count" else Echo
    return run_service(
        kind.name,
        settings,
        lambda s, m: kind(settings.delay_ms / 1000),
        codec=AvroCodec(),
        catalogue=TOPICS,
    )


if __name__ == "__main__":
    os.environ.setdefault("ECHO_METRICS_PORT", "0")
    sys.exit(main())
