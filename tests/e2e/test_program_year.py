"""The main job at small scale: a program year of a few hundred advocates through all three
services as separate processes, against the real broker, a real SMTP server, and finance
paying, an operator reviewing fraud holds and the program paused for a stretch; the report read
from the topics must match the generator's ground truth — exactly where the system must be
exact (referrals attributed and won, rejections by reason, rewards owed vs issued, friend
rewards, clawbacks, denials, fraud holds), within the stated tolerance elsewhere. This is the
proof that nothing was lost or double-counted end to end."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from referrals.contract.topics import SHARES
from referrals.platform.settings import KafkaSettings
from referrals.tools.program_year import run_year

from ..integration.helpers import produce
from .helpers import small_year

pytestmark = pytest.mark.broker


async def test_a_program_year_reports_what_the_ground_truth_says(
    topics: KafkaSettings, tmp_path: Path
) -> None:
    lines: list[str] = []
    plan = small_year(tmp_path, seed=7, show=lines.append)
    await produce(topics, SHARES, [(b"adv-typo", b"plain text, not Avro")])  # bad input too
    outcome = await run_year(plan, topics)
    failed = [c for c in outcome.comparisons if not c.ok]
    assert not failed, (
        "\n".join(f"{c.name}: measured {c.measured}, truth {c.truth}" for c in failed)
        + "\n"
        + "\n".join(lines[-12:])
    )
    assert {c.name for c in outcome.comparisons} >= {
        "referrals attributed",
        "referrals won",
        "rewards owed vs issued",
        "friend rewards issued",
        "friend rewards amount (minor units)",
        "clawbacks issued",
        "clawbacks amount (minor units)",
        "fraud holds (FRAUD_REVIEW)",
        "denials (REJECTED DENIED)",
    }
    by_name = {c.name: c for c in outcome.comparisons}
    # The year has its money events: both operator decisions, refunds after payment, a pause.
    assert by_name["denials (REJECTED DENIED)"].truth > 0
    assert by_name["fraud holds (FRAUD_REVIEW)"].truth > by_name["denials (REJECTED DENIED)"].truth
    assert by_name["clawbacks issued"].truth > 0
    assert any("PAUSED" in line for line in lines) and any("ACTIVE" in line for line in lines)
    assert outcome.mails > 0  # thank-yous reached the SMTP server
    # The gRPC API's portal shows the top advocate issued exactly what finance was asked to pay.
    assert outcome.portal_agrees, outcome.portal
    assert "newest referrals:" in outcome.portal and "rewards USD: issued" in outcome.portal
    page = outcome.report.read_text()
    assert page.count("<svg") >= 2  # the channel comparison and the advocate distribution
    figures = json.loads((outcome.report.parent / "report.json").read_text())
    assert figures["undecodable"] == {SHARES: 1}  # skipped and counted; it is in the .dlq
