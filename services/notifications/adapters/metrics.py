"""The notifications service's own metrics, on the runtime's registry.

Labels are bounded sets: message kinds, channels, reason codes, outcomes. Never advocate ids,
addresses or URLs.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from referrals.platform.metrics import LATENCY_BUCKETS, Children

# From the trigger's event time to acceptance: normally well under a second; a status produced
# late upstream or a message that waited for a retry shows up in the long tail.
_DELIVERY_BUCKETS = (*LATENCY_BUCKETS, 900.0, 3600.0, 6 * 3600.0, 86400.0)


class NotificationMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = r = registry
        self.sent = Counter(
            "referrals_notifications_sent",
            "Messages accepted by the SMTP server or webhook",
            ["kind", "channel"],
            registry=r,
        )
        self.failures = Counter(
            "referrals_notifications_delivery_failures",
            "Failed delivery attempts (each attempt once; transient ones are retried)",
            ["channel", "reason"],
            registry=r,
        )
        self.dead_lettered = Counter(
            "referrals_notifications_dead_lettered",
            "Deliveries given up on and sent to notifications.sent.v1.dlq",
            ["channel", "reason"],
            registry=r,
        )
        self.retries = Counter(
            "referrals_notifications_retries",
            "Deliveries that failed for now (or were deferred while their destination was down) "
            "and were scheduled to be tried again",
            ["channel"],
            registry=r,
        )
        self.waiting = Gauge(
            "referrals_notifications_waiting_messages",
            "Deliveries (message and channel) waiting in the task stores for their next try",
            registry=r,
        )
        self.destinations_down = Gauge(
            "referrals_notifications_destinations_down",
            "SMTP relays or webhook hosts currently down (probed one message at a time)",
            ["channel"],
            registry=r,
        )
        self.resends = Counter(
            "referrals_notifications_resends",
            "Deliveries started again after a restart or task move (same notification_id)",
            ["channel"],
            registry=r,
        )
        self.suppressed = Counter(
            "referrals_notifications_suppressed",
            "Messages not sent, by reason (OPTED_OUT, RATE_LIMITED, STALE, DUPLICATE, ...)",
            ["reason"],
            registry=r,
        )
        self.erasures = Counter(
            "referrals_notifications_erasures",
            "Advocates erased (tombstones on the advocates topic, repeats included); the "
            "messages cancelled or dropped are counted as suppressed ADVOCATE_ERASED",
            registry=r,
        )
        self.latency = Histogram(
            "referrals_notifications_delivery_latency_seconds",
            "From the trigger's event time (or a nurture step's due time) to acceptance, by "
            "channel and message kind (kind WON: a deal won to its thank-you accepted)",
            ["channel", "kind"],
            buckets=_DELIVERY_BUCKETS,
            registry=r,
        )
        self.in_flight = Gauge(
            "referrals_notifications_in_flight", "Delivery attempts in progress", registry=r
        )
        self.timers = Gauge(
            "referrals_notifications_timers", "Advocates with a scheduled wake-up", registry=r
        )
        self.parked = Gauge(
            "referrals_notifications_parked",
            "Records waiting for their program's config",
            registry=r,
        )
        self.unsubscribes = Counter(
            "referrals_notifications_unsubscribe_requests",
            "Unsubscribe link requests by outcome (accepted, invalid, failed)",
            ["outcome"],
            registry=r,
        )
        # Children of the per-message metrics, looked up once.
        self.sent_by = Children(self.sent)
        self.latency_by = Children(self.latency)
