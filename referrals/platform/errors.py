"""Every error the engine raises on purpose.

    ReferralsError
    ├── PermanentError            bad data: never retried; the record goes to the topic's .dlq
    │   ├── DecodeError           bytes that cannot become a contract record
    │   ├── InvalidRecord         a decoded record holding an impossible value
    │   └── UnknownProgram        an event for a program whose config never arrived
    ├── TransientError            broker or network trouble: retried with backoff
    ├── ConfigError               invalid settings or an invalid program document
    └── InputError                an operator's input file (CLI) is malformed

Each carries a `reason` code (UPPER_SNAKE) that DLQ headers, metrics labels and CLI messages use,
so what went wrong is machine-readable as well as human-readable.
"""

from __future__ import annotations


class ReferralsError(Exception):
    """Base class; `reason` is a stable code, the message says what and where."""

    reason: str = "ERROR"

    def __init__(self, message: str, *, reason: str | None = None) -> None:
        super().__init__(message)
        if reason is not None:
            self.reason = reason


class PermanentError(ReferralsError):
    """The input itself is wrong; retrying cannot help."""

    reason = "PERMANENT"


class DecodeError(PermanentError):
    """Bytes that are not a decodable contract record.

    Reasons: BAD_MAGIC, UNKNOWN_FINGERPRINT, WRONG_RECORD_TYPE, MISSING_FIELD, UNKNOWN_SYMBOL,
    BAD_BODY.
    """

    reason = "BAD_BODY"


class InvalidRecord(PermanentError):
    """A record that decoded but holds an impossible value.

    Reasons: EMPTY_ID, ID_TOO_LONG, STRING_TOO_LONG, BAD_EMAIL_HASH, NEGATIVE_AMOUNT,
    AMOUNT_ABOVE_CEILING, BAD_CURRENCY, BAD_ATTEMPT, TIME_OUT_OF_RANGE (docs/bad-input.md).
    """

    reason = "INVALID_RECORD"

    def __init__(self, message: str, *, reason: str, field: str) -> None:
        super().__init__(f"field '{field}': {message}", reason=reason)
        self.field = field
        self.detail = message  # what is wrong, without the field's name


class UnknownProgram(PermanentError):
    """No config arrived for the event's program within the allowed wait."""

    reason = "UNKNOWN_PROGRAM"


class TransientError(ReferralsError):
    """The broker or network failed; the same operation may succeed later."""

    reason = "TRANSIENT"


class ConfigError(ReferralsError):
    """Settings or a program document are invalid."""

    reason = "CONFIG"


class InputError(ReferralsError):
    """An operator's input is malformed; the message names the line and the field."""

    reason = "INPUT"

    def __init__(self, message: str, *, line: int | None = None, field: str | None = None) -> None:
        where = []
        if line is not None:
            where.append(f"line {line}")
        if field is not None:
            where.append(f"field '{field}'")
        prefix = ", ".join(where)
        super().__init__(f"{prefix}: {message}" if prefix else message)
        self.detail = message  # what is wrong, without where
        self.line = line
        self.field = field
