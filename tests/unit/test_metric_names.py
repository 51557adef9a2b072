"""Finding the metric names and selectors in PromQL, as the metric-coverage test does for the
alert rules and the dashboards."""

from __future__ import annotations

from tests.metric_names import (
    Matcher,
    metric_names,
    recorded_names,
    selectors,
    used_by_rules_and_dashboards,
)


def test_names_are_found_beside_functions_groupings_matchers_ranges_and_numbers() -> None:
    expr = (
        "histogram_quantile(0.99, sum by (le, trigger) (rate(rewards_payout_latency_seconds_bucket"
        '{trigger=~"won|timer", le="10.0"}[5m]))) > 3 * 86400 and on (job) '
        "delta(referrals_consumer_lag[15m:1m] offset 1h) > bool 1e3 "
        "unless time() - min without (instance) (rewards_on_hold_oldest_timestamp_seconds)"
    )
    assert metric_names(expr) == {
        "rewards_payout_latency_seconds_bucket",
        "referrals_consumer_lag",
        "rewards_on_hold_oldest_timestamp_seconds",
    }


def test_grafana_variables_and_label_values_are_understood() -> None:
    expr = (
        'sum by (currency) (increase(rewards_payouts_paid_total{currency=~"$currency"}'
        "[$__rate_interval])) * 3600 / ${divisor}"
    )
    assert metric_names(expr) == {"rewards_payouts_paid_total"}
    values = 'label_values(referrals_ready{job="rewards"}, instance)'
    assert metric_names(values) == {"referrals_ready"}
    assert metric_names("label_values(rewards_payouts_issued_total, currency)") == {
        "rewards_payouts_issued_total"
    }


def test_recording_rule_names_with_colons_are_names() -> None:
    assert metric_names("referrals:payout_latency_over_10s:ratio_rate5m > (14.4 * 0.01)") == {
        "referrals:payout_latency_over_10s:ratio_rate5m"
    }


def test_selectors_carry_their_matchers() -> None:
    [found] = selectors('sum(rate(x_bucket{kind="WON", le="60.0", code!~"OK|CANCELLED"}[5m]))')
    assert found.metric == "x_bucket"
    assert found.matchers == (
        Matcher("kind", "=", "WON"),
        Matcher("le", "=", "60.0"),
        Matcher("code", "!~", "OK|CANCELLED"),
    )
    regex = Matcher("trigger", "=~", "won|timer")
    assert regex.matches("timer") and not regex.matches("approve")
    assert Matcher("code", "!~", "OK|CANCELLED").matches("INTERNAL")


def test_the_rules_and_dashboards_use_the_services_metrics_not_the_recorded_ones() -> None:
    used = used_by_rules_and_dashboards()
    assert "referrals:payout_latency_over_10s:ratio_rate5m" in recorded_names()
    assert not any(":" in name for name in used)
    assert "up" not in used  # Prometheus makes it
    for name in (
        "referrals_program_version",
        "rewards_v2_commands_issued_total",
        "referrals_portal_lag_records",
        "referrals_api_calls_total",
        "referrals_consumer_partition_lag",
        "rewards_payout_latency_seconds_bucket",
    ):
        assert name in used, name
