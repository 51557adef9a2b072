"""The pause probes: the event loop's lateness and the garbage collector's pauses are observed,
and a full collection freezes its survivors (the next one scans only newer objects)."""

from __future__ import annotations

import asyncio
import gc
import time

from prometheus_client import CollectorRegistry

from referrals.platform import pauses


def _count(metrics: pauses.PauseMetrics, name: str, **labels: str) -> float:
    value = metrics.registry.get_sample_value(f"{name}_count", labels)
    return value or 0.0


def _sum(metrics: pauses.PauseMetrics, name: str) -> float:
    return metrics.registry.get_sample_value(f"{name}_sum") or 0.0


def test_a_blocked_loop_is_observed_as_lag() -> None:
    metrics = pauses.PauseMetrics(CollectorRegistry())

    async def scenario() -> None:
        stop = asyncio.Event()
        probe = asyncio.create_task(pauses.watch_loop(metrics, stop))
        await asyncio.sleep(0)  # the probe's first sleep starts
        time.sleep(3 * pauses.PROBE_S)  # noqa: ASYNC251 (the point: the loop is blocked)
        await asyncio.sleep(2 * pauses.PROBE_S)
        stop.set()
        await probe

    asyncio.run(scenario())
    assert _count(metrics, "referrals_event_loop_lag_seconds") >= 1
    assert _sum(metrics, "referrals_event_loop_lag_seconds") >= 1.5 * pauses.PROBE_S


def test_collections_are_observed_and_a_full_one_freezes_its_survivors() -> None:
    metrics = pauses.PauseMetrics(CollectorRegistry())
    threshold = gc.get_threshold()
    stop = pauses.watch_gc(metrics)
    try:
        assert gc.get_threshold()[0] == pauses.GEN0
        survivors = [[i] for i in range(1000)]  # tracked, alive through the collection
        frozen = gc.get_freeze_count()
        gc.collect(1)
        assert _count(metrics, "referrals_gc_pause_seconds", generation="1") == 1
        assert gc.get_freeze_count() == frozen  # only a full collection freezes
        gc.collect(2)
        assert _count(metrics, "referrals_gc_pause_seconds", generation="2") == 1
        assert gc.get_freeze_count() >= frozen + len(survivors)
    finally:
        stop()
        gc.unfreeze()
    assert gc.get_threshold() == threshold  # stopped: Python's thresholds again
    gc.collect(1)  # stopped: no longer observed
    assert _count(metrics, "referrals_gc_pause_seconds", generation="1") == 1
