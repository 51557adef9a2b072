"""The bad-input corpus: at least twenty classes of bad record on every input topic (every
topic the contract lists as a service's input, `operator.commands.v1` included), each class on
every topic where it can apply (`FEWER_CLASSES` names a topic where fewer can, and why).

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
import hashlib
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
    OperatorCommand,
    PayoutResult,
    PayoutStatus,
    ProgramConfig,
    Record,
    RewardAction,
    ShareEvent,
)
from referrals.contract.topics import (
    ADVOCATES,
    CONVERSIONS,
    DEALS,
    OPERATOR_COMMANDS,
    PAYOUT_RESULTS,
    PROGRAMS,
    SHARES,
)
from referrals.programs.document import canonical_json, parse_document, validate
from referrals.tools.faults.workload import PROGRAM_DOC, PROGRAM_ID, Workload

INPUT_TOPICS = (
    ADVOCATES,
    SHARES,
    CONVERSIONS,
    DEALS,
    PAYOUT_RESULTS,
    PROGRAMS,
    OPERATOR_COMMANDS,
)
# Where fewer than twenty classes can apply, and why (test_faults_workload checks the rest):
# - programs.config.v1 is a compacted global table: a null key is refused by the broker, and
#   the services read it through the global-table path, which does not compare a record's key
#   with its program_id (so a mismatched or non-UTF-8 key is no fault there); no enum or
#   amount field. Its document is validated as JSON by every service instead (checksum,
#   document, the program it names).
FEWER_CLASSES: dict[str, str] = {
    PROGRAMS: "compacted global table: no null key, keys not compared; no enum, no amount",
}
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
        OPERATOR_COMMANDS: "command_id",
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
    if topic == OPERATOR_COMMANDS:  # for a payout nobody issued: refused, not dead-lettered
        return OperatorCommand(
            f"bad-cmd-{tag}", RewardAction.APPROVE, f"po-bad-cmd-{tag}", "ops", at
        )
    return _config(f"bad-prog-{tag}", at)  # a sound config: only each class's fault is bad


def _config(program_id: str, at: datetime, *, version: int = 1) -> ProgramConfig:
    """A valid config of the workload's program document, renamed to `program_id`."""
    text = _document(program_id)
    return ProgramConfig(program_id, version, text, hashlib.sha256(text.encode()).hexdigest(), at)


def _document(program_id: str) -> str:
    doc = PROGRAM_DOC.replace(f"program_id: {PROGRAM_ID}", f"program_id: {program_id}")
    return canonical_json(validate(parse_document(doc, "faults")))


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
    add("bad_magic_version", key, MAGIC[:1] + b"\x02" + good[2:], "BAD_MAGIC")
    add("header_only", key, good[:10], "BAD_BODY")
    add("truncated_avro", key, good[: max(11, len(good) // 2)], "BAD_BODY")
    add("trailing_bytes", key, good + b"\x00\x02", "BAD_BODY")
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
    if topic == PAYOUT_RESULTS:
        variant("bad_attempt", "BAD_ATTEMPT", attempt=0)
    id_field = "event_id" if topic in (SHARES, CONVERSIONS, DEALS) else _key_field(topic)
    variant("empty_id", "EMPTY_ID", **{id_field: ""})
    variant("long_id", "ID_TOO_LONG", **{id_field: "e" * 300})
    other_id = {
        ADVOCATES: "program_id",
        SHARES: "advocate_id",
        CONVERSIONS: "prospect_id",
        DEALS: "deal_id",
        OPERATOR_COMMANDS: "target_id",
    }.get(topic)
    if other_id is not None:  # a second id (the record's key where it is one)
        variant("empty_other_id", "EMPTY_ID", **{other_id: " "})
        variant("long_other_id", "ID_TOO_LONG", **{other_id: "o" * 300})
    time_field = {
        ADVOCATES: "updated_at",
        PROGRAMS: "published_at",
        OPERATOR_COMMANDS: "issued_at",
    }.get(topic, "occurred_at")
    variant("ts_before_2000", "TOO_OLD", **{time_field: datetime(1999, 6, 1, tzinfo=UTC)})
    variant("ts_before_1970", "TOO_OLD", **{time_field: datetime(1960, 1, 1, tzinfo=UTC)})
    variant("ts_days_ahead", "IN_THE_FUTURE", **{time_field: now + timedelta(days=3)})
    variant("ts_year_9999", "IN_THE_FUTURE", **{time_field: datetime(9999, 1, 1, tzinfo=UTC)})
    if topic in (ADVOCATES, SHARES, CONVERSIONS, DEALS):
        variant("unknown_program", "UNKNOWN_PROGRAM", program_id="faults-no-such-program")
    elif topic == PAYOUT_RESULTS:
        add("unknown_payout", key, good, "UNKNOWN_PAYOUT")
    elif topic == OPERATOR_COMMANDS:  # answered REFUSED UNKNOWN_PAYOUT on the results topic
        add("unknown_payout", key, good, "", expect="accepted")
    big = "b" * NEAR_1_MIB
    big_field = {
        ADVOCATES: "display_name",
        SHARES: "referral_code",
        CONVERSIONS: "referral_code",
        DEALS: "currency",
        PAYOUT_RESULTS: "reason",
        PROGRAMS: "published_by",
        OPERATOR_COMMANDS: "reason",
    }[topic]
    variant("near_1mib_string", "STRING_TOO_LONG", **{big_field: big})
    if topic in (SHARES, CONVERSIONS):
        variant("bad_email_hash", "BAD_EMAIL_HASH", prospect_email_sha256="NOT-A-HASH")
    if topic == PROGRAMS:  # the document, validated by every service that reads the table
        variant("bad_document_checksum", "BAD_PROGRAM_DOCUMENT", document_sha256="0" * 64)
        text = "{not json"
        variant(
            "invalid_document",
            "BAD_PROGRAM_DOCUMENT",
            document=text,
            document_sha256=hashlib.sha256(text.encode()).hexdigest(),
        )
        text = _document(PROGRAM_ID)  # names the workload's program, not this one
        variant(
            "document_of_another_program",
            "BAD_PROGRAM_DOCUMENT",
            document=text,
            document_sha256=hashlib.sha256(text.encode()).hexdigest(),
        )
    # -- keys --------------------------------------------------------------------------------
    if topic not in COMPACTED_NO_NULL_KEY:
        add("null_key", None, good, "KEY_MISMATCH")
    if topic != PROGRAMS:  # see FEWER_CLASSES
        add("mismatched_key", b"someone-else", good, "KEY_MISMATCH")
        add("non_utf8_key", b"\xff\xfe\xfd", good, "KEY_MISMATCH")
    if topic == ADVOCATES:
        add("tombstone", b"faults-unknown-advocate", None, "", expect="accepted")
    elif topic == PROGRAMS:  # a config tombstone for a program nobody runs
        add("tombstone", key, None, "", expect="accepted")
    else:
        add("tombstone", key, None, "TOMBSTONE")
    dup = (key, good) if topic == OPERATOR_COMMANDS else _duplicate(topic, wl, rng, codec, now)
    if dup is not None:
        add("duplicate_event_id", dup[0], dup[1], "", expect="accepted")
    return out


def _is_enum(avro_type: Any) -> bool:
    return isinstance(avro_type, dict) and avro_type.get("type") == "enum"


def _duplicate(
    topic: str, wl: Workload, rng: random.Random, codec: AvroCodec, now: datetime
) -> tuple[bytes, bytes] | None:
    """A valid record sent a second time: a workload event byte for byte (deals: a WON, so a
    doubled payout shows); the workload's program config again at the version in force. (An
    operator command's is sent twice by `_classes`: its `unknown_payout` record again. Payout
    results have none here: one sent before its payout is issued may wait past the unknown-
    payout wait on a slow run; finance sends every tenth PAID twice instead, `inject.Finance`.)"""
    if topic == PROGRAMS:
        config = _config(PROGRAM_ID, now - timedelta(minutes=5))  # `put` published version 1
        return PROGRAM_ID.encode(), codec.encode(config)
    choices = [(k, r) for t, k, r in wl.events if t == topic and (topic != DEALS or _won(r))]
    if not choices:
        return None
    key, record = rng.choice(choices)
    return key.encode(), codec.encode(record)


def _won(record: Record) -> bool:
    return getattr(record, "stage", None) is DealStage.WON
