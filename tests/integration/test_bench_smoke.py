"""`make bench` in its smoke form, so the suite cannot rot: the limit's two chains, our runtime
on the peers' step and the report, on a few dozen records against the session broker.

It checks what the suite writes and that every output was counted (outputs equal inputs, each
payout exactly once), never how fast: the figures at this scale mean nothing. The other peers
(faust-streaming, Quix Streams) and Kafka's perf tools are `make bench`'s (bench extras)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from referrals.platform.settings import KafkaSettings

from ..conftest import REPO

pytestmark = pytest.mark.broker


def _run(script: str, results: Path, bootstrap: str, *args: str) -> None:
    env = {
        **os.environ,
        "BENCH_SCALE": "smoke",
        "BENCH_RESULTS": str(results),
        "BENCH_BOOTSTRAP": bootstrap,
        "PYTHONPATH": str(REPO),
    }
    done = subprocess.run(
        [sys.executable, str(REPO / "bench" / script), *args],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, f"{script} failed:\n{done.stdout}\n{done.stderr}"


def test_bench_smoke_writes_figures_and_counts_every_output(
    kafka: KafkaSettings, tmp_path: Path
) -> None:
    bootstrap = kafka.bootstrap_servers
    _run("limit.py", tmp_path, bootstrap, "--records", "60", "--perf-records", "0", "--one-process")
    _run("peers.py", tmp_path, bootstrap, "--records", "60", "--only", "ours")
    _run("report.py", tmp_path, bootstrap)

    limit = json.loads((tmp_path / "limit.json").read_text())
    chains = {f["name"]: f for f in limit["figures"]}
    assert set(chains) == {"chain plain", "chain transactional"}
    for fig in chains.values():
        assert fig["value"] > 0 and fig["unit"] == "events/s"
        assert fig["detail"]["ok"] is True
        assert set(fig["detail"]["outputs"].values()) == {60}  # every output topic, every deal

    peers = json.loads((tmp_path / "peers.json").read_text())
    (ours,) = peers["figures"]
    assert ours["name"] == "ours" and ours["value"] > 0
    detail = ours["detail"]
    assert detail["ok"] is True, ours["note"]
    # 60 WONs over 6 advocates, a payout every 3rd WON: 3 each, each exactly once.
    assert (detail["expected"], detail["outputs"], detail["lost"], detail["doubled"]) == (
        18,
        18,
        0,
        0,
    )

    latest = json.loads((tmp_path / "latest.json").read_text())
    assert {p["part"] for p in latest["parts"]} == {"limit", "peers"}
    assert latest["machine"]["cpus"]
    table = (tmp_path / "latest.md").read_text()
    assert "| chain transactional |" in table and "| ours |" in table
    svg = (tmp_path / "latest.svg").read_text()
    assert svg.startswith("<svg") and "chain transactional" in svg and "ours" in svg
