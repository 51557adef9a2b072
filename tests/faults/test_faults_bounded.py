"""The fault suite at its bounded scale, as `make test` runs it: every service as separate
processes (two attribution and two rewards instances) on a broker the suite starts itself, about
300 referrals with known payouts, at least 20 SIGKILLs, a zombie, a broker restart, the SMTP
relay down, and the bad-input corpus on every input topic. Nothing is skipped: a part that
cannot start fails the test with the report's findings.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.broker


def test_bounded_fault_run_loses_and_doubles_nothing(tmp_path: Path) -> None:
    out = tmp_path / "faults"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "referrals.tools.cli",
            "faults",
            "--scale",
            "bounded",
            "--out",
            str(out),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    report_file = out / "fault-report.json"
    assert report_file.exists(), proc.stdout[-4000:] + proc.stderr[-4000:]
    report = json.loads(report_file.read_text())
    summary = "\n".join(report["findings"]) + "\n" + proc.stdout[-3000:]

    assert report["error"] == "", summary
    assert report["kills"] >= 20, summary
    kinds = {step["kind"] for step in report["steps"]}
    assert {"sigstop (zombie)", "sigcont", "broker-stop", "broker-start"} <= kinds, kinds
    assert {"smtp-down", "smtp-up", "sigkill (one of two)"} <= kinds, kinds
    assert report["payouts_expected"] > 100, summary
    assert report["missing"] == 0, summary
    assert report["doubled"] == 0, summary
    assert report["unexpected"] == 0, summary
    assert report["wrong_amount"] == 0, summary
    # No instance died on its own (a zombie rejoins; the suite's own SIGKILLs are not counted).
    assert report["unexpected_exits"] == {}, summary
    [takeover] = [s for s in report["steps"] if s["kind"] == "sigkill (one of two)"]
    assert takeover["ok"] is True and report["takeover_ok"] is True, takeover
    assert report["services_down"] == [], summary
    assert report["services_up"] == 5, summary
    # Every class of bad input reached its topic; each one meant for the .dlq got there.
    assert len(report["bad_input"]) >= 20, report["bad_input"].keys()
    assert report["bad_not_dead_lettered"] == [], summary
    # No valid record dead-lettered: neither the workload's nor a corpus record the contract
    # accepts (a duplicate, an erasure of nobody, a command for an unknown payout).
    assert report["valid_dead_lettered"] == {}, summary
    assert report["accepted_but_dead_lettered"] == [], summary
    assert report["ok"] is True, summary
    assert proc.returncode == 0, summary
