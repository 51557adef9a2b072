"""The sticky co-partitioned assignor: a rebalance moves only the tasks it must."""

from __future__ import annotations

from aiokafka.cluster import ClusterMetadata
from aiokafka.coordinator.protocol import ConsumerProtocolMemberMetadata
from aiokafka.protocol.metadata import MetadataResponse_v0
from hypothesis import given
from hypothesis import strategies as st

from referrals.streams.assignor import (
    CopartitionedAssignor,
    decode_owned,
    encode_owned,
    plan_tasks,
)


def test_a_member_joining_takes_only_its_share_and_the_others_keep_the_rest() -> None:
    before = plan_tasks(range(6), {"a": frozenset()})
    after = plan_tasks(range(6), {"a": frozenset(before["a"]), "b": frozenset()})
    assert len(after["a"]) == 3 and len(after["b"]) == 3
    assert set(after["a"]) <= set(before["a"])  # a moved nothing it kept


def test_a_member_leaving_gives_away_only_its_own_tasks() -> None:
    owned = {"a": frozenset({0, 1}), "b": frozenset({2, 3}), "c": frozenset({4, 5})}
    after = plan_tasks(range(6), {"a": owned["a"], "b": owned["b"]})
    assert {0, 1} <= set(after["a"]) and {2, 3} <= set(after["b"])
    assert sorted(after["a"] + after["b"]) == list(range(6))


def test_a_task_claimed_by_a_zombie_and_its_successor_goes_to_one_of_them() -> None:
    after = plan_tasks(range(2), {"a": frozenset({0, 1}), "b": frozenset({1})})
    assert sorted(after["a"] + after["b"]) == [0, 1]
    assert len(after["a"]) == 1 and len(after["b"]) == 1


@given(
    st.integers(1, 12),
    st.dictionaries(
        st.sampled_from("abcdef"), st.frozensets(st.integers(0, 14), max_size=8), min_size=1
    ),
)
def test_every_task_has_exactly_one_owner_and_shares_differ_by_at_most_one(
    n: int, owned: dict[str, frozenset[int]]
) -> None:
    plan = plan_tasks(range(n), owned)
    assigned = sorted(t for ts in plan.values() for t in ts)
    assert assigned == list(range(n))
    sizes = [len(ts) for ts in plan.values()]
    assert max(sizes) - min(sizes) <= 1


def test_members_report_the_tasks_they_own_in_their_metadata() -> None:
    owned = frozenset({4, 0, 2})
    assignor = CopartitionedAssignor.for_owner(lambda: owned)
    metadata = assignor.metadata(["t"])
    assert decode_owned(metadata.user_data) == owned
    assert CopartitionedAssignor.metadata(["t"]).user_data == b""  # the base owns nothing
    assert decode_owned(b"not,numbers") == frozenset()
    assert encode_owned([3, 1]) == b"1,3"


# == assign(), as aiokafka's group leader calls it ===============================================
TOPICS = ("in.shares", "in.deals")  # two co-partitioned inputs, 6 partitions each


def _cluster(partitions: int = 6) -> ClusterMetadata:
    """The cluster metadata aiokafka hands the assignor, from a metadata response."""
    cluster = ClusterMetadata()
    parts = [(0, p, 0, [0], [0]) for p in range(partitions)]
    cluster.update_metadata(
        MetadataResponse_v0([(0, "localhost", 9092)], [(0, t, parts) for t in TOPICS])
    )
    return cluster


def _member(owned: set[int], topics: tuple[str, ...] = TOPICS) -> ConsumerProtocolMemberMetadata:
    """A member's subscription, its user data the tasks it owns (as its `metadata()` says)."""
    assignor = CopartitionedAssignor.for_owner(lambda: frozenset(owned))
    return assignor.metadata(list(topics))


def _tasks(assignment: object) -> dict[str, list[int]]:
    """topic -> partitions of one member's assignment."""
    return dict(assignment.assignment)  # type: ignore[attr-defined]


def _owned(plan: dict[str, object]) -> dict[str, set[int]]:
    out: dict[str, set[int]] = {}
    for member, assignment in plan.items():
        by_topic = _tasks(assignment)
        assert set(by_topic) == set(TOPICS), by_topic  # every input of a task, together
        first, *rest = by_topic.values()
        assert all(r == first for r in rest), by_topic  # co-partitioned: the same partitions
        out[member] = set(first)
    return out


def test_assign_gives_each_member_whole_tasks_on_every_input_and_each_task_once() -> None:
    plan = CopartitionedAssignor.assign(_cluster(), {"a": _member(set()), "b": _member(set())})
    owned = _owned(plan)
    assert sorted(owned["a"] | owned["b"]) == list(range(6)) and not owned["a"] & owned["b"]
    assert len(owned["a"]) == len(owned["b"]) == 3


def test_assign_keeps_what_members_own_when_nothing_changed() -> None:
    owned = {"a": {0, 2, 5}, "b": {1, 3, 4}}
    plan = CopartitionedAssignor.assign(_cluster(), {m: _member(ts) for m, ts in owned.items()})
    assert _owned(plan) == owned


def test_assign_moves_only_what_a_joining_member_must_take() -> None:
    owned = {"a": {0, 1, 2}, "b": {3, 4, 5}}
    members = {m: _member(ts) for m, ts in owned.items()} | {"c": _member(set())}
    after = _owned(CopartitionedAssignor.assign(_cluster(), members))
    assert after["a"] <= owned["a"] and after["b"] <= owned["b"]  # they keep what they keep
    assert len(after["a"]) == len(after["b"]) == len(after["c"]) == 2  # two moved, no more
    assert after["c"] == (owned["a"] - after["a"]) | (owned["b"] - after["b"])


def test_assign_moves_only_a_leaving_members_tasks() -> None:
    owned = {"a": {0, 1}, "b": {2, 3}, "c": {4, 5}}  # c left: its tasks and nothing else move
    after = _owned(CopartitionedAssignor.assign(_cluster(), {m: _member(owned[m]) for m in "ab"}))
    assert after["a"] >= {0, 1} and after["b"] >= {2, 3}
    assert after["a"] | after["b"] == set(range(6)) and len(after["a"]) == len(after["b"]) == 3


def test_assign_gives_a_task_two_members_claim_to_one_of_them() -> None:
    # A zombie that still reports task 0 and the member that took it over meanwhile.
    owned = {"zombie": {0, 1, 2}, "successor": {0, 3, 4, 5}}
    after = _owned(
        CopartitionedAssignor.assign(_cluster(), {m: _member(ts) for m, ts in owned.items()})
    )
    assert after["zombie"] | after["successor"] == set(range(6))
    assert not after["zombie"] & after["successor"]
    assert len(after["zombie"]) == len(after["successor"]) == 3
    assert {1, 2} <= after["zombie"]  # its uncontested tasks stay; the successor sheds one
    assert len(after["successor"] & owned["successor"]) == 3
