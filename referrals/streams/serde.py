"""The codec port: how the runtime turns record values into bytes and back.

The runtime never knows the record types; the application hands it a codec (for this project
the contract's Avro single-object codec, `referrals.contract.avro.AvroCodec`). A value that
cannot be decoded raises a `PermanentError` subclass, and the record goes to its dead-letter
topic.
"""

from __future__ import annotations

from typing import Any, Protocol


class Codec(Protocol):
    def decode(self, data: bytes, expected: str | None = None) -> Any:
        """The record in `data`; `expected` names the record type the topic must carry."""
        ...

    def encode(self, record: Any, version: int | None = None) -> bytes:
        """`record` in its newest schema, or in schema `version` (`TopicSpec.schema_version`)."""
        ...
