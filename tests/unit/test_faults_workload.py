"""The fault suite's ground truth and bad-input corpus, checked without a broker."""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, datetime

import pytest

from referrals.contract.avro import AvroCodec
from referrals.contract.records import ProgramConfig
from referrals.contract.topics import CATALOGUE, DEALS, OPERATOR_COMMANDS, PROGRAMS, spec_for
from referrals.contract.validation import check_values
from referrals.platform.errors import DecodeError, PermanentError
from referrals.programs.catalog import ProgramCatalog
from referrals.programs.document import parse_document, validate
from referrals.streams.topics import Role, check_key
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


def test_corpus_covers_twenty_classes_on_every_input_topic_where_twenty_apply() -> None:
    now = datetime.now(UTC)
    bad = corpus.build(workload.generate(50, 1, now), now, 1)
    assert {b.topic for b in bad} == set(corpus.INPUT_TOPICS)
    assert OPERATOR_COMMANDS in corpus.INPUT_TOPICS  # rewards reads operators' commands
    # Every topic the contract lists as an input of a service gets the corpus.
    inputs = {s.name for s in CATALOGUE if s.role is Role.INPUT}
    assert inputs == set(corpus.INPUT_TOPICS)
    per_topic: dict[str, set[str]] = defaultdict(set)
    for b in bad:
        per_topic[b.topic].add(b.cls)
    for topic, classes in per_topic.items():
        # Fewer apply only where corpus.FEWER_CLASSES says why; even there at least 20 do.
        assert len(classes) >= 20, (topic, sorted(classes))
    assert set(corpus.FEWER_CLASSES) <= set(corpus.INPUT_TOPICS)
    assert len({b.cls for b in bad}) >= 30
    codec = AvroCodec()
    for b in bad:
        if b.cls in ("random_bytes", "empty_value", "unknown_fingerprint", "truncated_avro"):
            with pytest.raises(DecodeError):
                codec.decode(b.value or b"")
    assert any(b.value and len(b.value) > 999_000 for b in bad)  # the near-1 MiB records
    assert any(b.key is None for b in bad) and any(b.value is None for b in bad)


# What a service finds out only from its state: a program or payout nobody published.
NEEDS_STATE = {"unknown_program", "unknown_payout"}


def _refusal(b: corpus.BadRecord, now: datetime) -> str | None:
    """The reason the contract's checks (the runtime's, in its order) refuse `b` with, or None:
    decoding, values, the key (on every input topic but the global program table), and a
    program config's document."""
    spec = spec_for(b.topic)
    try:
        if b.value is None:
            return None if spec.compacted else "TOMBSTONE"
        record = AvroCodec().decode(b.value, spec.record)
        check_values(record, now)
        if b.topic != PROGRAMS:
            check_key(spec, b.key, record)
        if isinstance(record, ProgramConfig):
            ProgramCatalog().apply(record)
    except PermanentError as err:
        return err.reason
    return None


def test_each_bad_record_is_refused_by_the_contracts_checks_and_each_valid_one_is_not() -> None:
    now = datetime.now(UTC)
    bad = corpus.build(workload.generate(50, 1, now), now, 1)
    for b in bad:
        reason = _refusal(b, now)
        if b.expect == "accepted" or b.cls in NEEDS_STATE:
            assert reason is None, (b.cls, b.topic, reason)
        else:
            assert reason is not None, (b.cls, b.topic)


def test_the_cli_offers_every_scale_the_suite_has() -> None:
    from referrals.tools.faults import cli
    from referrals.tools.faults.suite import SCALES

    assert tuple(SCALES) == cli.SCALES
