"""Prometheus metrics and the HTTP endpoints SREs scrape: /metrics, /healthz, /readyz.

One registry per service process. Label values are bounded sets (topics, partitions, reasons,
channels, currencies): never advocate ids or other unbounded values. What the alert rules and
dashboards read (deploy/prometheus, deploy/grafana) must stay exported under the same names: a
test scrapes the running services for every name they use.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.exposition import generate_latest
from prometheus_client.metrics import MetricWrapperBase
from prometheus_client.registry import Collector

log = logging.getLogger(__name__)

# Buckets for latencies from event time to output: tens of milliseconds up to minutes, since a
# backfill or a restart can legitimately show old event times.
LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)
# A cycle's phases take from a millisecond (a transaction's requests) to seconds (a backlog).
CYCLE_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 30.0)
# Where a committed cycle's time went (referrals_cycle_seconds{phase}), in order.
CYCLE_PHASES = ("queued", "handle", "produce", "offsets", "commit")
M = TypeVar("M", bound=MetricWrapperBase)


class Children(Generic[M]):
    """A labelled metric's children, each looked up once by its label values.

    `labels()` converts and checks every value and takes a lock on each call: too much once per
    record. A hot path keeps one of these and calls it with the values (a dict hit after the
    first time); `remove` drops a child whose series must disappear (a partition given away)."""

    __slots__ = ("_found", "metric")

    def __init__(self, metric: M) -> None:
        self.metric = metric
        self._found: dict[tuple[str, ...], M] = {}

    def __call__(self, *values: str) -> M:
        child = self._found.get(values)
        if child is None:
            child = self._found[values] = self.metric.labels(*values)
        return child

    def remove(self, *values: str) -> None:
        if self._found.pop(values, None) is not None:
            self.metric.remove(*values)

    def known(self) -> list[tuple[str, ...]]:
        return list(self._found)


@dataclass
class RuntimeMetrics:
    """The metrics every service has; a service adds its own to `registry`."""

    service: str
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)

    def __post_init__(self) -> None:
        r = self.registry
        self.records_in = Counter(
            "referrals_records_in", "Input records consumed", ["topic"], registry=r
        )
        self.records_out = Counter(
            "referrals_records_out", "Records produced", ["topic"], registry=r
        )
        self.handed_over = Counter(
            "referrals_records_handed_over",
            "Records of an internal re-key topic handed straight to their task in the "
            "transaction that made them, not written (counted in records_out and records_in "
            "too, as if they had passed through the topic)",
            ["topic"],
            registry=r,
        )
        self.dead_letters = Counter(
            "referrals_dead_letters",
            "Input records sent to a dead-letter topic",
            ["topic", "reason"],
            registry=r,
        )
        self.transactions = Counter(
            "referrals_transactions", "Kafka transactions by outcome", ["outcome"], registry=r
        )
        self.batch_records = Histogram(
            "referrals_batch_records",
            "Input records per transaction",
            buckets=(1, 10, 50, 100, 250, 500, 1000, 2000, 5000),
            registry=r,
        )
        self.commit_seconds = Histogram(
            "referrals_transaction_commit_seconds",
            "Time to produce and commit one transaction",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.cycle_seconds = Histogram(
            "referrals_cycle_seconds",
            "Where a committed cycle's time went, by phase: queued (its oldest input record's "
            "age, from the record's timestamp, when the cycle began), handle (its records, "
            "timers and handed-over records), produce (the outputs handed to the producer), "
            "offsets (the transaction's partitions and offsets registered with the "
            "coordinator), commit (the outputs acknowledged and the transaction ended)",
            ["phase"],
            buckets=CYCLE_BUCKETS,
            registry=r,
        )
        for phase in CYCLE_PHASES:
            self.cycle_seconds.labels(phase)  # exported at 0 from the start
        self.assigned = Gauge(
            "referrals_assigned_partitions", "Input partitions (tasks) owned", registry=r
        )
        self.lag = Gauge("referrals_consumer_lag", "Records behind the end", ["topic"], registry=r)
        self.global_lag = Gauge(
            "referrals_global_table_lag",
            "Offsets of a global table (programs, shares, profiles) committed and not yet "
            "applied here, summed over its partitions, as of the follower's last fetch",
            ["topic"],
            registry=r,
        )
        self.partition_lag = Gauge(
            "referrals_consumer_partition_lag",
            "Records behind the end, per input partition this instance owns",
            ["topic", "partition"],
            registry=r,
        )
        self.partition_offset = Gauge(
            "referrals_consumer_partition_offset",
            "The next offset to consume, as last committed, per input partition this instance "
            "owns (a partition with lag whose offset does not move is stuck)",
            ["topic", "partition"],
            registry=r,
        )
        self.timers_ran = Gauge(
            "referrals_timers_last_run_timestamp_seconds",
            "When the timers of every task this instance owns last ran and committed (the "
            "oldest task's time; now when it owns none)",
            registry=r,
        )
        self.programs = Gauge("referrals_programs_known", "Program configs loaded", registry=r)
        # Programs are configuration an operator publishes: a small, bounded set of labels.
        self.program_version = Gauge(
            "referrals_program_version",
            "The version of each program's config in force in this service",
            ["program"],
            registry=r,
        )
        self.info = Gauge("referrals_service_info", "Service identity", ["service"], registry=r)
        self.info.labels(self.service).set(1)


@dataclass
class Health:
    """Liveness: the processing loop ticked recently. Readiness: start-up finished and nothing
    the service needs is broken.

    A component that cannot work (the broker unreachable, the global-table follower failing, a
    task's timers failing) reports a *problem* under its own name and clears it once it works
    again; readiness is false while any problem stands. Each change is logged once (the state
    change, not every retry), and the open problems are shown on /healthz and /readyz.
    """

    stale_after_s: float = 60.0
    ready: bool = False
    last_tick: float = field(default_factory=time.monotonic)
    detail: dict[str, object] = field(default_factory=dict)
    problems: dict[str, str] = field(default_factory=dict)

    def tick(self) -> None:
        self.last_tick = time.monotonic()

    def alive(self) -> bool:
        return time.monotonic() - self.last_tick < self.stale_after_s

    def is_ready(self) -> bool:
        return self.ready and not self.problems and self.alive()

    def problem(self, name: str, text: str) -> bool:
        """Reports that `name` cannot work; logs only when this is news. True if it was."""
        new = name not in self.problems
        self.problems[name] = text[:500]
        if new:
            log.warning("not ready: %s", name, extra={"problem": name, "error": text[:500]})
        return new

    def resolved(self, name: str) -> bool:
        """`name` works again; logs only when it had been reported. True if it had."""
        if self.problems.pop(name, None) is None:
            return False
        log.warning("recovered: %s", name, extra={"problem": name})
        return True


def build_app(registry: CollectorRegistry, health: Health) -> web.Application:
    async def metrics(_: web.Request) -> web.Response:
        body = generate_latest(registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    def _state(check: Callable[[], bool]) -> web.Response:
        ok = check()
        payload = {
            "ok": ok,
            "ready": health.is_ready(),
            "alive": health.alive(),
            "problems": dict(health.problems),
            **health.detail,
        }
        return web.json_response(payload, status=200 if ok else 503)

    async def healthz(_: web.Request) -> web.Response:
        return _state(health.alive)

    async def readyz(_: web.Request) -> web.Response:
        return _state(health.is_ready)

    app = web.Application()
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    return app


class HealthCollector(Collector):
    """Readiness and liveness as gauges (1 or 0), read from `Health` at each scrape, so an
    alert sees what /readyz and /healthz answer."""

    def __init__(self, health: Health) -> None:
        self.health = health

    def collect(self) -> list[Metric]:
        ready = GaugeMetricFamily(
            "referrals_ready", "1 while the process is ready (what /readyz answers), else 0"
        )
        ready.add_metric([], 1.0 if self.health.is_ready() else 0.0)
        alive = GaugeMetricFamily(
            "referrals_alive", "1 while the processing loop ticks (what /healthz answers), else 0"
        )
        alive.add_metric([], 1.0 if self.health.alive() else 0.0)
        problems = GaugeMetricFamily(
            "referrals_health_problems", "Problems keeping the process not ready (see /readyz)"
        )
        problems.add_metric([], float(len(self.health.problems)))
        return [ready, alive, problems]


async def serve(
    registry: CollectorRegistry, health: Health, host: str, port: int
) -> tuple[web.AppRunner, int]:
    """Starts the HTTP server, with `health` exported as gauges on `registry`; returns the
    runner (for cleanup) and the bound port."""
    registry.register(HealthCollector(health))
    runner = web.AppRunner(build_app(registry, health), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    server: Any = site._server  # bound port, useful when port 0 asked for an ephemeral one
    bound = server.sockets[0].getsockname()[1] if server and server.sockets else port
    return runner, int(bound)
