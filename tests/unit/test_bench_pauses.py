"""The pipeline bench keeps its own collector as the services keep theirs and says what it
collected while a latency phase measured: a full collection of the bench stops its follower,
and every record it returns meanwhile is stamped late (issue 11's "stalls")."""

from __future__ import annotations

import gc

from bench.pipeline import BENCH_PAUSES, collections_between, full_collections
from referrals.platform.pauses import watch_gc


def test_the_bench_s_full_collections_are_counted_and_its_survivors_frozen() -> None:
    unwatch = watch_gc(BENCH_PAUSES)
    try:
        before = full_collections()
        kept = [[n] for n in range(50_000)]  # survivors of the collection below
        gc.collect()
        frozen = gc.get_freeze_count()
        gc.collect()
        after = full_collections()
    finally:
        unwatch()
        gc.unfreeze()
    count, ms, longest = collections_between(before, after)
    assert count == 2
    assert ms > 0 and longest is not None and longest >= ms / count
    assert frozen >= len(kept)  # the next full collection does not walk them again


def test_the_longest_is_the_first_bucket_holding_every_collection() -> None:
    before = (1.0, 0.010, [0.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0])
    after = (4.0, 0.400, [0.0, 1.0, 1.0, 2.0, 2.0, 3.0, 3.0, 3.0, 4.0, 4.0])
    count, ms, longest = collections_between(before, after)  # each within 0.5 s, one above 0.25
    assert (count, round(ms), longest) == (3, 390, 500.0)
    assert collections_between(after, after) == (0, 0.0, None)
