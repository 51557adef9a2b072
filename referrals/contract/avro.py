"""Avro single-object encoding against the schema registry in `schemas/`.

Wire format (Avro specification, "Single object encoding"): `C3 01`, the 8-byte little-endian
CRC-64-AVRO fingerprint of the writer schema's Parsing Canonical Form, then the binary body.
Every `.avsc` ever published stays in `schemas/` as `<Record>.v<N>.avsc`; a reader resolves the
writer schema by fingerprint and reads into the newest version of the same record. Schemas are
parsed and fingerprinted once, when the registry is built.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, fields
from enum import StrEnum
from io import BytesIO
from pathlib import Path
from typing import Any, get_type_hints

from fastavro import schemaless_reader, schemaless_writer
from fastavro._read_common import SchemaResolutionError
from fastavro.schema import fingerprint, parse_schema, to_parsing_canonical_form

from referrals.contract.records import RECORD_TYPES, Record
from referrals.platform.errors import DecodeError
from referrals.platform.evolve import slot_setters

MAGIC = b"\xc3\x01"
HEADER_LEN = len(MAGIC) + 8
# The repository's schemas/ (or REFERRALS_SCHEMA_DIR, e.g. in a container image).
SCHEMA_DIR = Path(
    os.environ.get("REFERRALS_SCHEMA_DIR") or Path(__file__).resolve().parents[2] / "schemas"
)
_FILE_NAME = re.compile(r"^(?P<name>[A-Za-z_][A-Za-z0-9_]*)\.v(?P<version>[0-9]+)\.avsc$")

Datum = dict[str, Any]


@dataclass(frozen=True, slots=True)
class SchemaVersion:
    """One published version of one record's schema."""

    name: str
    version: int
    path: Path
    raw: Mapping[str, Any]
    parsed: Any
    fingerprint: bytes  # 8 bytes, little-endian, as written on the wire

    @property
    def header(self) -> bytes:
        return MAGIC + self.fingerprint


def _load_version(path: Path) -> SchemaVersion:
    match = _FILE_NAME.match(path.name)
    if match is None:
        raise ValueError(f"{path}: schema files are named <Record>.v<N>.avsc")
    raw = json.loads(path.read_text(encoding="utf-8"))
    if raw.get("name") != match["name"]:
        raise ValueError(f"{path}: record name {raw.get('name')!r} does not match the file name")
    canonical = to_parsing_canonical_form(raw)
    # Each file is self-contained, so it gets its own named-type namespace.
    parsed = parse_schema(raw, named_schemas={})
    return SchemaVersion(
        name=match["name"],
        version=int(match["version"]),
        path=path,
        raw=raw,
        parsed=parsed,
        fingerprint=bytes.fromhex(fingerprint(canonical, "CRC-64-AVRO")),
    )


class SchemaRegistry:
    """All schema versions in a directory, by record name and by fingerprint."""

    def __init__(self, directory: Path = SCHEMA_DIR) -> None:
        self.directory = directory
        versions: dict[str, list[SchemaVersion]] = {}
        for path in sorted(directory.glob("*.avsc")):
            sv = _load_version(path)
            versions.setdefault(sv.name, []).append(sv)
        if not versions:
            raise ValueError(f"no .avsc schemas found in {directory}")
        self.versions = {n: sorted(vs, key=lambda v: v.version) for n, vs in versions.items()}
        self.by_fingerprint: dict[bytes, SchemaVersion] = {}
        self._lacking: dict[bytes, tuple[SchemaVersion, str]] | None = None
        for vs in self.versions.values():
            for sv in vs:
                other = self.by_fingerprint.setdefault(sv.fingerprint, sv)
                if other is not sv:
                    raise ValueError(f"{sv.path} and {other.path} have the same fingerprint")

    def lacking_one_field(self) -> dict[bytes, tuple[SchemaVersion, str]]:
        """Fingerprints of every known schema with one field that has no default removed: a
        producer writing with such a schema sends a record lacking a required field. Worked
        out on the first unknown fingerprint, then kept."""
        if self._lacking is None:
            self._lacking = {}
            for vs in self.versions.values():
                for sv in vs:
                    for field in sv.raw.get("fields", ()):
                        if "default" in field:
                            continue
                        fewer = {
                            **sv.raw,
                            "fields": [f for f in sv.raw["fields"] if f is not field],
                        }
                        fp = fingerprint(to_parsing_canonical_form(fewer), "CRC-64-AVRO")
                        self._lacking.setdefault(bytes.fromhex(fp), (sv, field["name"]))
        return self._lacking

    def version(self, name: str, version: int) -> SchemaVersion:
        """Schema `version` of record `name`."""
        for sv in self.versions.get(name, ()):
            if sv.version == version:
                return sv
        raise KeyError(f"no schema {name} v{version} in {self.directory}")

    def latest(self, name: str) -> SchemaVersion:
        try:
            return self.versions[name][-1]
        except KeyError:
            raise KeyError(f"no schema for record {name!r} in {self.directory}") from None


class AvroCodec:
    """Encodes typed records (or plain datums) and decodes bytes back to typed records."""

    def __init__(self, registry: SchemaRegistry | None = None) -> None:
        self.registry = registry or SchemaRegistry()

    # -- encoding -------------------------------------------------------------------------------
    def encode(self, record: Record, version: int | None = None) -> bytes:
        """`record` in the newest schema of its kind, or in schema `version` (a topic that
        keeps an older version, such as rewards.payouts.v1: fields the older schema lacks are
        left out)."""
        cls: type[Any] = type(record)
        datum = {f: getattr(record, f) for f in _field_names(cls)}
        name = cls.__name__
        return self.encode_datum(name, datum, version)

    def encode_datum(
        self, name: str, datum: Mapping[str, Any], version: int | None = None
    ) -> bytes:
        sv = self.registry.latest(name) if version is None else self.registry.version(name, version)
        out = BytesIO()
        out.write(sv.header)
        schemaless_writer(out, sv.parsed, datum)
        return out.getvalue()

    # -- decoding -------------------------------------------------------------------------------
    def decode(self, data: bytes, expected: str | None = None) -> Record:
        name, datum = self.decode_datum(data, expected)
        return to_record(name, datum)

    def decode_datum(self, data: bytes, expected: str | None = None) -> tuple[str, Datum]:
        """Returns (record name, datum in the newest schema version) or raises DecodeError."""
        writer = self.writer_of(data)
        if expected is not None and writer.name != expected:
            raise DecodeError(
                f"expected a {expected} record but the fingerprint is {writer.name} "
                f"v{writer.version}",
                reason="WRONG_RECORD_TYPE",
            )
        reader = self.registry.latest(writer.name)
        body = BytesIO(data)
        body.seek(HEADER_LEN)
        try:
            datum = schemaless_reader(
                body, writer.parsed, None if reader is writer else reader.parsed
            )
        except SchemaResolutionError as err:
            reason = "UNKNOWN_SYMBOL" if "symbol" in str(err).lower() else "MISSING_FIELD"
            raise DecodeError(f"{writer.name}: {err}", reason=reason) from err
        except (EOFError, ValueError, TypeError, IndexError, OverflowError) as err:
            raise _diagnose(writer, data, err) from err
        if body.tell() != len(data):
            raise DecodeError(
                f"{writer.name} body has {len(data) - body.tell()} trailing bytes",
                reason="BAD_BODY",
            )
        if not isinstance(datum, dict):
            raise DecodeError(f"{writer.name} did not decode to a record", reason="BAD_BODY")
        return writer.name, datum

    def writer_of(self, data: bytes) -> SchemaVersion:
        if len(data) < HEADER_LEN or data[:2] != MAGIC:
            raise DecodeError(
                f"not Avro single-object encoding: expected C3 01 and an 8-byte fingerprint, "
                f"got {data[:HEADER_LEN].hex(' ') or 'no bytes'}",
                reason="BAD_MAGIC",
            )
        fp = bytes(data[2:HEADER_LEN])
        writer = self.registry.by_fingerprint.get(fp)
        if writer is None:
            lacking = self.registry.lacking_one_field().get(fp)
            if lacking is not None:
                sv, field = lacking
                raise DecodeError(
                    f"the writer schema is {sv.name} v{sv.version} without its required field "
                    f"'{field}' (fingerprint {fp.hex()})",
                    reason="MISSING_FIELD",
                )
            raise DecodeError(
                f"unknown writer schema fingerprint {fp.hex()} (not in {self.registry.directory})",
                reason="UNKNOWN_FINGERPRINT",
            )
        return writer


def _diagnose(writer: SchemaVersion, data: bytes, err: BaseException) -> DecodeError:
    """Why a body did not decode, read again one field at a time: a body that ends cleanly
    before a field lacks that field (MISSING_FIELD), an enum index past the symbols names a
    symbol nobody knows (UNKNOWN_SYMBOL), anything else is corrupt (BAD_BODY)."""
    body = BytesIO(data)
    body.seek(HEADER_LEN)
    named: dict[str, Any] = {}
    enums: dict[str, Any] = {}
    for field in writer.raw.get("fields", ()):
        _collect_enums(field["type"], writer.raw.get("namespace"), enums)
        if body.tell() == len(data) and body.tell() > HEADER_LEN:  # no body at all: corrupt
            return DecodeError(
                f"{writer.name} lacks required field '{field['name']}' (the body ends before it)",
                reason="MISSING_FIELD",
            )
        start = body.tell()
        try:
            schemaless_reader(body, parse_schema(field["type"], named_schemas=named), None)
        except (EOFError, ValueError, TypeError, IndexError, OverflowError):
            body.seek(start)
            symbol = _unknown_enum_index(body, field["type"], enums)
            if symbol is not None:
                return DecodeError(
                    f"{writer.name} field '{field['name']}': enum index {symbol} names no "
                    f"symbol the reader knows",
                    reason="UNKNOWN_SYMBOL",
                )
            break
    return DecodeError(f"{writer.name} body is corrupt: {err!r}", reason="BAD_BODY")


_LONG = parse_schema("long")


def _collect_enums(schema: Any, namespace: str | None, out: dict[str, Any]) -> None:
    if isinstance(schema, list):
        for branch in schema:
            _collect_enums(branch, namespace, out)
    elif isinstance(schema, dict) and schema.get("type") == "enum":
        name = schema["name"]
        space = schema.get("namespace", namespace)
        out[name] = schema
        if space and "." not in name:
            out[f"{space}.{name}"] = schema


def _unknown_enum_index(body: BytesIO, schema: Any, enums: dict[str, Any]) -> int | None:
    """The out-of-range enum index at the body's position, if that is what is there."""
    try:
        if isinstance(schema, list):
            branch = schemaless_reader(body, _LONG, None)
            if not isinstance(branch, int) or not 0 <= branch < len(schema):
                return None
            schema = schema[branch]
        if isinstance(schema, str):
            schema = enums.get(schema, schema)
        if not (isinstance(schema, dict) and schema.get("type") == "enum"):
            return None
        index = schemaless_reader(body, _LONG, None)
    except (EOFError, ValueError, TypeError, IndexError, OverflowError):
        return None
    if isinstance(index, int) and not 0 <= index < len(schema["symbols"]):
        return index
    return None


_FIELD_NAMES: dict[type, tuple[str, ...]] = {}
_ENUM_FIELDS: dict[type, tuple[tuple[str, type[StrEnum]], ...]] = {}
_BUILDERS: dict[str, _Builder] = {}


def _field_names(cls: type[Any]) -> tuple[str, ...]:
    names = _FIELD_NAMES.get(cls)
    if names is None:
        names = _FIELD_NAMES[cls] = tuple(f.name for f in fields(cls))
    return names


def _enum_fields(cls: type[Any]) -> tuple[tuple[str, type[StrEnum]], ...]:
    found = _ENUM_FIELDS.get(cls)
    if found is None:
        found = _ENUM_FIELDS[cls] = tuple(
            (name, hint)
            for name, hint in get_type_hints(cls).items()
            if isinstance(hint, type) and issubclass(hint, StrEnum)
        )
    return found


class _Builder:
    """Makes one record type's objects from decoded datums, about three times as fast as
    `cls(**datum)` with `enum_type(symbol)` for each enum: a frozen dataclass's __init__ sets
    each field through object.__setattr__, and an enum call goes through EnumType.__call__.
    Here each slot is set through its descriptor (`slot_setters`, as `replace` copies) and each
    symbol is looked up in its enum's value map (a rewards or notifications process decodes
    every status it reads). A datum that does not have exactly the record's fields, or a record
    type with a `__post_init__`, takes `cls(**datum)`, with its errors."""

    __slots__ = ("cls", "count", "enums", "name", "setters")

    def __init__(self, name: str, cls: type[Any]) -> None:
        self.cls, self.name = cls, name
        self.enums = tuple(
            (field, enum_type, enum_type._value2member_map_)
            for field, enum_type in _enum_fields(cls)
        )
        self.setters = slot_setters(cls)  # None: only the constructor makes one
        self.count = len(_field_names(cls))

    def __call__(self, datum: Datum) -> Record:
        for field, enum_type, members in self.enums:
            symbol = members.get(datum[field])
            if symbol is None:
                raise DecodeError(
                    f"{self.name} field '{field}': {datum[field]!r} is not a symbol of "
                    f"{enum_type.__name__}",
                    reason="UNKNOWN_SYMBOL",
                )
            datum[field] = symbol
        if self.setters is None or len(datum) != self.count:
            made: Record = self.cls(**datum)
            return made
        record = object.__new__(self.cls)
        try:
            for field, set_slot in self.setters:
                set_slot(record, datum[field])
        except KeyError:  # a field missing, another in its place
            made = self.cls(**datum)
            return made
        built: Record = record
        return built


def to_record(name: str, datum: Datum) -> Record:
    """Turns a decoded datum into the record's typed object (enum symbols become enums)."""
    builder = _BUILDERS.get(name)
    if builder is None:
        builder = _BUILDERS[name] = _Builder(name, RECORD_TYPES[name])
    return builder(datum)
