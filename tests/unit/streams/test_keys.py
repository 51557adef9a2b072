"""The runtime's record-key check: one rule and one dead-letter reason for every service."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from types import SimpleNamespace

import pytest
from aiokafka import TopicPartition

from referrals.platform.errors import PermanentError
from referrals.streams.processor import Inbound, Output, Processor
from referrals.streams.runtime import StreamRuntime
from referrals.streams.topics import Role, TopicSpec, check_key

from .runtime_builders import offline_runtime

SPEC = TopicSpec("things.v1", "Thing", "thing_id", Role.INPUT)


@dataclass(frozen=True)
class Thing:
    thing_id: str


def test_a_record_keyed_by_its_key_field_passes() -> None:
    check_key(SPEC, "t-1", Thing("t-1"))


@pytest.mark.parametrize("key", ["t-2", "", None])
def test_a_record_keyed_by_anything_else_is_a_key_mismatch(key: str | None) -> None:
    with pytest.raises(PermanentError) as err:
        check_key(SPEC, key, Thing("t-1"))
    assert err.value.reason == "KEY_MISMATCH"
    assert "thing_id 't-1'" in str(err.value)


def test_a_record_without_the_key_field_is_a_key_mismatch() -> None:
    with pytest.raises(PermanentError) as err:
        check_key(SPEC, "t-1", object())
    assert err.value.reason == "KEY_MISMATCH"


def test_processors_check_no_keys_unless_they_say_so() -> None:
    assert Processor.keyed_inputs == ()


def test_services_check_the_keys_of_the_inputs_they_partition_state_by() -> None:
    from referrals.contract.topics import ADVOCATES, PAYOUT_RESULTS, SHARES, STATUS, UNSUBSCRIBES
    from services.notifications.adapters.processor import NotificationsProcessor
    from services.rewards.adapters.processor import RewardsProcessor

    assert set(NotificationsProcessor.keyed_inputs) == {STATUS, ADVOCATES, SHARES, UNSUBSCRIBES}
    assert {STATUS, ADVOCATES, PAYOUT_RESULTS} <= set(RewardsProcessor.keyed_inputs)


def test_every_service_reading_conversions_or_deals_checks_their_keys() -> None:
    """Conversions are keyed by prospect_id and deals by deal_id (the contract); attribution,
    the one service reading them, checked neither, so a null or wrong key was accepted."""
    from referrals.contract.topics import CONVERSIONS, DEALS, DEALS_BY_PROSPECT
    from services.attribution.adapters.processor import AttributionProcessor
    from services.notifications.adapters.processor import NotificationsProcessor
    from services.rewards.adapters.processor import RewardsProcessor

    for processor in (AttributionProcessor, NotificationsProcessor, RewardsProcessor):
        for topic in (CONVERSIONS, DEALS, DEALS_BY_PROSPECT):
            if topic in processor.inputs:
                assert topic in processor.keyed_inputs, (processor.name, topic)
    assert {CONVERSIONS, DEALS} <= set(AttributionProcessor.inputs)


def test_a_key_that_is_not_utf_8_is_a_bad_key() -> None:
    with pytest.raises(PermanentError) as err:
        check_key(SPEC, b"t-\xff", Thing("t-\ufffd"))
    assert err.value.reason == "BAD_KEY"


def test_raw_key_bytes_that_are_utf_8_are_compared_as_text() -> None:
    check_key(SPEC, "t-é".encode(), Thing("t-é"))
    with pytest.raises(PermanentError) as err:
        check_key(SPEC, b"t-2", Thing("t-1"))
    assert err.value.reason == "KEY_MISMATCH"


class _Codec:
    def decode(self, data: bytes, expected: str | None = None) -> Thing:
        return Thing(data.decode())

    def encode(self, record: object) -> bytes:
        raise NotImplementedError


class _Keyed(Processor):
    name = "keyed"
    inputs = ("things.v1",)
    keyed_inputs = ("things.v1",)

    def __init__(self) -> None:
        self.seen: list[str | None] = []

    def process(self, record: Inbound, now: datetime) -> list[Output]:
        self.seen.append(record.key)
        return []


def _runtime(processor: Processor) -> StreamRuntime:
    return offline_runtime(processor, _Codec(), SPEC)


def _consumed(key: bytes, value: bytes) -> SimpleNamespace:
    return SimpleNamespace(key=key, value=value, offset=3, timestamp=1_000)


def test_the_runtime_dead_letters_a_mismatched_key_before_the_processor_sees_it() -> None:
    processor = _Keyed()
    runtime = _runtime(processor)
    now = datetime(2026, 1, 1, tzinfo=UTC)
    tp = TopicPartition("things.v1", 0)
    assert runtime._handle(tp, _consumed(b"t-1", b"t-1"), now) == []
    assert processor.seen == ["t-1"]
    [dead] = runtime._handle(tp, _consumed(b"t-2", b"t-1"), now)
    assert dead.topic == "things.v1.dlq"
    assert dict(dead.headers)["dlq.error.reason"] == b"KEY_MISMATCH"
    assert processor.seen == ["t-1"]  # never handed over


def test_the_runtime_checks_no_key_on_inputs_not_declared_keyed() -> None:
    processor = _Keyed()
    processor.keyed_inputs = ()
    runtime = _runtime(processor)
    now = datetime(2026, 1, 1, tzinfo=UTC)
    assert runtime._handle(TopicPartition("things.v1", 0), _consumed(b"t-2", b"t-1"), now) == []
    assert processor.seen == ["t-2"]


def test_the_runtime_dead_letters_a_non_utf_8_key_even_when_the_id_holds_u_fffd() -> None:
    """The runtime decodes keys with errors="replace": b"t-\\xff" became "t-\\ufffd" and
    matched a record whose id holds the replacement character."""
    processor = _Keyed()
    runtime = _runtime(processor)
    now = datetime(2026, 1, 1, tzinfo=UTC)
    tp = TopicPartition("things.v1", 0)
    [dead] = runtime._handle(tp, _consumed(b"t-\xff", "t-\ufffd".encode()), now)
    assert dict(dead.headers)["dlq.error.reason"] == b"BAD_KEY"
    assert processor.seen == []
