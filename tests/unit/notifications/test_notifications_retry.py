"""The retry schedule of a delivery that fails for now (pure): backoff capped, jittered,
Retry-After honoured within the cap, and the deadline, not a count of tries, ends it."""

from __future__ import annotations

import pytest

from services.notifications.domain.retry import (
    RetryPolicy,
    backoff_ms,
    deadline_at,
    expired,
    next_try,
)

S = 1000
POLICY = RetryPolicy(base_ms=500, cap_ms=60 * S, deadline_ms=86_400 * S)


def test_backoff_doubles_from_the_base_up_to_the_cap_with_half_of_it_jittered() -> None:
    lowest = [backoff_ms(n, POLICY, 0.0) for n in range(1, 10)]
    highest = [backoff_ms(n, POLICY, 0.999999) for n in range(1, 10)]
    assert lowest == [250, 500, 1000, 2000, 4000, 8000, 16000, 30000, 30000]
    assert highest == [499, 999, 1999, 3999, 7999, 15999, 31999, 59999, 59999]


@pytest.mark.parametrize("tries", [1, 7, 8, 9, 50, 10_000])
def test_no_wait_is_longer_than_the_cap_however_many_tries_failed(tries: int) -> None:
    for rand in (0.0, 0.5, 0.999999):
        assert 0 < next_try(POLICY, 0, tries, 10 * S, rand) - 10 * S <= 60 * S  # type: ignore[operator]


def test_a_retry_after_lengthens_the_wait_but_never_beyond_the_cap() -> None:
    assert next_try(POLICY, 0, 1, 0, 0.0, retry_after_ms=20 * S) == 20 * S
    assert next_try(POLICY, 0, 1, 0, 0.0, retry_after_ms=3600 * S) == 60 * S
    assert next_try(POLICY, 0, 1, 0, 0.0, retry_after_ms=10) == 250  # shorter: the backoff


def test_the_deadline_counts_from_the_first_due_time_not_from_the_last_try() -> None:
    first_due = 1_000 * S
    assert deadline_at(first_due, POLICY) == first_due + 86_400 * S
    assert not expired(first_due, first_due + 86_400 * S - 1, POLICY)
    assert expired(first_due, first_due + 86_400 * S, POLICY)
    # Thousands of failed tries within the deadline: still retried.
    assert next_try(POLICY, first_due, 5_000, first_due + 80_000 * S, 0.5) is not None


def test_past_the_deadline_a_delivery_is_given_up_on() -> None:
    assert next_try(POLICY, 0, 3, 86_400 * S, 0.5) is None
    assert next_try(POLICY, 0, 1, 90_000 * S, 0.5) is None


def test_the_last_wait_ends_at_the_deadline_where_it_is_given_up_on() -> None:
    short = RetryPolicy(base_ms=500, cap_ms=60 * S, deadline_ms=3 * S)
    at = next_try(short, 0, 20, 2_900, 0.5)
    assert at == 3 * S
    assert expired(0, at, short)
