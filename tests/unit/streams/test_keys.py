"""The runtime's record-key check: one rule and one dead-letter reason for every service."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from referrals.platform.errors import PermanentError
from referrals.streams.processor import Processor
from referrals.streams.topics import Role, TopicSpec, check_key

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
