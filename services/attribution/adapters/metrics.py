"""Attribution's own metrics, beside the runtime's (`referrals_*`: records in and out, dead
letters by topic and reason, transactions, lag).

Labels are bounded sets: topics, channels, matched_by, reasons, kinds, statuses and the core's
counter names; never ids. What a task's transaction decides is tallied in a `Staged`, an
after-commit effect (`referrals.streams.effects`): applied only when the transaction commits,
so one that aborts and is replayed is not counted twice; the latency histogram observes from
the triggering event's occurred_at to that commit.
"""

from __future__ import annotations

from collections import Counter as Tally
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from referrals.contract.records import ReferralStatusChanged
from referrals.platform.metrics import LATENCY_BUCKETS
from services.attribution.domain.state import to_ms

NO_CHANNEL = "none"
# Core counter name -> (metric, label value). Names not listed go to attribution_core_events.
_MATCHED = {"matched_code": "CODE", "matched_email": "EMAIL", "matched_declared": "DECLARED"}
_REJECTED = {
    "rejected_self_referral": "SELF_REFERRAL",
    "rejected_already_referred": "ALREADY_REFERRED",
    "rejected_outside_window": "OUTSIDE_WINDOW",
    "rejected_program_ended": "PROGRAM_ENDED",
    "rejected_advocate_erased": "ADVOCATE_ERASED",
}
_DROPPED = {
    "conversions_unmatched_dropped": "conversion",
    "declared_unmatched_dropped": "declared",
    "deals_unmatched_dropped": "deal",
}
# Latencies from event time: a late share or a backfill legitimately shows hours or days.
STATUS_LATENCY_BUCKETS = (*LATENCY_BUCKETS, 3600.0, 86400.0)


class AttributionMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        r = registry
        self.records_in = Counter(
            "attribution_records_in",
            "Input and global records attribution handled, by topic and (shares) channel",
            ["topic", "channel"],
            registry=r,
        )
        self.matches = Counter(
            "attribution_matches", "Referrals credited (LEAD), by how", ["matched_by"], registry=r
        )
        self.rejections = Counter(
            "attribution_rejections", "REJECTED statuses, by reason", ["reason"], registry=r
        )
        self.statuses = Counter(
            "attribution_statuses", "Status records produced, by status", ["status"], registry=r
        )
        self.waiting = Gauge(
            "attribution_unmatched_waiting",
            "Conversions and deals waiting for a match (share, profile or claim)",
            ["kind"],
            registry=r,
        )
        self.dropped = Counter(
            "attribution_unmatched_dropped",
            "Waiting events dropped unmatched at the end of their window, by kind",
            ["kind"],
            registry=r,
        )
        self.core = Counter(
            "attribution_core_events", "Other outcomes the core counts", ["event"], registry=r
        )
        self.erasures = Counter(
            "attribution_erasures",
            "Advocates erased (tombstones on the advocates topic, repeats included)",
            registry=r,
        )
        self.wakeups = Counter(
            "attribution_wakeups",
            "Waiting referrals decided again because a share or profile they need arrived",
            registry=r,
        )
        self.parked = Gauge(
            "attribution_parked_events",
            "Events waiting for their program's config (UNKNOWN_PROGRAM after the wait)",
            registry=r,
        )
        self.duplicate_shares = Counter(
            "attribution_duplicate_shares", "Shares whose event_id was already indexed", registry=r
        )
        self.latency = Histogram(
            "attribution_status_latency_seconds",
            "From the triggering event's occurred_at to its status being committed",
            buckets=STATUS_LATENCY_BUCKETS,
            registry=r,
        )


@dataclass
class Staged:
    """One transaction's metric updates, tallied; calling it (after the commit) applies them."""

    metrics: AttributionMetrics
    wall: Callable[[], float]  # epoch seconds, for the latency up to the commit
    counts: Tally[tuple[str, str]] = field(default_factory=Tally)
    occurred_ms: list[int] = field(default_factory=list)

    def record_in(self, topic: str, channel: str = NO_CHANNEL) -> None:
        self.counts["in", f"{topic}\x00{channel}"] += 1

    def wakeups(self, n: int) -> None:
        if n:
            self.counts["wakeups", ""] += n

    def step(self, counters: Mapping[str, int], outputs: Iterable[ReferralStatusChanged]) -> None:
        for name, n in counters.items():
            self.counts[_metric_of(name)] += n
        for status in outputs:
            self.counts["status", status.status.value] += 1
            self.occurred_ms.append(to_ms(status.occurred_at))

    def __call__(self) -> None:
        self.apply(self.metrics, self.wall())

    def apply(self, metrics: AttributionMetrics, now_s: float) -> None:
        for (metric, label), n in self.counts.items():
            _counter(metrics, metric, label).inc(n)
        for occurred_ms in self.occurred_ms:
            metrics.latency.observe(max(0.0, now_s - occurred_ms / 1000))
        self.counts.clear()
        self.occurred_ms.clear()


def _metric_of(name: str) -> tuple[str, str]:
    if name in _MATCHED:
        return "matches", _MATCHED[name]
    if name in _REJECTED:
        return "rejections", _REJECTED[name]
    if name in _DROPPED:
        return "dropped", _DROPPED[name]
    return "core", name


def _counter(metrics: AttributionMetrics, metric: str, label: str) -> Counter:
    if metric == "in":
        topic, channel = label.split("\x00")
        return metrics.records_in.labels(topic, channel)
    if metric == "wakeups":
        return metrics.wakeups
    by_name: dict[str, Counter] = {
        "matches": metrics.matches,
        "rejections": metrics.rejections,
        "dropped": metrics.dropped,
        "core": metrics.core,
        "status": metrics.statuses,
    }
    return by_name[metric].labels(label)
