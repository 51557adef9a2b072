"""A bad record goes to `<topic>.dlq` with its bytes unchanged and headers saying why and where
from, so an operator can inspect and replay it."""

from __future__ import annotations

import pytest

from referrals.contract.topics import CATALOGUE, TopicNames, dlq_of, physical_topics
from referrals.platform.errors import DecodeError, InvalidRecord, UnknownProgram
from referrals.streams.dlq import MAX_MESSAGE, DeadLetter, dead_letter, header_dict

KEY = b"deal-1"
VALUE = b"\xc3\x01\x00\xff not avro \x80"
HEADERS = (
    "dlq.error.class",
    "dlq.error.reason",
    "dlq.error.message",
    "dlq.service",
    "dlq.original.topic",
    "dlq.original.partition",
    "dlq.original.offset",
    "dlq.original.timestamp",
)


def letter(
    error: BaseException,
    *,
    topic: str = "referral.deals.v1",
    key: bytes | None = KEY,
    value: bytes | None = VALUE,
) -> DeadLetter:
    return dead_letter(
        service="attribution",
        topic=topic,
        partition=4,
        offset=1234567,
        timestamp_ms=1715938215123,
        key=key,
        value=value,
        error=error,
    )


def test_the_dead_letter_goes_to_the_topics_dlq() -> None:
    assert letter(DecodeError("x")).topic == "referral.deals.v1.dlq"


def test_a_prefixed_physical_topic_keeps_its_prefix() -> None:
    assert letter(DecodeError("x"), topic="t1.referral.deals.v1").topic == (
        "t1.referral.deals.v1.dlq"
    )


def test_every_header_is_present_once_with_its_value() -> None:
    dl = letter(DecodeError("unknown writer schema fingerprint 00", reason="UNKNOWN_FINGERPRINT"))
    names = [name for name, _ in dl.headers]
    assert sorted(names) == sorted(HEADERS)
    assert all(isinstance(value, bytes) for _, value in dl.headers)
    assert dict(dl.headers) == {
        "dlq.error.class": b"DecodeError",
        "dlq.error.reason": b"UNKNOWN_FINGERPRINT",
        "dlq.error.message": b"unknown writer schema fingerprint 00",
        "dlq.service": b"attribution",
        "dlq.original.topic": b"referral.deals.v1",
        "dlq.original.partition": b"4",
        "dlq.original.offset": b"1234567",
        "dlq.original.timestamp": b"1715938215123",
    }


def test_key_and_value_bytes_are_kept_unchanged() -> None:
    dl = letter(DecodeError("x"))
    assert dl.key == KEY
    assert dl.value == VALUE


def test_a_missing_key_or_value_stays_missing() -> None:
    dl = letter(DecodeError("x"), key=None, value=None)
    assert dl.key is None
    assert dl.value is None


def test_a_huge_message_is_truncated() -> None:
    dl = letter(DecodeError("x" * 100_000))
    message = dict(dl.headers)["dlq.error.message"]
    assert len(message) == MAX_MESSAGE
    assert message == b"x" * MAX_MESSAGE


def test_a_message_with_non_ascii_text_is_utf_8() -> None:
    dl = letter(DecodeError("caf\u00e9 \u2603"))
    assert dict(dl.headers)["dlq.error.message"].decode("utf-8") == "caf\u00e9 \u2603"


@pytest.mark.parametrize(
    ("error", "cls", "reason"),
    [
        (DecodeError("bad", reason="BAD_MAGIC"), "DecodeError", "BAD_MAGIC"),
        (DecodeError("bad"), "DecodeError", "BAD_BODY"),  # the class's default reason
        (
            InvalidRecord("is negative", reason="NEGATIVE_AMOUNT", field="amount_minor"),
            "InvalidRecord",
            "NEGATIVE_AMOUNT",
        ),
        (UnknownProgram("no config for acme"), "UnknownProgram", "UNKNOWN_PROGRAM"),
    ],
)
def test_the_reason_is_the_referrals_errors_reason(error: Exception, cls: str, reason: str) -> None:
    headers = dict(letter(error).headers)
    assert headers["dlq.error.class"] == cls.encode()
    assert headers["dlq.error.reason"] == reason.encode()


@pytest.mark.parametrize("error", [ValueError("boom"), KeyError("stage"), ZeroDivisionError()])
def test_the_reason_of_any_other_exception_is_its_class_name(error: Exception) -> None:
    headers = dict(letter(error).headers)
    name = type(error).__name__.encode()
    assert headers["dlq.error.reason"] == name
    assert headers["dlq.error.class"] == name


def test_header_dict_decodes_consumed_headers() -> None:
    dl = letter(InvalidRecord("is negative", reason="NEGATIVE_AMOUNT", field="amount_minor"))
    headers = header_dict(list(dl.headers))
    assert headers["dlq.error.reason"] == "NEGATIVE_AMOUNT"
    assert headers["dlq.error.message"] == "field 'amount_minor': is negative"
    assert headers["dlq.original.offset"] == "1234567"


def test_header_dict_of_no_headers_is_empty() -> None:
    assert header_dict(None) == {}
    assert header_dict([]) == {}


KAFKA_RECORD_LIMIT = 1024 * 1024


def size(dl: DeadLetter) -> int:
    """Bytes of key, value and headers: what counts against the broker's record limit."""
    headers = sum(len(name.encode()) + len(value) for name, value in dl.headers)
    return len(dl.key or b"") + len(dl.value or b"") + headers


def test_a_near_one_mib_value_is_truncated_to_512_kib_and_says_so() -> None:
    original = bytes(range(256)) * 4090  # 1,047,040 bytes: fits alone, not with the headers
    dl = letter(DecodeError("x"), value=original)
    assert dl.value == original[: 512 * 1024]
    headers = dict(dl.headers)
    assert headers["dlq.truncated"] == b"true"
    assert headers["dlq.original.size"] == str(len(original)).encode()
    assert size(dl) < KAFKA_RECORD_LIMIT * 0.6


def test_a_value_of_exactly_512_kib_is_kept_whole_and_not_marked() -> None:
    original = b"v" * (512 * 1024)
    dl = letter(DecodeError("x"), value=original)
    assert dl.value == original
    assert "dlq.truncated" not in dict(dl.headers)
    assert "dlq.original.size" not in dict(dl.headers)


def test_an_oversized_key_is_truncated_and_says_so() -> None:
    key = b"k" * 900_000
    dl = letter(DecodeError("x"), key=key)
    assert dl.key == key[:1024]
    headers = dict(dl.headers)
    assert headers["dlq.key.truncated"] == b"true"
    assert headers["dlq.original.key.size"] == b"900000"
    assert dl.value == VALUE and "dlq.truncated" not in headers


def test_the_whole_dead_letter_stays_well_under_one_mib_whatever_the_input() -> None:
    huge = "é" * 1_000_000  # a message, service and topic name of 2 MB each
    dl = dead_letter(
        service=huge,
        topic="t" + huge,
        partition=4,
        offset=1,
        timestamp_ms=1,
        key=b"k" * 1_000_000,
        value=b"v" * 1_000_000,
        error=DecodeError(huge, reason="X" * 1_000_000),
    )
    assert size(dl) < KAFKA_RECORD_LIMIT * 0.6


def test_dead_letter_topics_keep_records_30_days_by_default_the_rest_forever_or_compacted() -> None:
    names = TopicNames("p.")
    default = physical_topics(names)
    week = physical_topics(names, dlq_retention_days=7)
    for spec in CATALOGUE:
        assert default[names(dlq_of(spec.name))] == {"retention.ms": str(30 * 86_400_000)}
        assert week[names(dlq_of(spec.name))] == {"retention.ms": str(7 * 86_400_000)}
        assert default[names(spec.name)].get("retention.ms", "-1") == "-1"
    with pytest.raises(ValueError, match="at least 1"):
        physical_topics(names, dlq_retention_days=0)
