"""A partition assignor that keeps partition p of every subscribed topic on one member.

Services process "tasks": task p is partition p of each input topic (all topics have the same
partition count). A task has one transactional id, so exactly one member may own all of its
partitions at a time; round-robin over individual partitions would split a task across members
and make them fence each other's producers.
"""

from __future__ import annotations

import itertools
from collections import defaultdict
from collections.abc import Iterable, Mapping

from aiokafka.cluster import ClusterMetadata
from aiokafka.coordinator.assignors.abstract import AbstractPartitionAssignor
from aiokafka.coordinator.protocol import (
    ConsumerProtocolMemberAssignment,
    ConsumerProtocolMemberMetadata,
)


class CopartitionedAssignor(AbstractPartitionAssignor):  # type: ignore[misc]
    name = "referrals-copartitioned"
    version = 0

    @classmethod
    def assign(
        cls,
        cluster: ClusterMetadata,
        members: Mapping[str, ConsumerProtocolMemberMetadata],
    ) -> dict[str, ConsumerProtocolMemberAssignment]:
        topics: set[str] = set()
        for metadata in members.values():
            topics.update(metadata.subscription)
        tasks: set[int] = set()
        for topic in topics:
            tasks.update(cluster.partitions_for_topic(topic) or ())
        owner = dict(zip(sorted(tasks), itertools.cycle(sorted(members)), strict=False))
        plan: dict[str, dict[str, list[int]]] = defaultdict(lambda: defaultdict(list))
        for topic in sorted(topics):
            for partition in sorted(cluster.partitions_for_topic(topic) or ()):
                plan[owner[partition]][topic].append(partition)
        return {
            member: ConsumerProtocolMemberAssignment(cls.version, sorted(plan[member].items()), b"")
            for member in members
        }

    @classmethod
    def metadata(cls, topics: Iterable[str]) -> ConsumerProtocolMemberMetadata:
        return ConsumerProtocolMemberMetadata(cls.version, list(topics), b"")

    @classmethod
    def on_assignment(cls, assignment: ConsumerProtocolMemberAssignment) -> None:
        pass
