"""Impossible values in a decoded input record (the contract's "Bad input" rule).

A record may be perfectly valid Avro and still be impossible: an empty id, an id over 256
characters, a negative amount, an `occurred_at` before 2000 or more than one day in the future.
Such a record is permanent bad input and goes to the topic's `.dlq`.
"""

from __future__ import annotations

from dataclasses import fields
from datetime import UTC, datetime, timedelta
from typing import Any

from referrals.contract.records import Record
from referrals.platform.errors import InvalidRecord
from referrals.platform.money import CURRENCIES

MAX_ID_LENGTH = 256
EARLIEST = datetime(2000, 1, 1, tzinfo=UTC)
MAX_FUTURE = timedelta(days=1)
_TIME_FIELDS = ("occurred_at", "updated_at")


_ID_FIELDS: dict[type, tuple[str, ...]] = {}


def _id_fields(cls: type[Any]) -> tuple[str, ...]:
    names = _ID_FIELDS.get(cls)
    if names is None:
        names = tuple(
            f.name for f in fields(cls) if f.name.endswith("_id") or f.name == "referral_code"
        )
        _ID_FIELDS[cls] = names
    return names


def check_values(record: Record, now: datetime) -> None:
    """Raises InvalidRecord naming the first impossible field; returns None for a sound record."""
    cls: type[Any] = type(record)
    for name in _id_fields(cls):
        value = getattr(record, name)
        if value is None:
            continue
        if not value.strip():
            raise InvalidRecord("must not be empty", reason="EMPTY_ID", field=name)
        if len(value) > MAX_ID_LENGTH:
            raise InvalidRecord(
                f"is {len(value)} characters; at most {MAX_ID_LENGTH} are allowed",
                reason="ID_TOO_LONG",
                field=name,
            )
    amount = getattr(record, "amount_minor", None)
    if amount is not None and amount < 0:
        raise InvalidRecord(
            f"is negative ({amount})", reason="NEGATIVE_AMOUNT", field="amount_minor"
        )
    currency = getattr(record, "currency", None)
    if currency is not None and currency not in CURRENCIES:
        raise InvalidRecord(
            f"{currency!r} is not an ISO 4217 code", reason="BAD_CURRENCY", field="currency"
        )
    attempt = getattr(record, "attempt", None)
    if attempt is not None and attempt < 1:
        raise InvalidRecord(
            f"must be at least 1, got {attempt}", reason="BAD_ATTEMPT", field="attempt"
        )
    for name in _TIME_FIELDS:
        when = getattr(record, name, None)
        if when is None:
            continue
        if when < EARLIEST or when > now + MAX_FUTURE:
            raise InvalidRecord(
                f"{when.isoformat()} is before 2000 or more than one day in the future",
                reason="TIME_OUT_OF_RANGE",
                field=name,
            )
