"""Why a delivery attempt failed, and what the service does about it.

    DeliveryFailure              one attempt on one channel failed
    ├── TransientFailure         the server may accept later: retried with backoff
    │                            (connection refused, timeouts, SMTP 4xx, HTTP 5xx/408/425/429)
    └── PermanentFailure         retrying cannot help: dead-lettered at once
                                 (SMTP 5xx, HTTP 4xx and 3xx, a missing webhook secret)
    DeliveryFailed (PermanentError)
                                 what a dead-lettered delivery carries to notifications.sent.v1.dlq:
                                 the last failure's reason, or RETRIES_EXHAUSTED

`reason` is a short UPPER_SNAKE code from a fixed set: it labels metrics and the dead letter.
"""

from __future__ import annotations

from referrals.platform.errors import PermanentError

RETRIES_EXHAUSTED = "RETRIES_EXHAUSTED"
BAD_MESSAGE = "BAD_MESSAGE"  # the message could not be rendered or built (a bug or bad data)


class DeliveryFailure(Exception):
    def __init__(self, reason: str, detail: str, *, retry_after_s: float | None = None) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail
        self.retry_after_s = retry_after_s  # the server's Retry-After, when it gave one


class TransientFailure(DeliveryFailure):
    """The same attempt may succeed later."""


class PermanentFailure(DeliveryFailure):
    """The same attempt will fail again."""


class DeliveryFailed(PermanentError):
    """A delivery given up on; its dead letter's `dlq.error.reason` is `reason`."""

    reason = RETRIES_EXHAUSTED
