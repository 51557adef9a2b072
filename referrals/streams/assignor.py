"""A sticky partition assignor that keeps partition p of every subscribed topic on one member.

Services process "tasks": task p is partition p of each input topic (all topics have the same
partition count). A task has one transactional id, so exactly one member may own all of its
partitions at a time; round-robin over individual partitions would split a task across members
and make them fence each other's producers.

Sticky: each member sends the tasks it owns in its subscription's user data, and a rebalance
leaves a task where it is unless the balance requires a move (every member ends with
floor(T/M) or ceil(T/M) tasks). A member joining or leaving moves only the tasks it must, so a
rebalance restores only those tasks' state, not every task's (Kafka Streams' sticky task
assignor, without standbys). A task two members both claim (a zombie and its successor) stays
with the one that sorts first; the other loses it.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping

from aiokafka.cluster import ClusterMetadata
from aiokafka.coordinator.assignors.abstract import AbstractPartitionAssignor
from aiokafka.coordinator.protocol import (
    ConsumerProtocolMemberAssignment,
    ConsumerProtocolMemberMetadata,
)


def encode_owned(tasks: Iterable[int]) -> bytes:
    return ",".join(str(t) for t in sorted(tasks)).encode()


def decode_owned(data: bytes | None) -> frozenset[int]:
    """The tasks a member says it owns; anything unreadable counts as none."""
    try:
        return frozenset(int(t) for t in (data or b"").decode().split(",") if t)
    except (UnicodeDecodeError, ValueError):
        return frozenset()


def plan_tasks(tasks: Iterable[int], owned: Mapping[str, frozenset[int]]) -> dict[str, list[int]]:
    """Member -> its tasks: previous owners keep theirs up to a fair share, the rest go to the
    members with the fewest tasks (ties by member id). Pure, for tests."""
    all_tasks = sorted(set(tasks))
    members = sorted(owned)
    if not members:
        return {}
    cap = -(-len(all_tasks) // len(members))  # ceil(T / M)
    floor = len(all_tasks) // len(members)
    extra = len(all_tasks) - floor * len(members)  # members that may hold `cap`
    plan: dict[str, list[int]] = {m: [] for m in members}
    taken: set[int] = set()
    at_cap = 0
    for member in members:
        keep = [t for t in sorted(owned[member]) if t in all_tasks and t not in taken]
        limit = cap if at_cap < extra or cap == floor else floor
        plan[member] = keep[:limit]
        taken.update(plan[member])
        if len(plan[member]) == cap and cap != floor:
            at_cap += 1
    for task in all_tasks:
        if task not in taken:
            member = min(members, key=lambda m: (len(plan[m]), m))
            plan[member].append(task)
    return {m: sorted(ts) for m, ts in plan.items()}


class CopartitionedAssignor(AbstractPartitionAssignor):  # type: ignore[misc]
    """The assignor class aiokafka is given; `for_owner` binds it to one runtime's tasks."""

    name = "referrals-copartitioned"
    version = 1
    owned: Callable[[], Iterable[int]] = staticmethod(lambda: ())

    @classmethod
    def for_owner(cls, owned: Callable[[], Iterable[int]]) -> type[CopartitionedAssignor]:
        """A subclass whose metadata reports the tasks `owned()` returns (one per runtime: a
        process may run several)."""
        return type(cls.__name__, (cls,), {"owned": staticmethod(owned)})

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
        owned = {m: decode_owned(md.user_data) for m, md in members.items()}
        owner = {t: m for m, ts in plan_tasks(tasks, owned).items() for t in ts}
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
        return ConsumerProtocolMemberMetadata(cls.version, list(topics), encode_owned(cls.owned()))

    @classmethod
    def on_assignment(cls, assignment: ConsumerProtocolMemberAssignment) -> None:
        pass
