"""When a delivery that failed for now is tried again, and when it is given up on (pure).

A message is first due when it is planned (its transaction commits and it is handed to the
sender). A try that fails for now (the relay or webhook receiver is down, answers 4xx/5xx for
now, or the sender deferred it while the destination is down) waits `backoff_ms` before the
next one: exponential from `base_ms`, capped at `cap_ms`, half of it jittered ("equal jitter",
so messages that failed together spread out, yet none comes back at once). A server's
Retry-After lengthens the wait, never beyond the cap. The deadline, not a count of tries, ends a
delivery: `deadline_ms` after the message was first due it is given up on (DEADLINE_EXCEEDED),
and the last wait is cut short so that the deadline is checked on time.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    base_ms: int  # the first wait's ceiling
    cap_ms: int  # no wait is longer (the contract: at most 60 s between attempts)
    deadline_ms: int  # from the first due time to giving up


def backoff_ms(tries: int, policy: RetryPolicy, rand: float) -> int:
    """The wait after the `tries`-th failed try (1-based): the ceiling base * 2^(tries-1),
    capped, of which half is fixed and half random (`rand` in [0, 1))."""
    ceiling = min(policy.cap_ms, policy.base_ms << min(max(tries, 1) - 1, 40))
    return ceiling // 2 + int(ceiling / 2 * rand)


def deadline_at(first_due_ms: int, policy: RetryPolicy) -> int:
    return first_due_ms + policy.deadline_ms


def expired(first_due_ms: int, now_ms: int, policy: RetryPolicy) -> bool:
    """Whether the delivery is past its deadline: it goes to the .dlq, not to the server."""
    return now_ms >= deadline_at(first_due_ms, policy)


def next_try(
    policy: RetryPolicy,
    first_due_ms: int,
    tries: int,
    now_ms: int,
    rand: float,
    retry_after_ms: int | None = None,
) -> int | None:
    """When to try again after the `tries`-th failed try at `now_ms`; None: the deadline has
    passed, give up. Never later than the deadline (where it is given up on) nor than
    `cap_ms` from now."""
    if expired(first_due_ms, now_ms, policy):
        return None
    wait = max(backoff_ms(tries, policy, rand), min(retry_after_ms or 0, policy.cap_ms))
    return min(now_ms + wait, deadline_at(first_due_ms, policy))
