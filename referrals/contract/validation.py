"""Impossible values in a decoded input record (the contract's "Bad input" rule).

A record may be perfectly valid Avro and still be impossible. Each kind of impossible value has
its own reason code (the DLQ header `dlq.error.reason`; docs/bad-input.md lists them all):

    EMPTY_ID               an id (a field ending in `_id`, or `referral_code`) empty or blank
    ID_TOO_LONG            an id over 256 characters
    STRING_TOO_LONG        another string over 4,096 characters (a program document excepted)
    BAD_EMAIL_HASH         an email hash that is not 64 lowercase hex digits
    NEGATIVE_AMOUNT        an amount below zero
    AMOUNT_ABOVE_CEILING   an amount above its currency's ceiling (`AmountLimits`)
    BAD_CURRENCY           a currency that is not an ISO 4217 code
    BAD_ATTEMPT            an attempt below 1
    TIME_OUT_OF_RANGE      a timestamp before 2000 or more than one day in the future

Such a record is permanent bad input and goes to the topic's `.dlq`. Strings are checked before
anything else reads them, so no later code (a store's key packing, a template) sees a 900 KB
"hash".
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import fields
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any, get_type_hints

from referrals.contract.records import Record
from referrals.platform.errors import InvalidRecord
from referrals.platform.money import CURRENCIES
from referrals.platform.settings import AmountLimits

MAX_ID_LENGTH = 256
MAX_STRING_LENGTH = 4096
EARLIEST = datetime(2000, 1, 1, tzinfo=UTC)
MAX_FUTURE = timedelta(days=1)
DEFAULT_LIMITS = AmountLimits()
EMAIL_HASH_FIELDS = frozenset({"email_sha256", "prospect_email_sha256"})
# A program's document is the validated program (YAML/JSON); its own checks bound it.
UNBOUNDED_STRINGS = frozenset({"document"})
_EMAIL_HASH = re.compile(r"[0-9a-f]{64}")


class _Shape:
    """A record type's fields by the check they get, worked out once per type."""

    def __init__(self, cls: type[Any]) -> None:
        hints = get_type_hints(cls)
        names = [f.name for f in fields(cls)]
        self.ids = tuple(n for n in names if n.endswith("_id") or n == "referral_code")
        self.hashes = tuple(n for n in names if n in EMAIL_HASH_FIELDS)
        self.strings = tuple(
            n
            for n in names
            if n not in self.ids
            and n not in self.hashes
            and n not in UNBOUNDED_STRINGS
            and _holds(hints[n], str)
        )
        self.times = tuple(n for n in names if _holds(hints[n], datetime))


def _holds(hint: Any, kind: type) -> bool:
    """True for `kind`, a subclass of it (a StrEnum is a str) or an optional one."""
    options = getattr(hint, "__args__", None) or (hint,)
    return any(isinstance(o, type) and issubclass(o, kind) for o in options)


_SHAPES: dict[type, _Shape] = {}


def _shape(cls: type[Any]) -> _Shape:
    shape = _SHAPES.get(cls)
    if shape is None:
        shape = _SHAPES[cls] = _Shape(cls)
    return shape


def check_values(record: Record, now: datetime, *, limits: AmountLimits = DEFAULT_LIMITS) -> None:
    """Raises InvalidRecord naming the first impossible field; returns None for a sound record."""
    shape = _shape(type(record))
    for name in shape.ids:
        value = getattr(record, name)
        if value is None:
            continue
        if len(value) > MAX_ID_LENGTH:
            raise InvalidRecord(
                f"is {len(value)} characters; at most {MAX_ID_LENGTH} are allowed",
                reason="ID_TOO_LONG",
                field=name,
            )
        if not value.strip():
            raise InvalidRecord("must not be empty", reason="EMPTY_ID", field=name)
    for name in shape.hashes:
        value = getattr(record, name)
        if value is not None and not _EMAIL_HASH.fullmatch(value):
            shown = value if len(value) <= 80 else f"{value[:80]}... ({len(value)} characters)"
            raise InvalidRecord(
                f"{shown!r} is not a SHA-256 as 64 lowercase hex digits",
                reason="BAD_EMAIL_HASH",
                field=name,
            )
    for name in shape.strings:
        value = getattr(record, name)
        if value is not None and len(value) > MAX_STRING_LENGTH:
            raise InvalidRecord(
                f"is {len(value)} characters; at most {MAX_STRING_LENGTH} are allowed",
                reason="STRING_TOO_LONG",
                field=name,
            )
    currency = getattr(record, "currency", None)
    if currency is not None and currency not in CURRENCIES:
        raise InvalidRecord(
            f"{currency!r} is not an ISO 4217 code", reason="BAD_CURRENCY", field="currency"
        )
    amount = getattr(record, "amount_minor", None)
    if amount is not None and amount < 0:
        raise InvalidRecord(
            f"is negative ({amount})", reason="NEGATIVE_AMOUNT", field="amount_minor"
        )
    if amount is not None and amount > (ceiling := limits.ceiling(currency)):
        raise InvalidRecord(
            f"{amount} is above the ceiling of {ceiling} minor units"
            + (f" for {currency}" if currency else ""),
            reason="AMOUNT_ABOVE_CEILING",
            field="amount_minor",
        )
    attempt = getattr(record, "attempt", None)
    if attempt is not None and attempt < 1:
        raise InvalidRecord(
            f"must be at least 1, got {attempt}", reason="BAD_ATTEMPT", field="attempt"
        )
    for name in shape.times:
        when = getattr(record, name)
        if when is None:
            continue
        if when < EARLIEST or when > now + MAX_FUTURE:
            raise InvalidRecord(
                f"{when.isoformat()} is before 2000 or more than one day in the future",
                reason="TIME_OUT_OF_RANGE",
                field=name,
            )


def checks(limits: AmountLimits) -> Callable[[Record, datetime], None]:
    """`check_values` with the configured amount ceilings, as a catalogue's validator."""
    return partial(check_values, limits=limits)
