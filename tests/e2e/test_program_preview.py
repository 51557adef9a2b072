"""`referrals program preview` agrees exactly with the services: a program year runs through the
three services as processes (the main job at small scale: finance paying, an operator denying and
approving fraud holds, the program paused for a stretch), then the preview replays the topics.

With the document that was put, every count and amount per tier and reward type equals what was
issued, the clawbacks too, and no referral's outcome changes. With a changed document (tier 1
raised from 75.00 to 80.00, the fraud limit removed) the differences are exactly those worked out
from the topics without the preview: each tier-1 payout and tier-1 clawback 5.00 more, and each
referral the operator denied rewarded instead (its ordinal lies past the old limit: tier 4,
200.00 BILL_CREDIT, and its friend's 25.00), and only those referrals change."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from referrals.contract.records import PayoutKind, Recipient, ReferralStatus
from referrals.platform.settings import KafkaSettings
from referrals.tools.program_year import run_year
from referrals.tools.report import read_topics
from referrals.tools.simulate import DEMO_PROGRAM

from ..integration.helpers import run_cli
from .helpers import small_year

pytestmark = pytest.mark.broker


async def preview(topics: KafkaSettings, document: Path) -> dict[str, Any]:
    done = await asyncio.to_thread(
        run_cli, topics, "program", "preview", str(document), "--json", timeout=120.0
    )
    assert done.returncode == 0, done.stderr
    data: dict[str, Any] = json.loads(done.stdout)
    return data


def rows(data: dict[str, Any]) -> dict[tuple[str, int, str], dict[str, Any]]:
    return {(r["recipient"], r["tier"], r["reward_type"]): r for r in data["rewards"]}


def changed_document(tmp_path: Path) -> Path:
    doc = yaml.safe_load(DEMO_PROGRAM.read_text(encoding="utf-8"))
    assert doc["rewards"]["tiers"][0] == {
        "from_referral": 1,
        "amount": "75.00",
        "reward_type": "GIFT_CARD",
    }
    doc["rewards"]["tiers"][0]["amount"] = "80.00"
    del doc["fraud"]
    path = tmp_path / "changed.yaml"
    path.write_text(yaml.safe_dump(doc), encoding="utf-8")
    return path


async def test_the_preview_of_the_document_put_is_exactly_what_the_services_issued(
    topics: KafkaSettings, tmp_path: Path
) -> None:
    lines: list[str] = []
    plan = small_year(tmp_path, seed=3, show=lines.append)
    year = await run_year(plan, topics)
    assert year.ok, "\n".join(lines[-12:])

    same = await preview(topics, DEMO_PROGRAM)
    assert same["changes"] == {"count": 0, "referrals": []}
    assert same["rewards"] and all(
        r["difference"] == {"count": 0, "amount_minor": 0} for r in same["rewards"]
    ), same["rewards"]
    for part in ("totals", "clawbacks"):
        assert same[part] and all(
            t["difference"] == {"count": 0, "amount_minor": 0} for t in same[part]
        )
    assert all(h["would_hold"] == h["held"] for h in same["held"])

    # What the changed document must do, worked out from the topics alone.
    recorded = await read_topics(topics, "demo-b2b")
    v2 = [p for _, p in recorded.payouts_v2]
    tier_one = {
        p.referral_id
        for p in v2
        if p.kind is PayoutKind.PAYOUT and p.recipient is Recipient.ADVOCATE and p.tier == 1
    }
    clawed_one = {
        p.payout_id
        for p in v2
        if p.kind is PayoutKind.CLAWBACK and p.recipient is Recipient.ADVOCATE and p.tier == 1
    }
    denied = {
        s.referral_id
        for _, s in recorded.statuses
        if s.status is ReferralStatus.REJECTED and s.reason == "DENIED"
    }
    assert tier_one and clawed_one and denied

    changed = await preview(topics, changed_document(tmp_path))
    before, after = rows(same), rows(changed)
    expected_difference = {
        ("advocate", 1, "GIFT_CARD"): (0, 500 * len(tier_one)),
        ("advocate", 4, "BILL_CREDIT"): (len(denied), 20000 * len(denied)),
        ("friend", 0, "BILL_CREDIT"): (len(denied), 2500 * len(denied)),
    }
    assert after.keys() == before.keys()
    for key, row in after.items():
        count, amount = expected_difference.get(key, (0, 0))
        assert row["issued"] == before[key]["issued"], key
        assert row["difference"] == {"count": count, "amount_minor": amount}, key
    assert changed["clawbacks"][0]["difference"] == {
        "count": 0,
        "amount_minor": 500 * len(clawed_one),
    }
    changes = {c["referral_id"]: (c["before"], c["after"]) for c in changed["changes"]["referrals"]}
    assert changes.keys() == tier_one | denied
    for referral_id in denied:
        assert changes[referral_id] == ("REJECTED DENIED", "REWARDED tier 4 200.00 USD")
    for referral_id in tier_one:
        assert changes[referral_id] in (
            ("REWARDED tier 1 75.00 USD", "REWARDED tier 1 80.00 USD"),
            ("CLAWED_BACK tier 1 75.00 USD", "CLAWED_BACK tier 1 80.00 USD"),
        )
