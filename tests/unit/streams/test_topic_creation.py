"""Topic creation picks the replication factor from the cluster: min(3, brokers), and
`min.insync.replicas` 2 where there are three or more (CONTRACT.md, Faults)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any, cast

import pytest
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from referrals.streams.topics import create_named_topics


class FakeAdmin:
    """Just what create_named_topics uses: a cluster of `brokers`, every topic created; broker
    id k's metadata lacks the new topics for its first `lag[k]` requests."""

    def __init__(self, brokers: int, lag: dict[int, int] | None = None) -> None:
        self.brokers = brokers
        self.lag = dict(lag or {})
        self.asked: dict[int, int] = {}
        self.created: list[NewTopic] = []

    async def describe_cluster(self) -> dict[str, Any]:
        return {"brokers": [{"node_id": i + 1} for i in range(self.brokers)]}

    async def create_topics(self, new: list[NewTopic]) -> object:
        self.created.extend(new)
        return SimpleNamespace(topic_errors=[(t.name, 0, None) for t in new])

    async def _send_request(self, request: Any, node_id: int) -> Any:
        self.asked[node_id] = self.asked.get(node_id, 0) + 1
        known = [] if self.asked[node_id] <= self.lag.get(node_id, 0) else self.created
        topics = [{"topic": t.name, "error_code": 0, "partitions": [{"leader": 1}]} for t in known]
        return SimpleNamespace(to_object=lambda: {"topics": topics})


@pytest.mark.parametrize(
    ("brokers", "replicas", "min_isr"), [(1, 1, "1"), (2, 2, "1"), (3, 3, "2"), (5, 3, "2")]
)
async def test_the_cluster_decides_the_replication_factor(
    brokers: int, replicas: int, min_isr: str
) -> None:
    admin = FakeAdmin(brokers)
    wanted = {"a.changelog": {"cleanup.policy": "compact"}, "b": {}}
    created = await create_named_topics(cast(AIOKafkaAdminClient, admin), wanted, partitions=2)
    assert created == ["a.changelog", "b"]
    assert [t.replication_factor for t in admin.created] == [replicas, replicas]
    assert [t.topic_configs["min.insync.replicas"] for t in admin.created] == [min_isr, min_isr]
    assert admin.created[0].topic_configs["cleanup.policy"] == "compact"


async def test_an_explicit_replication_factor_wins() -> None:
    admin = FakeAdmin(3)
    await create_named_topics(
        cast(AIOKafkaAdminClient, admin), {"t": {}}, partitions=1, replication_factor=1
    )
    assert admin.created[0].replication_factor == 1
    assert admin.created[0].topic_configs["min.insync.replicas"] == "1"


async def test_topics_are_ready_once_every_broker_lists_them() -> None:
    # Broker 3's metadata trails: creation waits for it rather than trusting broker 1 or 2.
    admin = FakeAdmin(3, lag={3: 4})
    await create_named_topics(cast(AIOKafkaAdminClient, admin), {"t": {}}, partitions=1)
    assert admin.asked[3] == 5
