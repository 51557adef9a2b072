"""The portal's status latency: from a status's occurred_at to the batch that applied it being
committed to the read model, observed only once the portal has caught up at start-up (history
read then is not anyone's wait)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

import pytest
from aiokafka import TopicPartition
from portal_builders import T0, status
from prometheus_client import CollectorRegistry

from referrals.contract.avro import AvroCodec
from referrals.contract.records import ReferralStatus
from referrals.contract.topics import STATUS
from referrals.platform.settings import KafkaSettings
from services.api.portal.follower import Follower
from services.api.portal.metrics import PortalMetrics
from services.api.portal.readmodel import ReadModel
from services.api.portal.store import Store
from services.api.portal.watch import Hub

LATENCY = "referrals_portal_status_latency_seconds"


class Message(NamedTuple):
    key: bytes
    value: bytes
    offset: int
    timestamp: int


@pytest.fixture
def registry() -> CollectorRegistry:
    return CollectorRegistry()


@pytest.fixture
def follower(tmp_path: Path, registry: CollectorRegistry) -> Iterator[Follower]:
    store = Store(tmp_path / "portal")
    metrics = PortalMetrics(registry)
    now = T0.timestamp() + 2.5  # the clock reads 2.5 s after T0
    yield Follower(KafkaSettings(), ReadModel(store), Hub(), metrics, clock=lambda: now)
    store.close()


def _batch(*minutes: int) -> dict[TopicPartition, list[Message]]:
    codec = AvroCodec()
    messages = [
        Message(b"adv-1", codec.encode(status(f"r{m}", ReferralStatus.LEAD, m)), n, 0)
        for n, m in enumerate(minutes)
    ]
    return {TopicPartition(STATUS, 0): messages}


def test_statuses_applied_after_catching_up_are_timed_from_their_event_time(
    follower: Follower, registry: CollectorRegistry
) -> None:
    follower._apply(_batch(0))  # history, at start-up
    assert registry.get_sample_value(f"{LATENCY}_count") == 0
    follower._caught_up = True
    follower._apply(_batch(0, -1))  # occurred at T0 and a minute before
    assert registry.get_sample_value(f"{LATENCY}_count") == 2
    assert registry.get_sample_value(f"{LATENCY}_sum") == 2.5 + 62.5
    assert registry.get_sample_value(f"{LATENCY}_bucket", {"le": "5.0"}) == 1
