"""Why a delivery attempt failed, and what the service does about it.

    DeliveryFailure              one attempt on one channel failed
    ├── TransientFailure         the server may accept later: retried with backoff until the
    │                            delivery deadline (connection refused, timeouts, SMTP 4xx,
    │                            HTTP 5xx/408/425/429)
    └── PermanentFailure         retrying cannot help: dead-lettered at once
                                 (SMTP 5xx: RECIPIENT_REFUSED for an address refused at RCPT,
                                 SMTP_REJECTED otherwise; HTTP 4xx and 3xx, a missing secret,
                                 a webhook URL `webhook_policy` refuses)
    DeliveryFailed (PermanentError)
                                 what a dead-lettered delivery carries to notifications.sent.v1.dlq:
                                 the permanent failure's reason, or DEADLINE_EXCEEDED

DEADLINE_EXCEEDED replaced RETRIES_EXHAUSTED (a count of attempts, 5 by default, which let a
minute's relay outage dead-letter every message due in it); dead letters written before the
change still carry the old reason.

`reason` is a short UPPER_SNAKE code from a fixed set: it labels metrics and the dead letter.

A failure's text goes to logs, dead letters and the outbox's changelog, none of which may hold
personal data; a relay's answer often quotes the address ("550 5.1.1 <ada@example.com>: user
unknown"). So the sender keeps only `scrub`bed text.
"""

from __future__ import annotations

import re

from referrals.platform.errors import PermanentError

DEADLINE_EXCEEDED = "DEADLINE_EXCEEDED"  # still failing NOTIFICATIONS_DELIVERY_DEADLINE_S on
RECIPIENT_REFUSED = "RECIPIENT_REFUSED"  # the relay refused the address for good (5xx at RCPT)
RELAY_DOWN = "RELAY_DOWN"  # not tried: its destination is down and another message probes it
# Transient reasons that say the destination itself is down, not just this one message: the
# sender then probes it with one message at a time (`delivery`).
DESTINATION_DOWN = frozenset({"CONNECTION", "TIMEOUT", "HTTP_5XX", "HTTP_429"})
BAD_MESSAGE = "BAD_MESSAGE"  # the message could not be rendered or built (a bug or bad data)


# Anything with an @ between non-separators: an address, well-formed or not.
_ADDRESS = re.compile(r"[^\s<>()\[\],;:\"'@]*@[^\s<>()\[\],;:\"'@]+")


def scrub(text: str, *personal: str) -> str:
    """`text` without the personal values given (an advocate's address and display name) and
    without anything shaped like an email address."""
    text = _ADDRESS.sub("<address>", text)
    for value in personal:
        value = value.strip()
        if len(value) >= 3:
            text = text.replace(value, "<personal data>")
    return text


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

    reason = DEADLINE_EXCEEDED
