"""Readiness reflects every problem a component reports; each change is logged once."""

from __future__ import annotations

import logging

import pytest
from prometheus_client import CollectorRegistry

from referrals.platform.logs import RepeatFilter
from referrals.platform.metrics import Health, HealthCollector


def test_a_problem_makes_the_service_not_ready_until_resolved_and_logs_each_change_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    health = Health(ready=True)
    assert health.is_ready()
    with caplog.at_level(logging.WARNING):
        for _ in range(100):  # a retry loop reporting the same problem every attempt
            health.problem("broker", "no broker answers")
        assert not health.is_ready() and health.alive()
        health.resolved("broker")
        health.resolved("broker")
    assert health.is_ready()
    lines = [r.getMessage() for r in caplog.records]
    assert lines == ["not ready: broker", "recovered: broker"]


def _record(msg: str, *args: object, name: str = "aiokafka.client") -> logging.LogRecord:
    return logging.LogRecord(name, logging.WARNING, __file__, 1, msg, args, None)


def test_repeated_client_warnings_pass_once_per_window_with_a_count_of_the_held_back() -> None:
    clock = [0.0]
    flt = RepeatFilter(window_s=60.0)
    import referrals.platform.logs as logs

    real = logs.time.monotonic
    logs.time.monotonic = lambda: clock[0]  # type: ignore[assignment]
    try:
        passed = []
        for i in range(1000):
            clock[0] = i * 0.01  # 1,000 retries in 10 s
            passed.append(flt.filter(_record("Unable to connect to node %s", i % 3)))
        clock[0] = 61.0
        later = _record("Unable to connect to node %s", 1)
        assert flt.filter(later)
        assert flt.filter(_record("Unable to connect to node %s", 1, name="referrals.x"))
    finally:
        logs.time.monotonic = real  # type: ignore[assignment]
    assert sum(passed) == 1
    assert later.suppressed == 999  # type: ignore[attr-defined]


def test_readiness_liveness_and_problems_are_exported_as_gauges() -> None:
    health = Health(ready=False)
    registry = CollectorRegistry()
    registry.register(HealthCollector(health))

    def value(name: str) -> float | None:
        return registry.get_sample_value(name)

    assert (value("referrals_ready"), value("referrals_alive")) == (0.0, 1.0)
    health.ready = True
    assert value("referrals_ready") == 1.0
    health.problem("broker", "no broker answers")
    assert (value("referrals_ready"), value("referrals_health_problems")) == (0.0, 1.0)
    health.resolved("broker")
    health.last_tick -= health.stale_after_s  # the loop stopped ticking
    assert (value("referrals_ready"), value("referrals_alive")) == (0.0, 0.0)
