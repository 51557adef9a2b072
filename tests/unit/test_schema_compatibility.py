"""The contract's rule for `schemas/`: a new version must be backward compatible with the previous
one (a reader on the new version reads everything written with the old), and every field says
what it means. The first test checks the real registry on every run; the rest prove the checker
can fail."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from referrals.contract.avro import SCHEMA_DIR, SchemaRegistry
from referrals.contract.compat import _confirm_with_fastavro, check_backward, registry_problems

REGISTRY = SchemaRegistry()


def deal_event() -> dict[str, Any]:
    return copy.deepcopy(dict(REGISTRY.latest("DealEvent").raw))


def field_of(schema: dict[str, Any], name: str) -> dict[str, Any]:
    found: dict[str, Any] = next(f for f in schema["fields"] if f["name"] == name)
    return found


def changed(change: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
    schema = deal_event()
    change(schema)
    return schema


# == the real registry ==========================================================================
def test_every_version_in_schemas_can_read_data_written_by_the_previous_one() -> None:
    assert registry_problems(SchemaRegistry()) == []


def _fields(schema: Any) -> Iterator[dict[str, Any]]:
    """Every field of every record in a schema, nested ones included."""
    if isinstance(schema, list):
        for branch in schema:
            yield from _fields(branch)
    elif isinstance(schema, dict):
        for field in schema.get("fields", ()):
            yield field
            yield from _fields(field["type"])
        for key in ("items", "values"):
            if key in schema:
                yield from _fields(schema[key])


SCHEMA_FILES = sorted(SCHEMA_DIR.glob("*.avsc"))


def test_the_registry_holds_schema_files() -> None:
    assert len(SCHEMA_FILES) >= 9


@pytest.mark.parametrize("path", SCHEMA_FILES, ids=lambda p: p.name)
def test_every_field_in_every_schema_has_a_doc(path: Path) -> None:
    schema = json.loads(path.read_text(encoding="utf-8"))
    undocumented = [
        f["name"]
        for f in _fields(schema)
        if not isinstance(f.get("doc"), str) or not f["doc"].strip()
    ]
    assert undocumented == [], f"{path.name}: fields without a doc: {undocumented}"


# == incompatible changes are reported ==========================================================
def test_a_required_field_added_without_default_is_reported() -> None:
    new = changed(lambda s: s["fields"].append({"name": "region", "type": "string", "doc": "x"}))
    problems = check_backward(new, deal_event())
    assert len(problems) == 1
    assert "region" in problems[0]
    assert "default" in problems[0]


def test_a_type_changed_from_string_to_int_is_reported() -> None:
    new = changed(lambda s: field_of(s, "deal_id").update(type="int"))
    problems = check_backward(new, deal_event())
    assert len(problems) == 1
    assert "deal_id" in problems[0]
    assert "string" in problems[0] and "int" in problems[0]


def test_a_removed_enum_symbol_is_reported() -> None:
    new = changed(
        lambda s: field_of(s, "stage")["type"].update(symbols=["OPEN", "QUALIFIED", "WON", "LOST"])
    )
    problems = check_backward(new, deal_event())
    assert len(problems) == 1
    assert "REVERSED" in problems[0]
    assert "stage" in problems[0]


def test_an_optional_field_made_required_is_reported() -> None:
    new = changed(lambda s: field_of(s, "amount_minor").update(type="long"))
    problems = check_backward(new, deal_event())
    assert problems
    assert "amount_minor" in problems[0]


def test_a_narrowing_from_long_to_int_is_reported() -> None:
    new = changed(lambda s: field_of(s, "amount_minor").update(type=["null", "int"]))
    problems = check_backward(new, deal_event())
    assert problems
    assert "amount_minor" in problems[0]


def test_a_dropped_timestamp_logical_type_is_reported() -> None:
    new = changed(lambda s: field_of(s, "occurred_at").update(type="long"))
    problems = check_backward(new, deal_event())
    assert problems
    assert "timestamp-millis" in problems[0]


def test_a_renamed_enum_type_is_reported() -> None:
    new = changed(lambda s: field_of(s, "stage")["type"].update(name="Stage"))
    assert check_backward(new, deal_event())


# == compatible changes are not =================================================================
def test_an_identical_schema_is_compatible() -> None:
    assert check_backward(deal_event(), deal_event()) == []


def test_an_optional_field_added_with_a_null_default_is_compatible() -> None:
    new = changed(
        lambda s: s["fields"].append(
            {"name": "region", "type": ["null", "string"], "default": None, "doc": "x"}
        )
    )
    assert check_backward(new, deal_event()) == []


def test_a_required_field_added_with_a_default_is_compatible() -> None:
    new = changed(
        lambda s: s["fields"].append(
            {"name": "region", "type": "string", "default": "", "doc": "x"}
        )
    )
    assert check_backward(new, deal_event()) == []


def test_an_int_promoted_to_long_is_compatible() -> None:
    old = copy.deepcopy(dict(REGISTRY.latest("PayoutResult").raw))
    new = copy.deepcopy(old)
    field_of(new, "attempt")["type"] = "long"
    assert check_backward(new, old) == []


@pytest.mark.parametrize(
    ("old_type", "new_type"),
    [
        ("int", "double"),
        ("long", "float"),
        ("float", "double"),
        ("string", "bytes"),
        ("bytes", "string"),
        ("long", ["null", "long"]),
        (["null", "int"], ["null", "long"]),
    ],
    ids=str,
)
def test_legal_promotions_are_compatible(old_type: Any, new_type: Any) -> None:
    old = {"type": "record", "name": "R", "fields": [{"name": "x", "type": old_type}]}
    new = {"type": "record", "name": "R", "fields": [{"name": "x", "type": new_type}]}
    assert check_backward(new, old) == []


def test_an_added_enum_symbol_is_compatible() -> None:
    new = changed(lambda s: field_of(s, "stage")["type"]["symbols"].append("ON_HOLD"))
    assert check_backward(new, deal_event()) == []


def test_a_removed_enum_symbol_is_compatible_when_the_enum_declares_a_default() -> None:
    new = changed(
        lambda s: field_of(s, "stage")["type"].update(
            symbols=["OPEN", "QUALIFIED", "WON", "LOST"], default="OPEN"
        )
    )
    assert check_backward(new, deal_event()) == []


def test_a_removed_field_is_compatible() -> None:
    new = changed(lambda s: s["fields"].remove(field_of(s, "declared_advocate_id")))
    assert check_backward(new, deal_event()) == []


# == the fastavro confirmation and the registry walk ============================================
def test_fastavro_confirms_a_required_field_added_without_default() -> None:
    new = changed(lambda s: s["fields"].append({"name": "region", "type": "string", "doc": "x"}))
    problems = _confirm_with_fastavro(new, deal_event())
    assert problems
    assert "region" in problems[0]


def test_fastavro_confirms_a_compatible_change() -> None:
    new = changed(lambda s: field_of(s, "amount_minor").update(type=["null", "double"]))
    assert _confirm_with_fastavro(new, deal_event()) == []


def _write(directory: Path, files: dict[str, dict[str, Any]]) -> SchemaRegistry:
    for name, schema in files.items():
        (directory / name).write_text(json.dumps(schema), encoding="utf-8")
    return SchemaRegistry(directory)


def test_the_registry_check_names_the_files_of_an_incompatible_pair(tmp_path: Path) -> None:
    v1 = deal_event()
    v2 = changed(lambda s: s["fields"].append({"name": "region", "type": "string", "doc": "x"}))
    problems = registry_problems(
        _write(tmp_path, {"DealEvent.v1.avsc": v1, "DealEvent.v2.avsc": v2})
    )
    assert len(problems) == 1
    assert "DealEvent.v2.avsc cannot read DealEvent.v1.avsc" in problems[0]
    assert "region" in problems[0]


def test_the_registry_check_passes_a_compatible_history(tmp_path: Path) -> None:
    v1 = deal_event()
    v2 = changed(
        lambda s: s["fields"].append(
            {"name": "region", "type": ["null", "string"], "default": None, "doc": "x"}
        )
    )
    registry = _write(tmp_path, {"DealEvent.v1.avsc": v1, "DealEvent.v2.avsc": v2})
    assert registry_problems(registry) == []


def test_the_newest_version_must_read_every_older_one_not_only_the_previous(
    tmp_path: Path,
) -> None:
    # v2 adds `region` with a default; v3 drops the default. v3 reads v2 (which always has the
    # field) but not v1, and the codec reads every version with the newest.
    v1 = deal_event()
    v2 = changed(
        lambda s: s["fields"].append(
            {"name": "region", "type": "string", "default": "", "doc": "x"}
        )
    )
    v3 = changed(lambda s: s["fields"].append({"name": "region", "type": "string", "doc": "x"}))
    # Canonical forms drop defaults; a further optional field keeps v3's fingerprint distinct.
    v3["fields"].append({"name": "note", "type": ["null", "string"], "default": None, "doc": "x"})
    registry = _write(
        tmp_path, {"DealEvent.v1.avsc": v1, "DealEvent.v2.avsc": v2, "DealEvent.v3.avsc": v3}
    )
    problems = registry_problems(registry)
    assert len(problems) == 1
    assert "DealEvent.v3.avsc cannot read DealEvent.v1.avsc" in problems[0]
