"""Round trips for every record in the registry, with datums derived from the Avro schemas.

Whatever a valid datum holds, Avro (encode then decode), typed records and the CLI's JSON
conventions give it back unchanged. The strategies come from the schemas themselves, so a
field added to a schema is covered without touching this file.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from referrals.contract.avro import AvroCodec, SchemaRegistry, to_record
from referrals.contract.jsonio import from_json, to_json

REGISTRY = SchemaRegistry()
CODEC = AvroCodec(REGISTRY)
NAMES = sorted(REGISTRY.versions)

# 50 examples per record keeps the whole file within a few seconds; no example database, so the
# shared checkout gets no .hypothesis/ folder.
SETTINGS = settings(
    max_examples=50,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)

EARLIEST = datetime(2000, 1, 1)
LATEST = datetime(2100, 1, 1)

_PRIMITIVES: dict[str, st.SearchStrategy[Any]] = {
    "null": st.none(),
    "boolean": st.booleans(),
    "int": st.integers(-(2**31), 2**31 - 1),
    "long": st.integers(-(2**63), 2**63 - 1),
    "float": st.floats(width=32, allow_nan=False),
    "double": st.floats(allow_nan=False),
    "string": st.text(),
    "bytes": st.binary(),
}


def _millis(moment: datetime) -> datetime:
    return moment.replace(microsecond=moment.microsecond // 1000 * 1000)


TIMESTAMP_MILLIS = st.datetimes(min_value=EARLIEST, max_value=LATEST, timezones=st.just(UTC)).map(
    _millis
)


def datums(schema: Any, named: dict[str, Any] | None = None) -> st.SearchStrategy[Any]:
    """A strategy for valid datums of an Avro schema (the subset our contract uses)."""
    named = {} if named is None else named
    if isinstance(schema, list):
        return st.one_of(*(datums(branch, named) for branch in schema))
    if isinstance(schema, str):
        if schema in _PRIMITIVES:
            return _PRIMITIVES[schema]
        return datums(named[schema.rsplit(".", 1)[-1]], named)  # a named type used again
    return _complex(schema, named)


def _complex(schema: Mapping[str, Any], named: dict[str, Any]) -> st.SearchStrategy[Any]:
    typ = schema["type"]
    if schema.get("logicalType") == "timestamp-millis":
        return TIMESTAMP_MILLIS
    if typ in ("record", "enum"):
        named[str(schema["name"]).rsplit(".", 1)[-1]] = schema
    if typ == "record":
        return st.fixed_dictionaries(
            {f["name"]: datums(f["type"], named) for f in schema["fields"]}
        )
    if typ == "enum":
        return st.sampled_from(schema["symbols"])
    if typ == "array":
        return st.lists(datums(schema["items"], named), max_size=3)
    if typ == "map":
        return st.dictionaries(st.text(), datums(schema["values"], named), max_size=3)
    return datums(typ, named)  # {"type": "string"} and friends


def record_datums(name: str) -> st.SearchStrategy[dict[str, Any]]:
    strategy: st.SearchStrategy[dict[str, Any]] = datums(dict(REGISTRY.latest(name).raw))
    return strategy


# == the strategy builder itself ================================================================
@SETTINGS
@given(st.data())
def test_the_strategy_builder_covers_the_whole_contract_vocabulary(data: st.DataObject) -> None:
    schema = {
        "type": "record",
        "name": "Everything",
        "fields": [
            {"name": "b", "type": "boolean"},
            {"name": "i", "type": "int"},
            {"name": "l", "type": "long"},
            {"name": "d", "type": "double"},
            {"name": "s", "type": "string"},
            {"name": "o", "type": ["null", "string"], "default": None},
            {"name": "e", "type": {"type": "enum", "name": "E", "symbols": ["A", "B"]}},
            {"name": "e2", "type": ["null", "E"], "default": None},
            {"name": "t", "type": {"type": "long", "logicalType": "timestamp-millis"}},
        ],
    }
    datum = data.draw(datums(schema))
    assert set(datum) == {f["name"] for f in schema["fields"]}
    assert datum["e"] in ("A", "B") and datum["e2"] in (None, "A", "B")
    when = datum["t"]
    assert when.tzinfo is UTC and when.microsecond % 1000 == 0
    assert datetime(2000, 1, 1, tzinfo=UTC) <= when <= datetime(2100, 1, 1, tzinfo=UTC)
    assert -(2**31) <= datum["i"] < 2**31


# == round trips for every record ===============================================================
@pytest.mark.parametrize("name", NAMES)
@SETTINGS
@given(data=st.data())
def test_encode_then_decode_gives_back_the_same_datum(name: str, data: st.DataObject) -> None:
    datum = data.draw(record_datums(name))
    assert CODEC.decode_datum(CODEC.encode_datum(name, datum), expected=name) == (name, datum)


@pytest.mark.parametrize("name", NAMES)
@SETTINGS
@given(data=st.data())
def test_a_typed_record_survives_encode_and_decode(name: str, data: st.DataObject) -> None:
    record = to_record(name, dict(data.draw(record_datums(name))))
    assert CODEC.decode(CODEC.encode(record)) == record


@pytest.mark.parametrize("name", NAMES)
@SETTINGS
@given(data=st.data())
def test_a_datum_survives_the_clis_json_conventions(name: str, data: st.DataObject) -> None:
    schema = REGISTRY.latest(name).raw
    datum = data.draw(record_datums(name))
    text = json.dumps(to_json(datum))
    assert from_json(schema, json.loads(text)) == datum


@pytest.mark.parametrize("name", NAMES)
@SETTINGS
@given(data=st.data())
def test_what_tail_prints_publish_reads_back_to_the_same_bytes(
    name: str, data: st.DataObject
) -> None:
    schema = REGISTRY.latest(name).raw
    encoded = CODEC.encode_datum(name, data.draw(record_datums(name)))
    _, decoded = CODEC.decode_datum(encoded)
    again = from_json(schema, json.loads(json.dumps(to_json(decoded))))
    assert CODEC.encode_datum(name, again) == encoded
