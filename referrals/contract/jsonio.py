"""JSON <-> Avro datums, driven by the schema (the CLI's `publish` and `tail`).

Conventions (the contract's): JSON field names are the Avro field names; enums are their symbols;
timestamps are ISO 8601 strings or epoch milliseconds; an omitted optional field is null. Every
error names the field at fault.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from referrals.platform.errors import InputError

Schema = Any
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def from_json(schema: Mapping[str, Any], obj: object, *, line: int | None = None) -> dict[str, Any]:
    """Converts one decoded JSON object to an Avro datum for the record `schema`."""
    if not isinstance(obj, dict):
        raise InputError(f"expected a JSON object, got {type(obj).__name__}", line=line)
    known = {f["name"] for f in schema["fields"]}
    unknown = sorted(set(obj) - known)
    if unknown:
        raise InputError(
            f"unknown field for {schema['name']} (known: {', '.join(sorted(known))})",
            line=line,
            field=unknown[0],
        )
    datum: dict[str, Any] = {}
    for field in schema["fields"]:
        name = field["name"]
        if name not in obj:
            if "default" in field:
                datum[name] = field["default"]
                continue
            raise InputError("required field is missing", line=line, field=name)
        try:
            datum[name] = _convert(field["type"], obj[name])
        except _Mismatch as err:
            raise InputError(str(err), line=line, field=name) from None
    return datum


class _Mismatch(Exception):
    pass


def _convert(typ: Schema, value: object) -> object:
    if isinstance(typ, list):  # union: our schemas use ["null", T]
        if value is None and "null" in typ:
            return None
        branches = [t for t in typ if t != "null"]
        errors = []
        for branch in branches:
            try:
                return _convert(branch, value)
            except _Mismatch as err:
                errors.append(str(err))
        raise _Mismatch("; ".join(errors) or "null is not allowed")
    if isinstance(typ, dict):
        if typ.get("logicalType") == "timestamp-millis":
            return _timestamp(value)
        if typ["type"] == "enum":
            if not isinstance(value, str) or value not in typ["symbols"]:
                raise _Mismatch(
                    f"unknown symbol {value!r} (expected one of {', '.join(typ['symbols'])})"
                )
            return value
        if typ["type"] == "record":
            return from_json(typ, value)
        return _convert(typ["type"], value)
    return _primitive(typ, value)


def _primitive(typ: str, value: object) -> object:
    if typ == "null":
        if value is not None:
            raise _Mismatch(f"expected null, got {value!r}")
        return None
    if typ == "string":
        if not isinstance(value, str):
            raise _Mismatch(f"expected a string, got {type(value).__name__} {value!r}")
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise _Mismatch("is not valid Unicode text (a lone surrogate?)") from None
        return value
    if typ == "boolean":
        if not isinstance(value, bool):
            raise _Mismatch(f"expected true or false, got {value!r}")
        return value
    if typ in ("int", "long"):
        if isinstance(value, bool) or not isinstance(value, int):
            raise _Mismatch(f"expected an integer, got {value!r}")
        limit = 2**31 if typ == "int" else 2**63
        if not -limit <= value < limit:
            raise _Mismatch(f"{value} does not fit in an Avro {typ}")
        return value
    if typ in ("float", "double"):
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise _Mismatch(f"expected a number, got {value!r}")
        return float(value)
    if typ == "bytes":
        if not isinstance(value, str):
            raise _Mismatch("expected base64 text for bytes")
        return base64.b64decode(value)
    raise _Mismatch(f"unsupported Avro type {typ!r}")


def _timestamp(value: object) -> datetime:
    if isinstance(value, bool):
        raise _Mismatch(f"expected an ISO 8601 timestamp or epoch milliseconds, got {value!r}")
    if isinstance(value, int):
        try:  # integer arithmetic: no float rounding of far-off milliseconds
            return EPOCH + timedelta(milliseconds=value)
        except OverflowError:
            raise _Mismatch(f"{value} epoch milliseconds is outside the calendar") from None
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            raise _Mismatch(f"{value!r} is not an ISO 8601 timestamp") from None
        if parsed.tzinfo is None:
            raise _Mismatch(f"{value!r} has no time zone; add Z or an offset")
        return parsed.astimezone(UTC)
    raise _Mismatch(f"expected an ISO 8601 timestamp or epoch milliseconds, got {value!r}")


def to_json(value: object) -> object:
    """Makes a decoded datum JSON-ready: datetimes become ISO 8601 UTC strings with Z."""
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    if isinstance(value, dict):
        return {k: to_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [to_json(v) for v in value]
    if isinstance(value, bytes):
        return base64.b64encode(value).decode("ascii")
    return value
