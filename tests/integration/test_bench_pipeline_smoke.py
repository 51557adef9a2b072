"""`bench/pipeline.py --scale smoke` against the test broker: the pipeline bench runs end to end
(a tiny year, a blast, one offered rate, a small bulk load and a restart), writes its figures,
and every count it measured equals what was sent or what the ground truth owes. Never asserts
on time: the figures only have to be there and positive."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from referrals.platform.settings import KafkaSettings

pytestmark = [pytest.mark.broker, pytest.mark.bench_smoke]

ROOT = Path(__file__).resolve().parents[2]


def test_the_pipeline_bench_measures_what_it_sent(kafka: KafkaSettings, tmp_path: Path) -> None:
    run = subprocess.run(
        [
            *(sys.executable, str(ROOT / "bench" / "pipeline.py"), "--scale", "smoke"),
            *("--bootstrap", kafka.bootstrap_servers, "--results", str(tmp_path)),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    tail = "\n".join((run.stdout + run.stderr).splitlines()[-30:])
    assert run.returncode == 0, tail

    doc = json.loads((tmp_path / "pipeline.json").read_text())
    figures = {f["name"]: f for f in doc["figures"]}
    assert {
        "year mix",
        "year mix: statuses and payouts",
        "CPU-s per 1k referrals",
        "all-WON blast",
        "WON→payout p99 @200/s",
        "WON→SMTP p99 @200/s",
        "peak RSS attribution",
        "peak RSS rewards",
        "peak RSS notifications",
        "peak RSS api",
        "restart to ready @2k advocates rewards",
    } <= set(figures), tail
    assert all(f["value"] > 0 for f in figures.values()), figures

    checks = json.loads((tmp_path / "pipeline-checks.json").read_text())
    year = checks["year"]
    assert year["advocate_payouts"] == year["rewards_owed"], year
    assert year["friend_payouts"] == year["friend_rewards"], year
    assert year["won_without_payout"] == [], year
    assert year["messages"] > 0, year
    blast = checks["blast"]
    assert blast["payouts"] == blast["thank_yous"] == blast["referrals"], blast
    for rate, got in checks["latency"].items():
        assert got["payouts"] == got["thank_yous"] == got["wons"], (rate, got)
    for rate, shares in checks["cpu_pct"].items():  # CPU while the load was offered
        assert {"attribution", "rewards", "notifications", "api", "bench"} <= set(shares), rate
        assert all(pct >= 0 for pct in shares.values()) and shares["attribution"] > 0, shares
    for rate, services in checks["cycle_ms"].items():  # the services' cycles by phase
        for name, phases in services.items():
            assert 0 < phases["handle"][0] <= phases["handle"][1], (rate, name, phases)
            assert 0 < phases["commit"][0] < float("inf"), (rate, name, phases)
