"""Measures what stops a process's event loop: the loop's own lateness and Python's garbage
collector. Every broker answer and SMTP reply a service awaits waits this long for its turn, so
these pauses add to every hop of the pipeline (issue 11).
"""

from __future__ import annotations

import asyncio
import gc
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from prometheus_client import CollectorRegistry, Histogram

PROBE_S = 0.05  # how often the loop's lateness is sampled
# Pauses of the whole process: a millisecond to a second.
PAUSE_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)
# Young collections every GEN0 net allocations rather than Python's 700: a service allocates
# (and frees) a few objects per record, and each collection costs a pass over the young ones.
GEN0 = 10_000


@dataclass
class PauseMetrics:
    registry: CollectorRegistry

    def __post_init__(self) -> None:
        self.loop_lag = Histogram(
            "referrals_event_loop_lag_seconds",
            "How late the event loop ran a timer due now: everything the process awaits (a "
            "broker answer, an SMTP reply) waits this long for its turn",
            buckets=PAUSE_BUCKETS,
            registry=self.registry,
        )
        self.gc_pause = Histogram(
            "referrals_gc_pause_seconds",
            "Python's garbage collector pauses, by generation (nothing else runs meanwhile)",
            ["generation"],
            buckets=PAUSE_BUCKETS,
            registry=self.registry,
        )


async def watch_loop(metrics: PauseMetrics, stop: asyncio.Event) -> None:
    """Until `stop`: sleeps PROBE_S at a time and observes how late each wake-up came."""
    while not stop.is_set():
        due = time.perf_counter() + PROBE_S
        await asyncio.sleep(PROBE_S)
        metrics.loop_lag.observe(max(0.0, time.perf_counter() - due))


def watch_gc(metrics: PauseMetrics) -> Callable[[], None]:
    """Observes each collection's duration by generation, and keeps full collections short:
    after each one the survivors are frozen (`gc.freeze`), so the next full collection scans
    only what survived since. A service's long-lived objects are its caches and clients, which
    reference counting frees when they are dropped; a full pass over them stopped the loop for
    50-250 ms, the tail of every hop. Returns the function that stops it (and puts the
    thresholds back; what was frozen stays frozen)."""
    started: list[float] = [0.0]
    by_generation = [metrics.gc_pause.labels(str(g)) for g in range(3)]
    thresholds = gc.get_threshold()
    gc.set_threshold(GEN0, *thresholds[1:])
    gc.freeze()  # what start-up made: modules, settings, clients

    def callback(phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            started[0] = time.perf_counter()
            return
        generation = info["generation"]
        by_generation[generation].observe(time.perf_counter() - started[0])
        if generation == 2:
            gc.freeze()

    def stop() -> None:
        gc.callbacks.remove(callback)
        gc.set_threshold(*thresholds)

    gc.callbacks.append(callback)
    return stop


def watching(metrics: PauseMetrics, stop: asyncio.Event) -> Callable[[], None]:
    """Starts both probes (in a running loop); returns the function that stops them."""
    unwatch_gc = watch_gc(metrics)
    loop_lag = asyncio.create_task(watch_loop(metrics, stop))

    def unwatch() -> None:
        unwatch_gc()
        loop_lag.cancel()

    return unwatch
