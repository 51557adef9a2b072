"""Program lifecycle through the real broker: once the program is put with `status: ENDED`, a new
referral is REJECTED with PROGRAM_ENDED, and one made while it was active still reaches WON."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from referrals.contract.records import Channel, DealStage
from referrals.contract.topics import ADVOCATES, CONVERSIONS, DEALS, SHARES
from referrals.platform.settings import KafkaSettings

from .test_attribution_support import (
    ACME,
    DAY,
    T0,
    conversion,
    deal,
    eventually,
    profile,
    publish,
    put_program,
    share,
    spawn,
    statuses,
)

pytestmark = pytest.mark.broker


def _ended_copy(tmp_path: Path) -> Path:
    document = yaml.safe_load(ACME.read_text(encoding="utf-8"))
    document["status"] = "ENDED"
    path = tmp_path / "acme-ended.yaml"
    path.write_text(yaml.safe_dump(document), encoding="utf-8")
    return path


async def test_an_ended_program_rejects_new_referrals_and_lets_earlier_ones_win(
    topics: KafkaSettings, tmp_path: Path
) -> None:
    put_program(topics)  # version 1, ACTIVE
    publish(topics, ADVOCATES, [profile("adv-before"), profile("adv-after")])
    publish(
        topics,
        SHARES,
        [
            share("sh-before", "adv-before", Channel.SHARE_URL, "BEFORE-1"),
            share("sh-after", "adv-after", Channel.SOCIAL, "AFTER-1"),
        ],
    )
    state = tmp_path / "state"
    service = spawn(topics, state)
    try:
        publish(topics, CONVERSIONS, [conversion("cv-before", "p-before", code="BEFORE-1")])
        await eventually(lambda: service.metric("attribution_statuses_total", status="LEAD") == 1)
    finally:
        assert service.stop() == 0
    put_program(topics, _ended_copy(tmp_path))  # version 2, ENDED
    # A service reads the program configs to their end before its inputs: restarted, it
    # decides everything below with version 2.
    service = spawn(topics, state)
    try:
        publish(
            topics,
            CONVERSIONS,
            [conversion("cv-after", "p-after", code="AFTER-1", at=T0 + DAY)],
        )
        publish(
            topics,
            DEALS,
            [
                deal("dl-1", "p-before", DealStage.OPEN, at=T0 + 2 * DAY),
                deal("dl-2", "p-before", DealStage.WON, at=T0 + 3 * DAY),
            ],
        )
        found = await statuses(topics, expect=4)
        ended = service.metric("attribution_rejections_total", reason="PROGRAM_ENDED")
    finally:
        assert service.stop() == 0
    told = {
        (s.prospect_id, s.advocate_id, s.status.value, s.reason, s.config_version) for s in found
    }
    assert told == {
        ("p-before", "adv-before", "LEAD", None, 1),
        ("p-before", "adv-before", "IN_PROGRESS", None, 2),
        ("p-before", "adv-before", "WON", None, 2),
        ("p-after", "adv-after", "REJECTED", "PROGRAM_ENDED", 2),
    }
    assert len(found) == 4
    assert ended == 1
