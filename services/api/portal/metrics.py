"""The portal's metrics, registered in the API's registry."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from referrals.platform.metrics import LATENCY_BUCKETS

# From a status's event time: a status produced late upstream (a backfill) shows hours or days.
STATUS_LATENCY_BUCKETS = (*LATENCY_BUCKETS, 3600.0, 86400.0)


class PortalMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.lag = Gauge(
            "referrals_portal_lag_records",
            "Records on the followed topics the portal's read model has not applied yet",
            registry=registry,
        )
        self.applied = Counter(
            "referrals_portal_records_applied",
            "Records applied to the portal's read model",
            ["topic"],
            registry=registry,
        )
        self.skipped = Counter(
            "referrals_portal_records_skipped",
            "Records the portal skipped as bad input (the services dead-letter them)",
            ["topic"],
            registry=registry,
        )
        self.watchers = Gauge(
            "referrals_portal_watchers", "Open WatchReferrals streams", registry=registry
        )
        self.status_latency = Histogram(
            "referrals_portal_status_latency_seconds",
            "From a status change's occurred_at (the event that caused it) to the portal's read "
            "model applying it (not observed while the portal catches up at start-up)",
            buckets=STATUS_LATENCY_BUCKETS,
            registry=registry,
        )
