"""The fault suite's ground truth and bad-input corpus, checked without a broker."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from referrals.contract.avro import AvroCodec
from referrals.contract.topics import DEALS
from referrals.platform.errors import DecodeError
from referrals.programs.document import parse_document, validate
from referrals.tools.faults import corpus, workload


def test_program_is_valid_and_pays_one_fixed_amount() -> None:
    doc = validate(parse_document(workload.PROGRAM_DOC, "faults"))
    assert doc.program_id == workload.PROGRAM_ID
    assert [t.amount_minor for t in doc.rewards.tiers] == [workload.AMOUNT_MINOR]
    assert doc.rewards.friend_reward is not None
    assert doc.rewards.friend_reward.amount_minor == workload.FRIEND_MINOR


def test_every_won_referral_and_only_those_expect_one_payout() -> None:
    wl = workload.generate(200, 3, datetime.now(UTC))
    won = [r for r in wl.referrals if r.outcome == "WON"]
    assert 0 < len(won) < 200
    assert set(wl.expected) == {r.payout_id for r in won}
    assert len(wl.expected) == len(won)  # ids are distinct
    assert len(wl.friends) == len(won) and not set(wl.friends) & set(wl.expected)
    wins = [r for t, _, r in wl.events if t == DEALS and getattr(r, "stage", None) == "WON"]
    assert len(wins) == len(won)


def test_corpus_covers_twenty_classes_and_every_input_topic() -> None:
    now = datetime.now(UTC)
    bad = corpus.build(workload.generate(50, 1, now), now, 1)
    assert len({b.cls for b in bad}) >= 20
    assert {b.topic for b in bad} == set(corpus.INPUT_TOPICS)
    codec = AvroCodec()
    for b in bad:
        if b.cls in ("random_bytes", "empty_value", "unknown_fingerprint", "truncated_avro"):
            with pytest.raises(DecodeError):
                codec.decode(b.value or b"")
    assert any(b.value and len(b.value) > 999_000 for b in bad)  # the near-1 MiB records
    assert any(b.key is None for b in bad) and any(b.value is None for b in bad)


def test_the_cli_offers_every_scale_the_suite_has() -> None:
    from referrals.tools.faults import cli
    from referrals.tools.faults.suite import SCALES

    assert tuple(SCALES) == cli.SCALES
