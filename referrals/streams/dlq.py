"""Dead-letter routing: a bad record goes, bytes unchanged, to `<topic>.dlq` with its reason.

Headers say why and where from, so an operator can inspect and replay it:
dlq.error.class, dlq.error.reason, dlq.error.message, dlq.service, dlq.original.topic,
dlq.original.partition, dlq.original.offset, dlq.original.timestamp.
"""

from __future__ import annotations

from dataclasses import dataclass

from referrals.platform.errors import ReferralsError
from referrals.streams.topics import dlq_of

MAX_MESSAGE = 1000  # keep headers small even when an error message embeds the input


@dataclass(frozen=True, slots=True)
class DeadLetter:
    topic: str  # physical DLQ topic
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes], ...]


def dead_letter(
    *,
    service: str,
    topic: str,
    partition: int,
    offset: int,
    timestamp_ms: int,
    key: bytes | None,
    value: bytes | None,
    error: BaseException,
) -> DeadLetter:
    """Builds the DLQ record for an input record at (topic, partition, offset) that failed."""
    reason = error.reason if isinstance(error, ReferralsError) else type(error).__name__
    headers = (
        ("dlq.error.class", type(error).__name__.encode()),
        ("dlq.error.reason", reason.encode()),
        ("dlq.error.message", str(error)[:MAX_MESSAGE].encode("utf-8", "replace")),
        ("dlq.service", service.encode()),
        ("dlq.original.topic", topic.encode()),
        ("dlq.original.partition", str(partition).encode()),
        ("dlq.original.offset", str(offset).encode()),
        ("dlq.original.timestamp", str(timestamp_ms).encode()),
    )
    return DeadLetter(topic=dlq_of(topic), key=key, value=value, headers=headers)


def header_dict(headers: object) -> dict[str, str]:
    """Headers of a consumed record as a str->str dict (for tail and tests)."""
    out: dict[str, str] = {}
    for name, value in headers or ():  # type: ignore[attr-defined]
        out[name] = value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)
    return out
