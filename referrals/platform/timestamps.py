"""Epoch milliseconds <-> aware UTC datetimes, exactly (Avro timestamp-millis precision).

Integer arithmetic on timedeltas: no float rounding, so far-off instants round-trip exactly.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MS = timedelta(milliseconds=1)


def to_ms(moment: datetime) -> int:
    """Epoch milliseconds of an aware datetime."""
    return (moment - EPOCH) // _MS


def from_ms(millis: int) -> datetime:
    """The aware UTC datetime `millis` epoch milliseconds denote."""
    return EPOCH + millis * _MS
