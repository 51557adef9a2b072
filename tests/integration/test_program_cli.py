"""`referrals program validate|put` against the real broker; services follow new versions."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from referrals.contract.topics import PROGRAMS
from referrals.platform.settings import KafkaSettings

from ..conftest import REPO, env_for
from .helpers import run_cli, spawn_service
from .test_service_skeletons import _free_port, _get, _metric, _wait_ready

pytestmark = pytest.mark.broker
EXAMPLE = REPO / "deploy" / "programs" / "acme-b2b.yaml"


def test_validate_accepts_the_examples_and_names_every_problem(
    kafka: KafkaSettings, tmp_path: Path
) -> None:
    for name in ("acme-b2b.yaml", "brightcell-b2c.yaml"):
        ok = run_cli(kafka, "program", "validate", str(REPO / "deploy" / "programs" / name))
        assert ok.returncode == 0, ok.stderr
    bad = tmp_path / "bad-program.yaml"
    bad.write_text(
        "program_id: x\ncurrency: USDX\nrewards:\n  tiers:\n"
        '    - {from_referral: 1, percent: "101", reward_type: GIFT_CARD}\n'
    )
    result = run_cli(kafka, "program", "validate", str(bad))
    assert result.returncode == 1
    assert "currency:" in result.stderr
    assert "rewards.tiers[0].percent:" in result.stderr


def test_put_publishes_increasing_versions_with_defaults_filled_in(topics: KafkaSettings) -> None:
    for expected in (1, 2):
        result = run_cli(topics, "program", "put", str(EXAMPLE), "--by", "marketing")
        assert result.returncode == 0, result.stderr
        assert f"put acme-b2b version {expected}" in result.stdout
    tailed = run_cli(topics, "tail", PROGRAMS, "--from-beginning", "--max", "2", "--timeout", "10")
    configs = [json.loads(line) for line in tailed.stdout.splitlines()]
    assert sorted(c["version"] for c in configs) == [1, 2]
    document = json.loads(configs[0]["document"])
    assert document["attribution"]["window_days"] == 90  # a default, filled in
    assert configs[0]["published_by"] == "marketing"


def test_a_running_service_picks_up_a_new_program_without_a_restart(
    topics: KafkaSettings,
) -> None:
    port = _free_port()
    env = env_for(
        topics,
        ATTRIBUTION_METRICS_PORT=str(port),
        ATTRIBUTION_GROUP_ID=f"{topics.topic_prefix}attribution",
    )
    proc = spawn_service("attribution", env)
    try:
        _wait_ready(port, proc)
        assert _metric(_get(f"http://127.0.0.1:{port}/metrics")[1], "referrals_programs_known") == 0
        assert run_cli(topics, "program", "put", str(EXAMPLE)).returncode == 0
        deadline = time.monotonic() + 20
        known = 0.0
        while time.monotonic() < deadline and known < 1:
            try:
                page = _get(f"http://127.0.0.1:{port}/metrics")[1]
            except TimeoutError:  # one slow scrape on a loaded machine: ask again
                continue
            known = _metric(page, "referrals_programs_known")
            time.sleep(0.2)
        assert known == 1
    finally:
        proc.terminate()
        proc.communicate(timeout=30)
    assert proc.returncode == 0
