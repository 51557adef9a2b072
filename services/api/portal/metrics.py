"""The portal's metrics, registered in the API's registry."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge


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
