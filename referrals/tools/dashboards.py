"""The Grafana dashboards, written as code: `python -m referrals.tools.dashboards` (`make
dashboards`) writes deploy/grafana/dashboards/*.json, which docker-compose provisions into
Grafana's *Referrals* folder. A unit test fails when the committed files are stale, and an
integration test checks that every metric a panel queries is exported by the running services.

- *Pipeline overview*: health, rates, lag, latency percentiles end to end, dead letters;
- *Money*: issued, paid, failed, on hold and clawed back, by currency (minor units: exact, and
  a currency's minor unit is its own), holds by reason and age, the payout objective;
- one per service (attribution, rewards, notifications, API): its runtime and its own figures.
Panels tell services apart by `job` (deploy/prometheus/prometheus.yml names the jobs after them).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / "deploy" / "grafana" / "dashboards"
REGENERATE = "python -m referrals.tools.dashboards (make dashboards)"
DATASOURCE = {"type": "prometheus", "uid": "prometheus"}  # provisioned with this uid
RATE = "$__rate_interval"
STAT_WIDTH = 4
SERVICES = ("attribution", "rewards", "notifications", "api")


@dataclass(frozen=True)
class Query:
    expr: str
    legend: str = ""


@dataclass(frozen=True)
class Panel:
    title: str
    queries: tuple[Query, ...]
    unit: str = "short"
    description: str = ""
    stat: bool = False  # a single figure (the last value) rather than a graph
    width: int = 12
    stack: bool = False


Row = tuple[str, Sequence[Panel]]


def panel(title: str, *queries: Query | str, **options: Any) -> Panel:
    found = tuple(q if isinstance(q, Query) else Query(q) for q in queries)
    return Panel(title, found, **options)


def stat(title: str, *queries: Query | str, **options: Any) -> Panel:
    return panel(title, *queries, stat=True, width=options.pop("width", STAT_WIDTH), **options)


def sel(*matchers: str) -> str:
    """A label selector from matchers (`job="x"`, ...), or nothing."""
    found = [m for m in matchers if m]
    return "{" + ", ".join(found) + "}" if found else ""


def agg(
    fn: str, metric: str, where: str = "", by: str = "", legend: str | None = None, **kw: str
) -> Query:
    """`sum [by (labels)] (fn(metric{where}[window]))`; fn "" sums the gauge itself. The legend
    names the grouping labels unless given; `window` defaults to Grafana's rate interval,
    `op` is `sum` unless given, `scale` is appended (e.g. ` * 3600`)."""
    window = kw.get("window", RATE)
    inner = f"{fn}({metric}{where}[{window}])" if fn else f"{metric}{where}"
    grouping = f" by ({by})" if by else ""
    if legend is None:
        legend = " ".join("{{" + label.strip() + "}}" for label in by.split(",")) if by else ""
    return Query(f"{kw.get('op', 'sum')}{grouping} ({inner}){kw.get('scale', '')}", legend)


def quantiles(
    metric: str, where: str, by: str = "", qs: Iterable[float] = (0.5, 0.95, 0.99)
) -> tuple[Query, ...]:
    """p50/p95/p99 of a histogram (grouped `by` those labels too, if any)."""
    group = f"le, {by}" if by else "le"
    prefix = "{{" + by + "}} " if by else ""
    return tuple(
        Query(
            f"histogram_quantile({q}, sum by ({group}) (rate({metric}_bucket{where}[{RATE}])))",
            f"{prefix}p{round(q * 100)}",
        )
        for q in qs
    )


def of(job: str) -> str:
    """The matchers of one service's dashboard: its job and the instances picked."""
    return f'job="{job}", instance=~"$instance"'


# -- the runtime every service has -------------------------------------------------------------
def runtime_rows(job: str) -> list[Row]:
    on = sel(of(job))
    return [
        (
            "Health",
            [
                stat("Ready instances", f"sum(referrals_ready{on})"),
                stat("Instances not ready", f"count(referrals_ready{on} == 0) or vector(0)"),
                stat("Partitions owned", f"sum(referrals_assigned_partitions{on})"),
                stat("Programs known", f"max(referrals_programs_known{on})"),
                stat(
                    "Timers last ran",
                    f"max(time() - referrals_timers_last_run_timestamp_seconds{on})",
                    unit="s",
                    description="The oldest owned task's timers: over 300 s alerts",
                ),
                stat("Open problems", f"sum(referrals_health_problems{on})", description="/readyz"),
            ],
        ),
        (
            "Throughput and lag",
            [
                panel(
                    "Records in, by topic",
                    agg("rate", "referrals_records_in_total", on, "topic"),
                    unit="ops",
                ),
                panel(
                    "Records out, by topic",
                    agg("rate", "referrals_records_out_total", on, "topic"),
                    unit="ops",
                ),
                panel(
                    "Lag, by partition",
                    agg("", "referrals_consumer_partition_lag", on, "topic, partition", op="max"),
                    description="Records behind the end, per input partition",
                ),
                panel(
                    "Dead letters, by topic and reason",
                    agg("increase", "referrals_dead_letters_total", on, "topic, reason"),
                    stack=True,
                ),
                panel(
                    "Global tables behind, by topic",
                    agg("", "referrals_global_table_lag", on, "topic", op="max"),
                    description="Offsets of programs (attribution: shares, profiles too) "
                    "committed and not yet applied; attribution lets nothing expire meanwhile",
                ),
            ],
        ),
        (
            "Transactions",
            [
                panel(
                    "Transactions, by outcome",
                    agg("rate", "referrals_transactions_total", on, "outcome"),
                    unit="ops",
                ),
                panel(
                    "Commit time", *quantiles("referrals_transaction_commit_seconds", on), unit="s"
                ),
                panel(
                    "Records per transaction",
                    *quantiles("referrals_batch_records", on, qs=(0.5, 0.99)),
                ),
                panel(
                    "Cycle time p99, by phase",
                    *quantiles("referrals_cycle_seconds", on, "phase", qs=(0.99,)),
                    unit="s",
                    description="Where a committed cycle's time went: queued (its oldest "
                    "record's age when it began), handle, produce, offsets (registered with the "
                    "transaction coordinator), commit. Slow handle under load: CPU; slow offsets "
                    "and commit in every service at once: the broker",
                ),
                panel(
                    "Program versions in force",
                    agg("", "referrals_program_version", on, "program", op="max"),
                ),
            ],
        ),
        (
            "Pauses",
            [
                panel(
                    "Event loop lag (every await waits this long)",
                    *quantiles("referrals_event_loop_lag_seconds", on, qs=(0.5, 0.99)),
                    unit="s",
                ),
                panel(
                    "Garbage collector pauses, by generation",
                    agg("rate", "referrals_gc_pause_seconds_sum", on, "generation"),
                    unit="s",
                ),
            ],
        ),
    ]


# -- dashboards ------------------------------------------------------------------------------
def pipeline() -> dict[str, Any]:
    services = sel('job=~"attribution|rewards|notifications|api"')
    not_committed = sel('outcome!="commit"')
    rows: list[Row] = [
        (
            "Health",
            [
                stat("Services up", f"sum(up{services})", width=6),
                stat("Instances ready", f"sum(referrals_ready{services})", width=6),
                stat(
                    "Timers last ran (oldest)",
                    "max(time() - referrals_timers_last_run_timestamp_seconds)",
                    unit="s",
                    width=6,
                ),
                stat(
                    "Dead letters in the range",
                    agg("increase", "referrals_dead_letters_total", window="$__range"),
                    width=6,
                ),
            ],
        ),
        (
            "Rates",
            [
                panel(
                    "Records consumed, by service",
                    agg("rate", "referrals_records_in_total", by="job"),
                    unit="ops",
                ),
                panel(
                    "Records produced, by topic",
                    agg("rate", "referrals_records_out_total", by="topic"),
                    unit="ops",
                ),
                panel(
                    "Statuses, payouts, thank-yous",
                    agg("rate", "attribution_statuses_total", legend="statuses"),
                    agg("rate", "rewards_payouts_issued_total", legend="payouts"),
                    agg(
                        "rate",
                        "referrals_notifications_sent_total",
                        sel('kind="WON"'),
                        legend="thank-yous",
                    ),
                    unit="ops",
                ),
                panel(
                    "Transactions not committed, by service and outcome",
                    agg("increase", "referrals_transactions_total", not_committed, "job, outcome"),
                    stack=True,
                ),
            ],
        ),
        (
            "Lag",
            [
                panel(
                    "Lag, by service and topic", agg("", "referrals_consumer_lag", by="job, topic")
                ),
                panel(
                    "Lag, the 10 partitions furthest behind",
                    Query(
                        "topk(10, max by (job, topic, partition) "
                        "(referrals_consumer_partition_lag))",
                        "{{job}} {{topic}}/{{partition}}",
                    ),
                ),
                panel(
                    "Portal behind (records)",
                    agg("", "referrals_portal_lag_records", by="instance"),
                ),
            ],
        ),
        (
            "Latency from the event's time",
            [
                panel(
                    "Event to status committed (attribution)",
                    *quantiles("attribution_status_latency_seconds", ""),
                    unit="s",
                ),
                panel(
                    "WON to payout committed (rewards; from the due time with hold_days)",
                    *quantiles("rewards_payout_latency_seconds", sel('trigger=~"won|timer"')),
                    unit="s",
                ),
                panel(
                    "WON to thank-you accepted (notifications)",
                    *quantiles(
                        "referrals_notifications_delivery_latency_seconds", sel('kind="WON"')
                    ),
                    unit="s",
                ),
                panel(
                    "Status to portal (API)",
                    *quantiles("referrals_portal_status_latency_seconds", ""),
                    unit="s",
                ),
            ],
        ),
        (
            "Dead letters",
            [
                panel(
                    "Dead letters, by service, topic and reason",
                    agg("increase", "referrals_dead_letters_total", by="job, topic, reason"),
                    stack=True,
                    width=24,
                ),
            ],
        ),
    ]
    return dashboard(
        "referrals-pipeline",
        "Referrals: pipeline overview",
        "Every service at once: health, rates, lag, end-to-end latency, dead letters.",
        rows,
    )


ISSUED = "rewards_payouts_issued_amount_minor_total"
MOVED = "rewards_v2_commands_issued_amount_minor_total"
PAID = "rewards_payouts_paid_amount_minor_total"
FAILED = "rewards_payouts_failed_amount_minor_total"


def money() -> dict[str, Any]:
    cur = 'currency=~"$currency"'
    friends, clawbacks = 'kind="PAYOUT", recipient="FRIEND"', 'kind="CLAWBACK"'

    def total(metric: str, *matchers: str) -> Query:
        return agg("increase", metric, sel(*matchers, cur), "currency", window="$__range")

    def hourly(metric: str, what: str, *matchers: str) -> Query:
        legend = f"{what} {{{{currency}}}}"
        return agg("rate", metric, sel(*matchers, cur), "currency", legend, scale=" * 3600")

    rows: list[Row] = [
        (
            "In the range (minor units of each currency)",
            [
                stat("Issued to advocates", total(ISSUED)),
                stat("Issued to friends", total(MOVED, friends)),
                stat("Paid", total(PAID)),
                stat("Failed", total(FAILED)),
                stat("Clawed back", total(MOVED, clawbacks)),
                stat("On hold now", agg("", "rewards_on_hold_amount_minor", sel(cur), "currency")),
            ],
        ),
        (
            "Money over time (minor units per hour)",
            [
                panel(
                    "Issued, paid, failed, clawed back",
                    hourly(ISSUED, "issued (advocates)"),
                    hourly(MOVED, "issued (friends)", friends),
                    hourly(PAID, "paid"),
                    hourly(FAILED, "failed"),
                    hourly(MOVED, "clawed back", clawbacks),
                    width=24,
                ),
                panel(
                    "Payouts issued, by reward type",
                    agg(
                        "increase",
                        "rewards_payouts_issued_total",
                        sel(cur),
                        "currency, reward_type",
                    ),
                    stack=True,
                ),
                panel(
                    "Results applied, by recipient",
                    agg(
                        "increase",
                        "rewards_payouts_paid_total",
                        sel(cur),
                        "currency, recipient",
                        "paid {{currency}} {{recipient}}",
                    ),
                    agg(
                        "increase",
                        "rewards_payouts_failed_total",
                        sel(cur),
                        "currency, recipient",
                        "failed {{currency}} {{recipient}}",
                    ),
                ),
            ],
        ),
        (
            "Holds",
            [
                panel(
                    "On hold now, by reason",
                    agg("", "rewards_on_hold", sel(cur), "reason, currency"),
                    stack=True,
                ),
                panel(
                    "Oldest hold, by reason",
                    Query(
                        "time() - min by (reason) (rewards_on_hold_oldest_timestamp_seconds)",
                        "{{reason}}",
                    ),
                    unit="s",
                    description="Review and tax holds older than 3 days alert (RewardHeldTooLong)",
                ),
                panel(
                    "Holds entered, by reason",
                    agg("increase", "rewards_held_total", by="reason"),
                    stack=True,
                ),
                panel(
                    "How long holds lasted (p50, p90), by reason",
                    *quantiles("rewards_hold_duration_seconds", "", by="reason", qs=(0.5, 0.9)),
                    unit="s",
                ),
            ],
        ),
        (
            "The payout objective: 99% within 10 s of being due",
            [
                panel(
                    "Payout latency, by trigger (p99)",
                    *quantiles("rewards_payout_latency_seconds", "", by="trigger", qs=(0.99,)),
                    unit="s",
                ),
                panel(
                    "Share of payouts over 10 s (the budget is 1%)",
                    Query("referrals:payout_latency_over_10s:ratio_rate5m", "5m"),
                    Query("referrals:payout_latency_over_10s:ratio_rate1h", "1h"),
                    Query("referrals:payout_latency_over_10s:ratio_rate6h", "6h"),
                    unit="percentunit",
                ),
                panel(
                    "Operator commands",
                    agg(
                        "increase",
                        "rewards_commands_applied_total",
                        by="action",
                        legend="applied {{action}}",
                    ),
                    agg(
                        "increase",
                        "rewards_commands_refused_total",
                        by="action, reason",
                        legend="refused {{action}} {{reason}}",
                    ),
                    width=24,
                ),
            ],
        ),
    ]
    currency = variable("currency", "label_values(rewards_payouts_issued_total, currency)")
    return dashboard(
        "referrals-money",
        "Referrals: money",
        "What finance asks: issued, paid, failed, held and clawed back, by currency.",
        rows,
        [currency],
    )


def attribution() -> dict[str, Any]:
    on = sel(of("attribution"))
    shares = sel(of("attribution"), 'topic="referral.shares.v1"')
    rekeyed = sel(of("attribution"), 'topic="attribution.deals-by-prospect.v1"')
    own: list[Row] = [
        (
            "Attribution",
            [
                panel(
                    "Referrals credited, by how",
                    agg("increase", "attribution_matches_total", on, "matched_by"),
                    stack=True,
                ),
                panel(
                    "Rejections, by reason",
                    agg("increase", "attribution_rejections_total", on, "reason"),
                    stack=True,
                ),
                panel(
                    "Statuses produced, by status",
                    agg("rate", "attribution_statuses_total", on, "status"),
                    unit="ops",
                ),
                panel(
                    "Shares, by channel",
                    agg("rate", "attribution_records_in_total", shares, "channel"),
                    unit="ops",
                ),
                panel(
                    "Waiting for a match, for their program, dropped",
                    agg("", "attribution_unmatched_waiting", on, "kind", "waiting {{kind}}"),
                    agg("", "attribution_parked_events", on, legend="waiting for their program"),
                    agg(
                        "increase",
                        "attribution_unmatched_dropped_total",
                        on,
                        "kind",
                        "dropped {{kind}}",
                    ),
                ),
                panel(
                    "Event to status committed",
                    *quantiles("attribution_status_latency_seconds", on),
                    unit="s",
                ),
                panel(
                    "Deals re-keyed by prospect: handed to their task, written to the topic",
                    agg("rate", "referrals_records_handed_over_total", rekeyed, legend="handed"),
                    Query(
                        f"sum (rate(referrals_records_out_total{rekeyed}[{RATE}])) - "
                        f"sum (rate(referrals_records_handed_over_total{rekeyed}[{RATE}]))",
                        "written",
                    ),
                    unit="ops",
                    stack=True,
                ),
            ],
        )
    ]
    return service_dashboard("attribution", "Attribution: who referred whom.", own)


def rewards() -> dict[str, Any]:
    on = sel(of("rewards"))
    own: list[Row] = [
        (
            "Rewards",
            [
                panel(
                    "Payouts issued, by currency and type",
                    agg("rate", "rewards_payouts_issued_total", on, "currency, reward_type"),
                    unit="ops",
                ),
                panel(
                    "Friends' rewards and clawbacks",
                    agg(
                        "rate", "rewards_v2_commands_issued_total", on, "kind, recipient, currency"
                    ),
                    unit="ops",
                ),
                panel(
                    "WON to payout committed, by trigger (p99)",
                    *quantiles("rewards_payout_latency_seconds", on, by="trigger", qs=(0.99,)),
                    unit="s",
                ),
                panel(
                    "Forwarded records handed to their task, by topic",
                    agg("rate", "referrals_records_handed_over_total", on, "topic"),
                    unit="ops",
                ),
                panel(
                    "Waiting: releases due later, inputs parked",
                    agg("", "rewards_pending_releases", on, legend="advocates with a release due"),
                    agg("", "rewards_inputs_waiting", on, "kind", "waiting for {{kind}}"),
                ),
                panel(
                    "On hold now, by reason", agg("", "rewards_on_hold", on, "reason"), stack=True
                ),
                panel(
                    "Results and statuses ignored",
                    agg(
                        "increase",
                        "rewards_results_ignored_total",
                        on,
                        "outcome",
                        "result {{outcome}}",
                    ),
                    agg(
                        "increase",
                        "rewards_statuses_ignored_total",
                        on,
                        "outcome",
                        "status {{outcome}}",
                    ),
                ),
                panel(
                    "Payouts failed (PAYOUT_FAILED)",
                    agg("increase", "rewards_payout_failures_total", on, legend="failed"),
                ),
                panel(
                    "Operator commands",
                    agg(
                        "increase",
                        "rewards_commands_applied_total",
                        on,
                        "action",
                        "applied {{action}}",
                    ),
                    agg(
                        "increase",
                        "rewards_commands_refused_total",
                        on,
                        "action, reason",
                        "refused {{action}} {{reason}}",
                    ),
                ),
            ],
        )
    ]
    return service_dashboard("rewards", "Rewards: tiers, holds, payouts exactly once.", own)


def notifications() -> dict[str, Any]:
    on = sel(of("notifications"))
    prefix = "referrals_notifications"
    own: list[Row] = [
        (
            "Notifications",
            [
                panel(
                    "Accepted, by kind and channel",
                    agg("rate", f"{prefix}_sent_total", on, "kind, channel"),
                    unit="ops",
                ),
                panel(
                    "Trigger to accepted, by kind (p99)",
                    *quantiles(f"{prefix}_delivery_latency_seconds", on, by="kind", qs=(0.99,)),
                    unit="s",
                ),
                panel(
                    "Failed attempts, by channel and reason",
                    agg("increase", f"{prefix}_delivery_failures_total", on, "channel, reason"),
                    stack=True,
                ),
                panel(
                    "Given up (dead-lettered), by reason",
                    agg("increase", f"{prefix}_dead_lettered_total", on, "channel, reason"),
                    stack=True,
                ),
                panel(
                    "Waiting for a retry, destinations down, in flight",
                    agg("", f"{prefix}_waiting_messages", on, legend="waiting"),
                    agg("", f"{prefix}_destinations_down", on, "channel", "down {{channel}}"),
                    agg("", f"{prefix}_in_flight", on, legend="in flight"),
                ),
                panel(
                    "Not sent, by reason",
                    agg("increase", f"{prefix}_suppressed_total", on, "reason"),
                    stack=True,
                ),
            ],
        )
    ]
    return service_dashboard("notifications", "Notifications: thank-yous and nurture.", own)


def api() -> dict[str, Any]:
    on = sel(of("api"))
    failing = sel(of("api"), f'code=~"{SERVER_ERRORS}"')
    ratio = (
        f"sum(rate(referrals_api_calls_total{failing}[{RATE}])) "
        f"/ sum(rate(referrals_api_calls_total{on}[{RATE}]))"
    )
    rows: list[Row] = [
        (
            "Health",
            [
                stat("Ready instances", f"sum(referrals_ready{on})", width=6),
                stat("Open problems", f"sum(referrals_health_problems{on})", width=6),
                stat("Portal behind (records)", f"max(referrals_portal_lag_records{on})", width=6),
                stat("Open watch streams", f"sum(referrals_portal_watchers{on})", width=6),
            ],
        ),
        (
            "Calls",
            [
                panel(
                    "Calls, by method and code",
                    agg("rate", "referrals_api_calls_total", on, "method, code"),
                    unit="ops",
                ),
                panel(
                    "Server errors (ratio; over 5% for 10 minutes alerts)",
                    Query(ratio, "server errors"),
                    unit="percentunit",
                ),
                panel(
                    "Call time, by method (p99)",
                    *quantiles("referrals_api_call_seconds", on, by="method", qs=(0.99,)),
                    unit="s",
                ),
                panel(
                    "Status to portal",
                    *quantiles("referrals_portal_status_latency_seconds", on),
                    unit="s",
                ),
                panel(
                    "Portal records applied and skipped, by topic",
                    agg(
                        "rate",
                        "referrals_portal_records_applied_total",
                        on,
                        "topic",
                        "applied {{topic}}",
                    ),
                    agg(
                        "rate",
                        "referrals_portal_records_skipped_total",
                        on,
                        "topic",
                        "skipped {{topic}}",
                    ),
                    unit="ops",
                    width=24,
                ),
            ],
        ),
    ]
    return dashboard(
        "referrals-api",
        "Referrals: API",
        "The gRPC API and the advocate portal's read model.",
        rows,
        [instance_variable("api")],
    )


SERVER_ERRORS = "INTERNAL|UNKNOWN|UNAVAILABLE|DEADLINE_EXCEEDED|DATA_LOSS|RESOURCE_EXHAUSTED"


def service_dashboard(job: str, description: str, own: list[Row]) -> dict[str, Any]:
    return dashboard(
        f"referrals-{job}",
        f"Referrals: {job}",
        description,
        [*runtime_rows(job), *own],
        [instance_variable(job)],
    )


# -- the JSON model ---------------------------------------------------------------------------
def variable(name: str, query: str, *, multi: bool = True) -> dict[str, Any]:
    return {
        "name": name,
        "label": name,
        "type": "query",
        "datasource": DATASOURCE,
        "query": {"query": query, "refId": f"{name}-values"},
        "definition": query,
        "refresh": 2,
        "includeAll": True,
        "multi": multi,
        "current": {"selected": True, "text": ["All"], "value": ["$__all"]},
        "sort": 1,
    }


def instance_variable(job: str) -> dict[str, Any]:
    return variable("instance", f'label_values(referrals_ready{{job="{job}"}}, instance)')


def dashboard(
    uid: str,
    title: str,
    description: str,
    rows: Sequence[Row],
    variables: Sequence[dict[str, Any]] = (),
) -> dict[str, Any]:
    panels: list[dict[str, Any]] = []
    y = 0
    for row_title, row in rows:
        panels.append(
            {
                "type": "row",
                "title": row_title,
                "id": len(panels) + 1,
                "collapsed": False,
                "gridPos": {"h": 1, "w": 24, "x": 0, "y": y},
                "panels": [],
            }
        )
        y += 1
        x, height = 0, 0  # left to right, a new line when the next panel does not fit
        for item in row:
            if x + item.width > 24:
                x, y, height = 0, y + height, 0
            h = 4 if item.stat else 8
            panels.append(_panel(item, len(panels) + 1, {"h": h, "w": item.width, "x": x, "y": y}))
            x, height = x + item.width, max(height, h)
        y += height
    return {
        "uid": uid,
        "title": title,
        "description": description,
        "tags": ["referrals"],
        "editable": True,
        "graphTooltip": 1,
        "refresh": "30s",
        "schemaVersion": 39,
        "version": 1,
        "time": {"from": "now-6h", "to": "now"},
        "timepicker": {},
        "timezone": "",
        "annotations": {"list": []},
        "links": [
            {
                "title": "Referrals",
                "type": "dashboards",
                "tags": ["referrals"],
                "asDropdown": True,
                "includeVars": False,
                "keepTime": True,
            }
        ],
        "templating": {"list": list(variables)},
        "panels": panels,
    }


def _panel(item: Panel, panel_id: int, grid: dict[str, int]) -> dict[str, Any]:
    targets = [
        {
            "datasource": DATASOURCE,
            "expr": query.expr,
            "legendFormat": query.legend or "__auto",
            "refId": chr(ord("A") + n),
            **({"instant": True} if item.stat else {"range": True}),
        }
        for n, query in enumerate(item.queries)
    ]
    custom: dict[str, Any] = {}
    if not item.stat:
        custom = {
            "drawStyle": "line",
            "lineWidth": 1,
            "fillOpacity": 20 if item.stack else 0,
            "showPoints": "never",
            "stacking": {"mode": "normal" if item.stack else "none", "group": "A"},
        }
    out: dict[str, Any] = {
        "type": "stat" if item.stat else "timeseries",
        "title": item.title,
        "id": panel_id,
        "datasource": DATASOURCE,
        "gridPos": grid,
        "targets": targets,
        "fieldConfig": {"defaults": {"unit": item.unit, "custom": custom}, "overrides": []},
        "options": (
            {"reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False}}
            if item.stat
            else {"legend": {"displayMode": "list", "placement": "bottom", "showLegend": True}}
        ),
    }
    if item.description:
        out["description"] = item.description
    return out


DASHBOARDS = {
    "pipeline-overview": pipeline,
    "money": money,
    "attribution": attribution,
    "rewards": rewards,
    "notifications": notifications,
    "api": api,
}


def rendered() -> dict[str, str]:
    """File name -> the JSON text a dashboard is committed as."""
    return {
        f"{name}.json": json.dumps(build(), indent=2, sort_keys=True) + "\n"
        for name, build in DASHBOARDS.items()
    }


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    for name, text in rendered().items():
        (OUT / name).write_text(text, encoding="utf-8")
        sys.stdout.write(f"wrote {OUT / name}\n")


if __name__ == "__main__":
    main()
