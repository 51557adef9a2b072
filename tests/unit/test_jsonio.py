"""JSON <-> Avro datums under the contract's CLI conventions: field names are the Avro names,
enums their symbols, timestamps ISO 8601 or epoch milliseconds, an omitted optional is null, and
every error names the line and the field at fault."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from referrals.contract.avro import SchemaRegistry
from referrals.contract.jsonio import from_json, to_json
from referrals.platform.errors import InputError

REGISTRY = SchemaRegistry()
DEAL = REGISTRY.latest("DealEvent").raw
RESULT = REGISTRY.latest("PayoutResult").raw
PROFILE = REGISTRY.latest("AdvocateProfile").raw


def deal(**changes: Any) -> dict[str, Any]:
    obj: dict[str, Any] = {
        "event_id": "ev-1",
        "program_id": "acme-b2b",
        "deal_id": "deal-1",
        "prospect_id": "pro-1",
        "stage": "WON",
        "amount_minor": 125000,
        "currency": "USD",
        "occurred_at": "2024-05-17T09:30:15.123Z",
    }
    obj.update(changes)
    return {k: v for k, v in obj.items() if v is not ...}


def error_for(schema: Any, obj: object, line: int | None = None) -> InputError:
    with pytest.raises(InputError) as caught:
        from_json(schema, obj, line=line)
    return caught.value


# == values that convert ========================================================================
def test_a_complete_object_becomes_a_datum_with_every_field() -> None:
    datum = from_json(DEAL, deal())
    assert datum == {
        "event_id": "ev-1",
        "program_id": "acme-b2b",
        "deal_id": "deal-1",
        "prospect_id": "pro-1",
        "stage": "WON",
        "amount_minor": 125000,
        "currency": "USD",
        "declared_advocate_id": None,
        "occurred_at": datetime(2024, 5, 17, 9, 30, 15, 123000, tzinfo=UTC),
    }


@pytest.mark.parametrize("symbol", ["OPEN", "QUALIFIED", "WON", "LOST", "REVERSED"])
def test_enums_are_their_symbols(symbol: str) -> None:
    assert from_json(DEAL, deal(stage=symbol))["stage"] == symbol


@pytest.mark.parametrize("bad", ["won", "CLOSED", "", 3, None])
def test_an_unknown_enum_symbol_names_the_field_and_the_symbols(bad: object) -> None:
    err = error_for(DEAL, deal(stage=bad))
    assert err.field == "stage"
    assert "field 'stage'" in str(err)
    assert "OPEN, QUALIFIED, WON, LOST, REVERSED" in str(err)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2024-05-17T09:30:15Z", datetime(2024, 5, 17, 9, 30, 15, tzinfo=UTC)),
        ("2024-05-17T09:30:15.250Z", datetime(2024, 5, 17, 9, 30, 15, 250000, tzinfo=UTC)),
        ("2024-05-17T09:30:15+00:00", datetime(2024, 5, 17, 9, 30, 15, tzinfo=UTC)),
        ("2024-05-17T11:30:15+02:00", datetime(2024, 5, 17, 9, 30, 15, tzinfo=UTC)),
        ("2024-05-17T04:00:15-05:30", datetime(2024, 5, 17, 9, 30, 15, tzinfo=UTC)),
        ("2024-05-18T00:30:15+15:00", datetime(2024, 5, 17, 9, 30, 15, tzinfo=UTC)),
    ],
)
def test_iso_8601_timestamps_with_z_or_an_offset_become_utc(text: str, expected: datetime) -> None:
    when = from_json(DEAL, deal(occurred_at=text))["occurred_at"]
    assert when == expected
    assert when.utcoffset() == timedelta(0)


@pytest.mark.parametrize(
    ("millis", "expected"),
    [
        (0, datetime(1970, 1, 1, tzinfo=UTC)),
        (1715938215123, datetime(2024, 5, 17, 9, 30, 15, 123000, tzinfo=UTC)),
        (946684800000, datetime(2000, 1, 1, tzinfo=UTC)),
        (4102444799999, datetime(2099, 12, 31, 23, 59, 59, 999000, tzinfo=UTC)),
    ],
)
def test_epoch_milliseconds_become_utc_datetimes(millis: int, expected: datetime) -> None:
    when = from_json(DEAL, deal(occurred_at=millis))["occurred_at"]
    assert when == expected
    assert when.tzinfo is not None and when.utcoffset() == timedelta(0)


@pytest.mark.parametrize("millis", [253402300799999])
def test_epoch_milliseconds_convert_exactly_even_far_from_now(millis: int) -> None:
    """BUG (referrals/jsonio.py, _timestamp): `datetime.fromtimestamp(value / 1000)` goes through
    a float, so e.g. 253402300799999 becomes ...59.998993 and is published as ...59.998."""
    when = from_json(DEAL, deal(occurred_at=millis))["occurred_at"]
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    assert when == epoch + timedelta(milliseconds=millis)


@pytest.mark.parametrize("millis", [10**20, 2**63])
def test_epoch_milliseconds_outside_the_calendar_name_the_field(millis: int) -> None:
    """BUG (referrals/jsonio.py, _timestamp): out-of-range epoch millis raise OSError,
    ValueError or OverflowError from `datetime.fromtimestamp` instead of an InputError, so
    `referrals publish` prints no line or field (or a traceback)."""
    try:
        err = error_for(DEAL, deal(occurred_at=millis), line=4)
    except (OSError, ValueError, OverflowError) as escaped:
        pytest.fail(f"from_json let {escaped!r} escape instead of an InputError")
    assert "line 4" in str(err)
    assert "field 'occurred_at'" in str(err)


@pytest.mark.parametrize("naive", ["2024-05-17T09:30:15", "2024-05-17", "2024-05-17 09:30"])
def test_a_timestamp_without_a_time_zone_is_rejected(naive: str) -> None:
    err = error_for(DEAL, deal(occurred_at=naive))
    assert err.field == "occurred_at"
    assert "time zone" in str(err)


@pytest.mark.parametrize("bad", ["yesterday", "2024-13-01T00:00:00Z", "", 1.5e12, True, [1]])
def test_a_timestamp_that_is_not_iso_8601_or_integer_millis_is_rejected(bad: object) -> None:
    err = error_for(DEAL, deal(occurred_at=bad))
    assert "field 'occurred_at'" in str(err)


def test_an_omitted_optional_field_is_null() -> None:
    datum = from_json(DEAL, deal(amount_minor=..., currency=...))
    assert datum["amount_minor"] is None
    assert datum["currency"] is None
    assert datum["declared_advocate_id"] is None


def test_an_explicit_null_for_an_optional_field_is_null() -> None:
    assert from_json(DEAL, deal(amount_minor=None))["amount_minor"] is None


def test_an_optional_field_still_checks_its_type() -> None:
    err = error_for(DEAL, deal(amount_minor="12.50"))
    assert err.field == "amount_minor"


# == errors name the field ======================================================================
@pytest.mark.parametrize("missing", ["event_id", "deal_id", "stage", "occurred_at"])
def test_a_missing_required_field_is_named(missing: str) -> None:
    err = error_for(DEAL, deal(**{missing: ...}))
    assert err.field == missing
    assert f"field '{missing}'" in str(err)
    assert "missing" in str(err)


def test_an_unknown_field_is_named() -> None:
    err = error_for(DEAL, deal(amount=12))
    assert err.field == "amount"
    assert "field 'amount'" in str(err)
    assert "unknown field" in str(err)


def test_a_null_for_a_required_field_is_named() -> None:
    err = error_for(DEAL, deal(deal_id=None))
    assert err.field == "deal_id"


@pytest.mark.parametrize(
    ("schema", "field", "value"),
    [
        (DEAL, "amount_minor", "125000"),  # string for long
        (DEAL, "amount_minor", True),  # bool for long
        (DEAL, "amount_minor", 1250.5),  # float for long
        (RESULT, "attempt", False),  # bool for int
        (RESULT, "attempt", 2**31),  # too big for int
        (DEAL, "amount_minor", 2**63),  # too big for long
        (DEAL, "event_id", 12),  # number for string
        (DEAL, "event_id", ["ev-1"]),  # list for string
        (PROFILE, "opted_out", "false"),  # string for boolean
        (PROFILE, "opted_out", 0),  # number for boolean
    ],
)
def test_a_value_of_the_wrong_type_names_the_field(schema: Any, field: str, value: object) -> None:
    obj = {
        "DealEvent": deal(),
        "PayoutResult": {
            "payout_id": "pay-1",
            "attempt": 1,
            "status": "PAID",
            "occurred_at": "2024-05-17T09:30:15Z",
        },
        "AdvocateProfile": {
            "program_id": "acme-b2b",
            "advocate_id": "adv-1",
            "email": "ada@example.com",
            "display_name": "Ada",
            "email_sha256": "a" * 64,
            "opted_out": False,
            "tax_form_on_file": True,
            "updated_at": "2024-05-17T09:30:15Z",
        },
    }[schema["name"]]
    assert from_json(schema, obj)  # the unchanged object is fine
    err = error_for(schema, {**obj, field: value}, line=9)
    assert err.field == field
    assert f"field '{field}'" in str(err)


def test_messages_say_line_n_and_field_x_when_a_line_number_is_given() -> None:
    err = error_for(DEAL, deal(stage="SIGNED"), line=7)
    assert err.line == 7
    assert str(err).startswith("line 7, field 'stage': ")


def test_messages_without_a_line_number_still_name_the_field() -> None:
    err = error_for(DEAL, deal(stage="SIGNED"))
    assert err.line is None
    assert str(err).startswith("field 'stage': ")


@pytest.mark.parametrize("obj", [[1, 2], "deal", 3, None])
def test_something_other_than_a_json_object_is_rejected_with_its_line(obj: object) -> None:
    err = error_for(DEAL, obj, line=2)
    assert "line 2" in str(err)
    assert "expected a JSON object" in str(err)


# == to_json ====================================================================================
def test_to_json_writes_timestamps_as_utc_iso_8601_with_z_and_milliseconds() -> None:
    plus_two = timezone(timedelta(hours=2))
    assert to_json(datetime(2024, 5, 17, 11, 30, 15, 123000, tzinfo=plus_two)) == (
        "2024-05-17T09:30:15.123Z"
    )
    assert to_json(datetime(2024, 5, 17, 9, 30, tzinfo=UTC)) == "2024-05-17T09:30:00.000Z"


def test_to_json_walks_records_and_lists_and_encodes_bytes_as_base64() -> None:
    value = {"a": [datetime(2024, 1, 1, tzinfo=UTC), b"\x00\xff"], "b": None, "c": "WON"}
    assert to_json(value) == {"a": ["2024-01-01T00:00:00.000Z", "AP8="], "b": None, "c": "WON"}


def test_what_to_json_writes_from_json_reads_back() -> None:
    datum = from_json(DEAL, deal())
    assert from_json(DEAL, to_json(datum)) == datum
