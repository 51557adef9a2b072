"""The bad-input corpus: at least twenty classes of bad record on every input topic.

Every record is built here byte by byte and produced with a raw aiokafka producer (never the
validating publish path, which would refuse most of them). Each `BadRecord` says what should
become of it: `dlq` (dead-lettered on `<topic>.dlq` by at least one service that consumes the
topic, with any reason; the reason the contract suggests is kept for the report), or
`accepted` (valid by the contract: a duplicate event id has no second effect, which the payout
check covers; a tombstone for an unknown advocate is an erasure of nobody).

Where the registry cannot express a class, the report says what it became: a "missing field"
record is written with a writer schema lacking a required field, whose fingerprint the registry
does not know (so UNKNOWN_FINGERPRINT, unless a reader learns that schema); an "unknown enum
symbol" is written under the registered fingerprint with a symbol index past the last symbol.
"""

from __future__ import annotations

import copy
import json
import os
import random
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from io import BytesIO
from typing import Any

from fastavro import parse_schema, schemaless_writer
from fastavro.schema import fingerprint, to_parsing_canonical_form

from referrals.contract.avro import MAGIC, AvroCodec
from referrals.contract.records import (
    AdvocateProfile,
    Channel,
    ConversionEvent,
    DealEvent,
    DealStage,
    PayoutResult,
    PayoutStatus,
    ProgramConfig,
    Record,
    ShareEvent,
)
from referrals.contract.topics import (
    ADVOCATES,
    CONVERSIONS,
    DEALS,
    PAYOUT_RESULTS,
    PROGRAMS,
    SHARES,
)
from referrals.tools.faults.workload import PROGRAM_ID, Workload

INPUT_TOPICS = (ADVOCATES, SHARES, CONVERSIONS, DEALS, PAYOUT_RESULTS, PROGRAMS)
NEAR_1_MIB = 1_000_000
# A null key on a compacted topic (advocates, programs) is refused by the broker itself
# (InvalidRecordException), so it can never reach a service; aiokafka 0.x retries that batch
# forever, stalling every record batched with it. Not sent there.
COMPACTED_NO_NULL_KEY = (
    ADVOCATES,
    PROGRAMS,
)  # characters: the record stays under the broker's 1 MiB default limit


@dataclass(frozen=True)
class BadRecord:
    cls: str  # the class of bad input
    topic: str  # logical topic
    key: bytes | None
    value: bytes | None
    expect: str  # "dlq" or "accepted"
    reason: str  # the reason the contract suggests ("" when accepted)


def _key_field(topic: str) -> str:
    return {
        ADVOCATES: "advocate_id",
        SHARES: "advocate_id",
        CONVERSIONS: "prospect_id",
        DEALS: "deal_id",
        PAYOUT_RESULTS: "payout_id",
        PROGRAMS: "program_id",
    }[topic]


def _base(topic: str, tag: str, now: datetime) -> Record:
    """A valid record of the topic's type, for the workload's program, with ids of its own."""
    at = now - timedelta(minutes=5)
    if topic == ADVOCATES:
        return AdvocateProfile(
            PROGRAM_ID, f"bad-adv-{tag}", "x@bad.example", "X", "0" * 64, False, True, at
        )
    if topic == SHARES:
        return ShareEvent(
            f"bad-sh-{tag}",
            PROGRAM_ID,
            f"bad-adv-{tag}",
            Channel.EMAIL,
            f"bad-code-{tag}",
            at,
        )
    if topic == CONVERSIONS:
        return ConversionEvent(f"bad-cv-{tag}", PROGRAM_ID, f"bad-pr-{tag}", at, f"bad-code-{tag}")
    if topic == DEALS:
        return DealEvent(
            f"bad-dl-{tag}",
            PROGRAM_ID,
            f"bad-deal-{tag}",
            f"bad-pr-{tag}",
            DealStage.WON,
            at,
            100_000,
            "USD",
        )
    if topic == PAYOUT_RESULTS:
        return PayoutResult(f"po-bad-{tag}", 1, PayoutStatus.PAID, at)
    return ProgramConfig(f"bad-prog-{tag}", 1, "{}", "0" * 64, at, "faults")


def _key_of(record: Record, topic: str) -> bytes:
    return str(getattr(record, _key_field(topic))).encode()


def _encode_with(schema: dict[str, Any], datum: dict[str, Any], header_of: str) -> bytes:
    """Avro single-object encoding of `datum` written with `schema`. `header_of`: "own" puts
    that schema's own fingerprint; "registered" the registered record's (a lie about the body)."""
    parsed = parse_schema(schema, named_schemas={})
    out = BytesIO()
    if header_of == "own":
        fp = bytes.fromhex(fingerprint(to_parsing_canonical_form(schema), "CRC-64-AVRO"))
        out.write(MAGIC + fp)
    schemaless_writer(out, parsed, datum)
    return out.getvalue()


def _datum(record: Record) -> dict[str, Any]:
    return {name: getattr(record, name) for name in record.__dataclass_fields__}


def build(workload: Workload, now: datetime, seed: int, copies: int = 1) -> list[BadRecord]:
    """Every class on every input topic where it applies, `copies` times (ids differ)."""
    rng = random.Random(seed)
    codec = AvroCodec()
    out: list[BadRecord] = []
    for copy_no in range(copies):
        for topic in INPUT_TOPICS:
            out.extend(_classes(topic, f"{seed}-{copy_no}", now, rng, codec, workload))
    rng.shuffle(out)
    return out


def _classes(
    topic: str, tag: str, now: datetime, rng: random.Random, codec: AvroCodec, wl: Workload
) -> list[BadRecord]:
    base = _base(topic, tag, now)
    key = _key_of(base, topic)
    good = codec.encode(base)
    registered = codec.registry.latest(type(base).__name__)
    raw_schema: dict[str, Any] = json.loads(json.dumps(registered.raw))
    out: list[BadRecord] = []

    def add(cls: str, k: bytes | None, v: bytes | None, reason: str, expect: str = "dlq") -> None:
        out.append(BadRecord(cls, topic, k, v, expect, reason))

    def variant(cls: str, why: str, **changes: Any) -> None:
        record = replace(base, **changes)
        add(cls, _key_of(record, topic), codec.encode(record), why)

    # -- undecodable -------------------------------------------------------------------------
    add("random_bytes", key, b"\x00" + os.urandom(63), "BAD_MAGIC")
    add("empty_value", key, b"", "BAD_MAGIC")
    add("truncated_avro", key, good[: max(11, len(good) // 2)], "BAD_BODY")
    add("unknown_fingerprint", key, MAGIC + os.urandom(8) + good[10:], "UNKNOWN_FINGERPRINT")
    wrong = (
        PayoutResult("po-wrong", 1, PayoutStatus.PAID, now)
        if topic != PAYOUT_RESULTS
        else (ConversionEvent("cv-wrong", PROGRAM_ID, "pr-wrong", now))
    )
    add("wrong_record_type", key, codec.encode(wrong), "WRONG_RECORD_TYPE")
    lacking = copy.deepcopy(raw_schema)
    dropped = next(f for f in lacking["fields"] if f["name"] not in (_key_field(topic),))
    lacking["fields"] = [f for f in lacking["fields"] if f is not dropped]
    datum = {k: v for k, v in _datum(base).items() if k != dropped["name"]}
    add("missing_field", key, _encode_with(lacking, datum, "own"), "MISSING_FIELD")
    if topic == PROGRAMS:
        # A program config tombstone for a program nobody runs; other value faults on the
        # config topic would need a document the services parse (kept to decoding faults).
        add("tombstone", key, None, "", expect="accepted")
        return out
    enum_field = next((f for f in raw_schema["fields"] if _is_enum(f["type"])), None)
    if enum_field is not None:
        extended = copy.deepcopy(raw_schema)
        for f in extended["fields"]:
            if f["name"] == enum_field["name"]:
                f["type"]["symbols"] = [*f["type"]["symbols"], "FAULTS_BOGUS"]
        body = _encode_with(extended, {**_datum(base), enum_field["name"]: "FAULTS_BOGUS"}, "reg")
        add("unknown_enum_symbol", key, registered.header + body, "UNKNOWN_SYMBOL")
    # -- impossible values -------------------------------------------------------------------
    if topic == DEALS:
        variant("negative_amount", "NEGATIVE_AMOUNT", amount_minor=-5_000)
        variant("huge_amount", "AMOUNT_TOO_LARGE", amount_minor=2**62)
        variant("bad_currency", "BAD_CURRENCY", currency="ZZZ")
    id_field = "event_id" if topic in (SHARES, CONVERSIONS, DEALS) else _key_field(topic)
    if id_field == _key_field(topic):
        variant("empty_id", "EMPTY_ID", **{id_field: ""})
        variant("long_id", "ID_TOO_LONG", **{id_field: "x" * 300})
    else:
        variant("empty_id", "EMPTY_ID", **{id_field: ""})
        variant("long_id", "ID_TOO_LONG", **{id_field: "e" * 300})
    time_field = "updated_at" if topic == ADVOCATES else "occurred_at"
    variant("ts_before_2000", "TOO_OLD", **{time_field: datetime(1999, 6, 1, tzinfo=UTC)})
    variant("ts_days_ahead", "IN_THE_FUTURE", **{time_field: now + timedelta(days=3)})
    if topic != PAYOUT_RESULTS:
        variant("unknown_program", "UNKNOWN_PROGRAM", program_id="faults-no-such-program")
    else:
        add("unknown_payout", key, good, "UNKNOWN_PAYOUT")
    big = "b" * NEAR_1_MIB
    big_field = {
        ADVOCATES: "display_name",
        SHARES: "referral_code",
        CONVERSIONS: "referral_code",
        DEALS: "currency",
        PAYOUT_RESULTS: "reason",
    }[topic]
    variant("near_1mib_string", "STRING_TOO_LONG", **{big_field: big})
    if topic in (SHARES, CONVERSIONS):
        variant("bad_email_hash", "BAD_EMAIL_HASH", prospect_email_sha256="NOT-A-HASH")
    # -- keys --------------------------------------------------------------------------------
    if topic != ADVOCATES:  # see COMPACTED_NO_NULL_KEY
        add("null_key", None, good, "KEY_MISMATCH")
    add("mismatched_key", b"someone-else", good, "KEY_MISMATCH")
    add("non_utf8_key", b"\xff\xfe\xfd", good, "KEY_MISMATCH")
    if topic == ADVOCATES:
        add("tombstone", b"faults-unknown-advocate", None, "", expect="accepted")
    else:
        add("tombstone", key, None, "TOMBSTONE")
    dup = _duplicate(topic, wl, rng, codec)
    if dup is not None:
        add("duplicate_event_id", dup[0], dup[1], "", expect="accepted")
    return out


def _is_enum(avro_type: Any) -> bool:
    return isinstance(avro_type, dict) and avro_type.get("type") == "enum"


def _duplicate(
    topic: str, wl: Workload, rng: random.Random, codec: AvroCodec
) -> tuple[bytes, bytes] | None:
    """A workload event sent again, byte for byte (deals: a WON, so a doubled payout shows)."""
    choices = [
        (k, r)
        for t, k, r in wl.events
        if t == topic and (topic != DEALS or getattr(r, "stage", None) is DealStage.WON)
    ]
    if not choices:
        return None
    key, record = rng.choice(choices)
    return key.encode(), codec.encode(record)
