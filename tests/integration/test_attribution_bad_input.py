"""Attribution keeps going past bad input: undecodable bytes and impossible values go to their
topic's `.dlq` with the reason, and an event whose program config never arrives goes there with
UNKNOWN_PROGRAM after the configured wait, while one whose program arrives in time resolves."""

from __future__ import annotations

from pathlib import Path

import pytest

from referrals.contract.records import Channel, DealStage
from referrals.contract.topics import ADVOCATES, CONVERSIONS, DEALS, SHARES, TopicNames, dlq_of
from referrals.platform.settings import KafkaSettings
from referrals.programs.put import load_program, put
from referrals.streams.dlq import header_dict

from .helpers import read_topic
from .test_attribution_support import (
    CODEC,
    conversion,
    deal,
    eventually,
    profile,
    publish,
    put_program,
    run_cli,
    share,
    spawn,
    statuses,
)

pytestmark = pytest.mark.broker
LATE_PROGRAM = "program_id: late-prog\ncurrency: USD\nrewards:\n  tiers:\n" + (
    '    - {from_referral: 1, amount: "10.00", reward_type: GIFT_CARD}\n'
)


async def test_an_unknown_program_is_dead_lettered_after_the_wait_unless_it_arrives(
    topics: KafkaSettings, tmp_path: Path
) -> None:
    document = tmp_path / "late-prog.yaml"
    document.write_text(LATE_PROGRAM)
    publish(topics, ADVOCATES, [profile("adv-g", program_id="late-prog")])
    publish(
        topics, SHARES, [share("sh-g", "adv-g", Channel.SHARE_URL, "G-1", program_id="late-prog")]
    )
    service = spawn(topics, tmp_path / "state", ATTRIBUTION_UNKNOWN_PROGRAM_WAIT_S="2")
    try:
        ghost = conversion("cv-ghost", "p-ghost", code="X", program_id="ghost")
        late = conversion("cv-late", "p-late", code="G-1", program_id="late-prog")
        publish(topics, CONVERSIONS, [ghost, late])
        in_conversions = ("attribution_records_in_total", CONVERSIONS)
        await eventually(lambda: service.metric(in_conversions[0], topic=in_conversions[1]) == 2)
        # Put in-process rather than through the CLI: the program must land within the 2 s.
        await put(topics, load_program(document))
        dead = await read_topic(topics, dlq_of(CONVERSIONS), expect=1, within=30)
        found = await statuses(topics, expect=1)
        counted = service.metric(
            "referrals_dead_letters_total", topic=CONVERSIONS, reason="UNKNOWN_PROGRAM"
        )
    finally:
        assert service.stop() == 0
    assert len(dead) == 1
    headers = header_dict(dead[0].headers)
    assert headers["dlq.error.reason"] == "UNKNOWN_PROGRAM"
    assert headers["dlq.original.topic"] == TopicNames(topics.topic_prefix)(CONVERSIONS)
    assert dead[0].key == b"p-ghost"
    assert CODEC.decode(dead[0].value) == ghost  # the original record, bytes unchanged
    assert [(s.prospect_id, s.advocate_id, s.status.value) for s in found] == [
        ("p-late", "adv-g", "LEAD")
    ]
    assert found[0].program_id == "late-prog" and found[0].config_version == 1
    assert counted == 1


async def test_bad_input_goes_to_the_dlq_and_processing_continues(
    topics: KafkaSettings, tmp_path: Path
) -> None:
    put_program(topics)
    publish(topics, ADVOCATES, [profile("adv-b")])
    publish(topics, SHARES, [share("sh-b", "adv-b", Channel.PRINT_CARD, "B-1")])
    service = spawn(topics, tmp_path)
    try:
        done = run_cli(topics, "publish", CONVERSIONS, "-", "--raw", stdin="not avro at all\n")
        assert done.returncode == 0, done.stderr
        negative = deal("dl-bad", "p-ok", DealStage.WON, amount_minor=-5)
        publish(topics, DEALS, [negative], "--no-value-checks")
        publish(topics, CONVERSIONS, [conversion("cv-ok", "p-ok", code="B-1")])
        found = await statuses(topics, expect=1)
        bad_bytes = await read_topic(topics, dlq_of(CONVERSIONS), expect=1)
        bad_value = await read_topic(topics, dlq_of(DEALS), expect=1)
        counts = {
            (topic, reason): service.metric(
                "referrals_dead_letters_total", topic=topic, reason=reason
            )
            for topic, reason in ((CONVERSIONS, "BAD_MAGIC"), (DEALS, "NEGATIVE_AMOUNT"))
        }
    finally:
        assert service.stop() == 0
    assert [(s.prospect_id, s.status.value) for s in found] == [("p-ok", "LEAD")]
    assert [m.value for m in bad_bytes] == [b"not avro at all"]
    assert header_dict(bad_bytes[0].headers)["dlq.error.reason"] == "BAD_MAGIC"
    assert len(bad_value) == 1
    assert header_dict(bad_value[0].headers)["dlq.error.reason"] == "NEGATIVE_AMOUNT"
    assert CODEC.decode(bad_value[0].value) == negative
    assert counts == {(CONVERSIONS, "BAD_MAGIC"): 1, (DEALS, "NEGATIVE_AMOUNT"): 1}
