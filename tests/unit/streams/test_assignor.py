"""The sticky co-partitioned assignor: a rebalance moves only the tasks it must."""

from __future__ import annotations

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
