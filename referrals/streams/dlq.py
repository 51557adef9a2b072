"""Dead-letter routing: a bad record goes, bytes unchanged, to `<topic>.dlq` with its reason.

Headers say why and where from, so an operator can inspect and replay it:
dlq.error.class, dlq.error.reason, dlq.error.message, dlq.service, dlq.original.topic,
dlq.original.partition, dlq.original.offset, dlq.original.timestamp.

A dead letter must always fit in a Kafka record (1 MiB by default), or its transaction aborts
and the partition stalls on it forever. So the value is the original bytes truncated past
512 KiB (`MAX_VALUE`) and the key truncated past 1 KiB (`MAX_KEY`); a truncated copy says so:
`dlq.truncated: true` and `dlq.original.size` (bytes) for the value, `dlq.key.truncated: true`
and `dlq.original.key.size` for the key. Header values are bounded too (`MAX_MESSAGE`).
"""

from __future__ import annotations

from dataclasses import dataclass

from referrals.platform.errors import ReferralsError
from referrals.streams.topics import dlq_of

MAX_MESSAGE = 1000  # keep headers small even when an error message embeds the input
MAX_VALUE = 512 * 1024  # the contract: the original bytes, truncated past 512 KB
MAX_KEY = 1024
MAX_HEADER = 1024  # service and topic names: bytes, far below anything a broker refuses


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
    headers = [
        ("dlq.error.class", _text(type(error).__name__)),
        ("dlq.error.reason", _text(reason)),
        ("dlq.error.message", str(error)[:MAX_MESSAGE].encode("utf-8", "replace")),
        ("dlq.service", _text(service)),
        ("dlq.original.topic", _text(topic)),
        ("dlq.original.partition", str(partition).encode()),
        ("dlq.original.offset", str(offset).encode()),
        ("dlq.original.timestamp", str(timestamp_ms).encode()),
    ]
    if value is not None and len(value) > MAX_VALUE:
        headers += [("dlq.truncated", b"true"), ("dlq.original.size", str(len(value)).encode())]
        value = value[:MAX_VALUE]
    if key is not None and len(key) > MAX_KEY:
        headers += [
            ("dlq.key.truncated", b"true"),
            ("dlq.original.key.size", str(len(key)).encode()),
        ]
        key = key[:MAX_KEY]
    return DeadLetter(topic=dlq_of(topic), key=key, value=value, headers=tuple(headers))


def _text(value: str) -> bytes:
    return value.encode("utf-8", "replace")[:MAX_HEADER]


def header_dict(headers: object) -> dict[str, str]:
    """Headers of a consumed record as a str->str dict (for tail and tests)."""
    out: dict[str, str] = {}
    for name, value in headers or ():  # type: ignore[attr-defined]
        out[name] = value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)
    return out
