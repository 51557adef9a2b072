"""The Grafana dashboards are generated (`referrals.tools.dashboards`) and committed: the files
on disk are what the code writes, every panel queries the provisioned Prometheus, and the
pipeline, money and per-service dashboards are all there. (That every metric they query is
exported by the running services is tests/integration/test_metrics_coverage.py's job.)"""

from __future__ import annotations

import json
from typing import Any

from referrals.tools.dashboards import DATASOURCE, OUT, REGENERATE, SERVICES, rendered


def _load() -> dict[str, dict[str, Any]]:
    return {p.name: json.loads(p.read_text(encoding="utf-8")) for p in OUT.glob("*.json")}


def test_the_committed_dashboards_are_the_ones_the_code_generates() -> None:
    expected = rendered()
    on_disk = {p.name: p.read_text(encoding="utf-8") for p in OUT.glob("*.json")}
    assert sorted(on_disk) == sorted(expected), f"regenerate them: {REGENERATE}"
    for name, text in expected.items():
        assert on_disk[name] == text, f"{name} is stale; regenerate it: {REGENERATE}"


def test_there_is_a_pipeline_a_money_and_one_dashboard_per_service() -> None:
    uids = {d["uid"] for d in _load().values()}
    assert uids == {"referrals-pipeline", "referrals-money"} | {f"referrals-{s}" for s in SERVICES}


def test_every_panel_queries_prometheus_and_fits_the_grid_without_overlapping() -> None:
    for name, dashboard in _load().items():
        ids = [p["id"] for p in dashboard["panels"]]
        assert len(ids) == len(set(ids)), name
        taken: set[tuple[int, int]] = set()
        for panel in dashboard["panels"]:
            grid = panel["gridPos"]
            assert grid["x"] + grid["w"] <= 24, (name, panel["title"])
            cells = {
                (x, y)
                for x in range(grid["x"], grid["x"] + grid["w"])
                for y in range(grid["y"], grid["y"] + grid["h"])
            }
            assert not cells & taken, (name, panel["title"])
            taken |= cells
            if panel["type"] == "row":
                continue
            assert panel["datasource"] == DATASOURCE and panel["targets"], (name, panel["title"])
            for target in panel["targets"]:
                assert target["expr"].strip() and target["datasource"] == DATASOURCE


def test_the_money_dashboard_shows_each_movement_by_currency() -> None:
    money = _load()["money.json"]
    exprs = " ".join(t["expr"] for p in money["panels"] for t in p.get("targets", []))
    for metric in (
        "rewards_payouts_issued_amount_minor_total",
        "rewards_payouts_paid_amount_minor_total",
        "rewards_payouts_failed_amount_minor_total",
        "rewards_on_hold_amount_minor",
        'rewards_v2_commands_issued_amount_minor_total{kind="CLAWBACK"',
    ):
        assert metric in exprs, metric
    assert [v["name"] for v in money["templating"]["list"]] == ["currency"]
