"""Protobuf messages <-> the contract's data, at the API's edge.

Requests become the JSON form `referrals publish` reads (Avro field names, enum symbols, epoch
milliseconds), so one implementation (`referrals.contract.publish.check_records`) checks both.
The messages mirror the Avro records field for field: an unset proto3 `optional` is an omitted
(null) field, an unset Timestamp a missing one, and an enum value is its Avro symbol
(`CHANNEL_EMAIL` -> `EMAIL`). `..._UNSPECIFIED`, or a number the proto does not name, is kept as
it is, which no Avro enum accepts: the check reports it as an unknown symbol.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message
from google.protobuf.timestamp_pb2 import Timestamp

from referrals.contract.records import ProgramConfig
from services.api.proto import referrals_pb2 as pb

TIMESTAMP = Timestamp.DESCRIPTOR.full_name


def to_json_object(message: Message) -> dict[str, Any]:
    """A record message as the JSON object a `referrals publish` line would hold."""
    out: dict[str, Any] = {}
    for field in message.DESCRIPTOR.fields:
        if field.has_presence and not message.HasField(field.name):
            continue
        value = getattr(message, field.name)
        if field.type == FieldDescriptor.TYPE_ENUM:
            out[field.name] = _symbol(field, value)
        elif field.type == FieldDescriptor.TYPE_MESSAGE:
            if field.message_type.full_name != TIMESTAMP:
                raise TypeError(f"{field.full_name}: no JSON form for {field.message_type.name}")
            out[field.name] = value.ToMilliseconds()
        else:
            out[field.name] = value
    return out


def _symbol(field: FieldDescriptor, number: int) -> str:
    enum = field.enum_type
    named = enum.values_by_number.get(number)
    if named is None:
        return f"{enum.name} value {number}"
    prefix = _prefix(enum.name)
    symbol: str = named.name
    return symbol if symbol == f"{prefix}UNSPECIFIED" else symbol.removeprefix(prefix)


def _prefix(enum_name: str) -> str:
    """`DealStage` -> `DEAL_STAGE_`: the proto style prefix of the enum's values."""
    snake = "".join(f"_{c}" if c.isupper() and i else c for i, c in enumerate(enum_name))
    return snake.upper() + "_"


def timestamp(when: datetime) -> Timestamp:
    stamp = Timestamp()
    stamp.FromDatetime(when.astimezone(UTC))
    return stamp


def program(config: ProgramConfig) -> pb.Program:
    message = pb.Program(
        program_id=config.program_id,
        version=config.version,
        document=config.document,
        document_sha256=config.document_sha256,
        published_at=timestamp(config.published_at),
    )
    if config.published_by is not None:
        message.published_by = config.published_by
    return message
