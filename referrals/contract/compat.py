"""Backward compatibility between schema versions (the contract's rule for `schemas/`).

A reader using the new schema must read every record written with the old one, following the
Avro specification's "Schema Resolution": a field the new schema adds needs a default; a type
may change only by a legal promotion (int -> long/float/double, long -> float/double,
float -> double, string <-> bytes); an enum keeps every old symbol unless it declares a
`default`; a union on either side resolves branch by branch. The walk gives readable reasons;
fastavro then confirms by writing sample datums with the old schema and reading them with the
new one, so a rule the walk misses still shows up.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Mapping
from decimal import Decimal
from io import BytesIO
from typing import TYPE_CHECKING, Any

from fastavro import schemaless_reader, schemaless_writer
from fastavro.schema import parse_schema

if TYPE_CHECKING:
    from referrals.contract.avro import SchemaRegistry

PRIMITIVES = frozenset({"null", "boolean", "int", "long", "float", "double", "bytes", "string"})
# writer type -> reader types that can read it (Avro spec, "Schema Resolution").
PROMOTIONS: dict[str, frozenset[str]] = {
    "int": frozenset({"long", "float", "double"}),
    "long": frozenset({"float", "double"}),
    "float": frozenset({"double"}),
    "string": frozenset({"bytes"}),
    "bytes": frozenset({"string"}),
}
_NAMED = ("record", "error", "enum", "fixed")
_COMPLEX = (*_NAMED, "array", "map")
_SAMPLES = 8  # datums per confirmation: enough to visit each branch/symbol of small schemas


class _Names:
    """Named types of one schema by full and short name, so references can be followed."""

    def __init__(self, schema: Any) -> None:
        self.types: dict[str, Mapping[str, Any]] = {}
        self._collect(schema, "")

    def _collect(self, schema: Any, namespace: str) -> None:
        if isinstance(schema, list):
            for branch in schema:
                self._collect(branch, namespace)
        elif isinstance(schema, Mapping):
            if schema.get("type") in _NAMED:
                fullname = _fullname(schema, namespace)
                self.types.setdefault(fullname, schema)
                self.types.setdefault(fullname.rsplit(".", 1)[-1], schema)
                namespace = fullname.rpartition(".")[0]
            for field in schema.get("fields", ()):
                self._collect(field["type"], namespace)
            for key in ("items", "values"):
                if key in schema:
                    self._collect(schema[key], namespace)
            if isinstance(schema.get("type"), list | Mapping):
                self._collect(schema["type"], namespace)

    def resolve(self, schema: Any) -> Any:
        """The schema itself, with a named-type reference (a string) replaced by its definition."""
        if isinstance(schema, Mapping) and not _defines_type(schema):
            return self.resolve(schema["type"])  # {"type": "Name"} or {"type": {...}}
        if isinstance(schema, str) and schema not in PRIMITIVES:
            found = self.types.get(schema) or self.types.get(schema.rsplit(".", 1)[-1])
            if found is None:
                raise ValueError(f"unknown named type {schema!r}")
            return found
        return schema


def _defines_type(schema: Mapping[str, Any]) -> bool:
    inner = schema["type"]
    return isinstance(inner, str) and (inner in PRIMITIVES or inner in _COMPLEX)


def _fullname(schema: Mapping[str, Any], namespace: str) -> str:
    name = str(schema["name"])
    if "." in name:
        return name
    space = schema.get("namespace", namespace)
    return f"{space}.{name}" if space else name


def _kind(schema: Any) -> str:
    """'record', 'enum', 'array', 'union', a primitive name, ... of a resolved schema."""
    if isinstance(schema, list):
        return "union"
    if isinstance(schema, Mapping):
        return str(schema["type"])
    return str(schema)


def _describe(schema: Any) -> str:
    kind = _kind(schema)
    if isinstance(schema, Mapping) and kind in _NAMED:
        return f"{kind} {schema['name']}"
    if isinstance(schema, Mapping) and "logicalType" in schema:
        return f"{kind} ({schema['logicalType']})"
    return kind


def _short(schema: Mapping[str, Any]) -> str:
    return str(schema["name"]).rsplit(".", 1)[-1]


class _Walk:
    """Compares a reader (new) schema with a writer (old) schema, collecting problems."""

    def __init__(self, new: Any, old: Any) -> None:
        self.new_names, self.old_names = _Names(new), _Names(old)
        self.problems: list[str] = []
        self._seen: set[tuple[int, int]] = set()  # record pairs already compared (recursion)

    def check(self, reader: Any, writer: Any, where: str) -> None:
        reader, writer = self.new_names.resolve(reader), self.old_names.resolve(writer)
        if isinstance(writer, list):
            for branch in writer:
                self.check(reader, branch, where)
        elif isinstance(reader, list):
            match = next((b for b in reader if self._matches(b, writer)), None)
            if match is None:
                branches = ", ".join(_describe(self.new_names.resolve(b)) for b in reader)
                self.problems.append(
                    f"{where}: no branch of the new union [{branches}] can read the old "
                    f"{_describe(writer)}"
                )
            else:
                self.check(match, writer, where)
        elif self._matches(reader, writer):
            self._same_kind(reader, writer, where)
        else:
            self.problems.append(
                f"{where}: type changed from {_describe(writer)} to {_describe(reader)}, "
                "which is not a legal Avro promotion"
            )

    def _matches(self, reader: Any, writer: Any) -> bool:
        reader, writer = self.new_names.resolve(reader), self.old_names.resolve(writer)
        r, w = _kind(reader), _kind(writer)
        if r in _NAMED or w in _NAMED:
            return r == w and _short(reader) == _short(writer)
        return r == w or r in PROMOTIONS.get(w, frozenset())

    def _same_kind(self, reader: Any, writer: Any, where: str) -> None:
        kind = _kind(reader)
        if kind in ("record", "error"):
            self._record(reader, writer, where)
        elif kind == "enum":
            self._enum(reader, writer, where)
        elif kind == "fixed" and reader.get("size") != writer.get("size"):
            self.problems.append(
                f"{where}: fixed size changed from {writer.get('size')} to {reader.get('size')}"
            )
        elif kind == "array":
            self.check(reader["items"], writer["items"], f"{where}[]")
        elif kind == "map":
            self.check(reader["values"], writer["values"], f"{where}{{}}")
        else:
            self._logical(reader, writer, where)

    def _logical(self, reader: Any, writer: Any, where: str) -> None:
        # Legal for Avro, but a reader would turn e.g. a timestamp into a bare number.
        old = writer.get("logicalType") if isinstance(writer, Mapping) else None
        new = reader.get("logicalType") if isinstance(reader, Mapping) else None
        if old != new:
            self.problems.append(
                f"{where}: logical type changed from {old or 'none'} to {new or 'none'}"
            )

    def _record(self, reader: Mapping[str, Any], writer: Mapping[str, Any], where: str) -> None:
        pair = (id(reader), id(writer))
        if pair in self._seen:
            return
        self._seen.add(pair)
        old_fields = {f["name"]: f for f in writer["fields"]}
        for field in reader["fields"]:
            names = [field["name"], *field.get("aliases", ())]
            old = next((old_fields[n] for n in names if n in old_fields), None)
            path = f"{where}.{field['name']}"
            if old is not None:
                self.check(field["type"], old["type"], path)
            elif "default" not in field:
                self.problems.append(
                    f"{path}: new field without a default; old records do not have it"
                )

    def _enum(self, reader: Mapping[str, Any], writer: Mapping[str, Any], where: str) -> None:
        if "default" in reader:
            return  # symbols the reader lacks read as its default
        missing = [s for s in writer["symbols"] if s not in reader["symbols"]]
        if missing:
            self.problems.append(
                f"{where}: enum {reader['name']} lost symbol(s) {', '.join(missing)} "
                "and declares no default"
            )


def check_backward(new_schema: Mapping[str, Any], old_schema: Mapping[str, Any]) -> list[str]:
    """Why a reader using `new_schema` could not read data written with `old_schema` ([] if it
    can). The walk explains; fastavro confirms on sample datums when the walk finds nothing."""
    walk = _Walk(new_schema, old_schema)
    try:
        walk.check(new_schema, old_schema, str(new_schema.get("name", "schema")))
    except (KeyError, TypeError, ValueError) as err:
        return [f"the schemas could not be compared: {err!r}"]
    return walk.problems or _confirm_with_fastavro(new_schema, old_schema)


def _confirm_with_fastavro(new: Mapping[str, Any], old: Mapping[str, Any]) -> list[str]:
    try:
        reader = parse_schema(dict(new), named_schemas={})
        writer = parse_schema(dict(old), named_schemas={})
    except Exception as err:  # fastavro raises several types for an invalid schema
        return [f"fastavro rejects a schema: {err}"]
    names = _Names(old)
    for n in range(_SAMPLES):
        datum = _sample(old, names, n)
        out = BytesIO()
        try:
            schemaless_writer(out, writer, datum)
        except Exception:  # a sample we cannot build proves nothing either way
            continue
        out.seek(0)
        try:
            schemaless_reader(out, writer, reader)
        except Exception as err:  # any failure to read is exactly what this check is for
            return [f"fastavro cannot read a sample old record with the new schema: {err}"]
    return []


def _sample(schema: Any, names: _Names, n: int, depth: int = 0) -> Any:
    """The n-th sample datum of `schema`: cycles through union branches and enum symbols."""
    schema = names.resolve(schema)
    if depth > 8:  # recursive schemas: stop somewhere (a null branch usually ends them)
        return None
    if isinstance(schema, list):
        return _sample(schema[n % len(schema)], names, n, depth + 1)
    kind = _kind(schema)
    logical = schema.get("logicalType") if isinstance(schema, Mapping) else None
    if logical == "uuid":
        return "00000000-0000-0000-0000-000000000000"
    if logical == "decimal":
        return Decimal(0)
    if kind in ("record", "error"):
        return {f["name"]: _sample(f["type"], names, n, depth + 1) for f in schema["fields"]}
    if kind == "enum":
        return schema["symbols"][n % len(schema["symbols"])]
    if kind == "array":
        return [_sample(schema["items"], names, n, depth + 1)]
    if kind == "map":
        return {"k": _sample(schema["values"], names, n, depth + 1)}
    if kind == "fixed":
        return bytes(schema["size"])
    simple: dict[str, Any] = {
        "null": None,
        "boolean": bool(n % 2),
        "int": n,
        "long": n,
        "float": float(n),
        "double": float(n),
        "bytes": b"b",
        "string": "s",
    }
    return simple[kind]


def _pairs_to_check(count: int) -> Iterator[tuple[int, int]]:
    """(new, old) version indexes: each version against the previous one, and the newest
    against every older one (the codec reads every version ever published with the newest)."""
    seen: set[tuple[int, int]] = set()
    for pair in itertools.chain(
        ((i, i - 1) for i in range(1, count)), ((count - 1, i) for i in range(count - 1))
    ):
        if pair not in seen:
            seen.add(pair)
            yield pair


def registry_problems(registry: SchemaRegistry) -> list[str]:
    """Every backward-compatibility problem between versions of each record in the registry."""
    problems: list[str] = []
    for versions in registry.versions.values():
        for new, old in _pairs_to_check(len(versions)):
            reader, writer = versions[new], versions[old]
            problems.extend(
                f"{reader.path.name} cannot read {writer.path.name}: {problem}"
                for problem in check_backward(reader.raw, writer.raw)
            )
    return problems
