"""Checks of the program document's values and mappings, in marketing's words, for pydantic.

Pydantic's own messages ("Input should be a valid integer") are written for programmers, and it
converts leniently ("5" for 5, 50.0 for an amount). Each check here refuses exactly what the
document's rule refuses and says so ("must be a whole number from 1 to 3650"); a `Rule` attaches
a check to a field together with the JSON Schema that describes the rule to editors.

A problem is a `PydanticCustomError` of type "program" whose message is final. `Section`, the
base of every model of the document, reports unknown keys and problems of rules across keys
together with pydantic's own, so the author sees every problem at once.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from enum import StrEnum
from typing import Any, ClassVar, NoReturn, Self, TypeVar
from urllib.parse import urlsplit

from pydantic import (
    BaseModel,
    ConfigDict,
    GetCoreSchemaHandler,
    GetJsonSchemaHandler,
    ModelWrapValidatorHandler,
    ValidationError,
    model_validator,
)
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import PydanticCustomError, core_schema

from referrals.platform.money import to_minor

T = TypeVar("T")
E = TypeVar("E", bound=StrEnum)
Location = tuple[str | int, ...]
Found = tuple[Location, str]  # (where, relative to the value being checked; message)

_DECIMAL = re.compile(r"-?[0-9]+(\.[0-9]+)?")
_MAX_LONG = 2**63 - 1  # amounts travel as Avro longs
# pydantic's error types that can still reach the author, in the document's words.
_MESSAGES = {"missing": "is required", "dict_type": "must be a mapping of keys"}


def problem(message: str) -> PydanticCustomError:
    # The message goes in through the context so that pydantic's formatting leaves the braces
    # of "{{ unsubscribe_url }}" alone.
    return PydanticCustomError("program", "{message}", {"message": message})


def found_in(err: ValidationError) -> list[Found]:
    """Pydantic's errors as (location, message), in order."""
    return [
        (tuple(error["loc"]), _MESSAGES.get(error["type"], error["msg"]))
        for error in err.errors(include_url=False)
    ]


def report(found: Sequence[Found]) -> NoReturn:
    """Raises every problem in `found`; pydantic puts the location of the value in front."""
    details = [{"type": problem(message), "loc": loc, "input": None} for loc, message in found]
    raise ValidationError.from_exception_data("ProgramDocument", details)  # type: ignore[arg-type]


def collect(
    validate: Callable[[Any], T],
    value: object,
    found: Sequence[Found],
    order: Callable[[Found], int] | None = None,
) -> T:
    """`validate(value)`, reporting its problems and those already `found` together."""
    try:
        result = validate(value)
    except ValidationError as err:
        found = [*found, *found_in(err)]
    else:
        if not found:
            return result
    report(sorted(found, key=order) if order else found)


def unknown_key(key: object, allowed: Collection[str]) -> str:
    close = difflib.get_close_matches(str(key), allowed, n=1)
    if close:
        return f"unknown key (did you mean '{close[0]}'?)"
    return f"unknown key (expected one of {', '.join(allowed)})"


class Section(BaseModel):
    """One mapping of the document: an unknown key is a problem (with a "did you mean"), a key
    given as null counts as left out, and problems of rules across keys (`_across`) are reported
    with the rest, in the order of the fields."""

    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)
    _when_left_out: ClassVar[Mapping[str, object]] = {}  # validated as if given so

    @model_validator(mode="wrap")
    @classmethod
    def _every_problem(cls, data: object, handler: ModelWrapValidatorHandler[Self]) -> Self:
        if not isinstance(data, Mapping):
            report([((), "must be a mapping of keys")])
        fields = list(cls.model_fields)
        given = {key: value for key, value in data.items() if key in fields and value is not None}
        found: list[Found] = [
            ((str(key),), unknown_key(key, fields)) for key in data if key not in fields
        ]
        found += cls._across(given)

        def position(item: Found) -> int:  # unknown keys first, the section itself last
            where = item[0]
            if not where:
                return len(fields)
            return fields.index(str(where[0])) if where[0] in fields else -1

        return collect(handler, {**cls._when_left_out, **given}, found, position)

    @classmethod
    def _across(cls, given: Mapping[str, object]) -> list[Found]:
        """Problems of rules that involve several keys, read from the keys as given."""
        return []


@dataclass(frozen=True, eq=False)  # hashed by identity: Annotated[...] | None hashes it
class Rule:
    """A field's rule: `check` returns the value or raises `problem`; `schema` describes it.

    The check replaces pydantic's own validation of the field (no lenient conversions), and
    `schema` is the field's JSON Schema.
    """

    check: Callable[[Any], Any]
    schema: Mapping[str, Any] = field(default_factory=dict)

    def __get_pydantic_core_schema__(
        self, source: Any, handler: GetCoreSchemaHandler
    ) -> core_schema.CoreSchema:
        return core_schema.no_info_before_validator_function(self.check, core_schema.any_schema())

    def __get_pydantic_json_schema__(
        self, schema: core_schema.CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        return dict(self.schema)


def whole(low: int, high: int) -> Rule:
    def check(value: object) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise problem(f"must be a whole number from {low} to {high}")
        return value

    return Rule(check, {"type": "integer", "minimum": low, "maximum": high})


def flag(value: object) -> bool:
    """Only true or false: YAML's own booleans, not "yes" in quotes or 1."""
    if isinstance(value, bool):
        return value
    raise problem("must be true or false")


FLAG = Rule(flag, {"type": "boolean"})


def number(low: float, high: float) -> Rule:
    """A measurement such as a timeout: floats are fine here, unlike for money."""

    def check(value: object) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float) or not low < value <= high:
            raise problem(f"must be a number above {low} and at most {high}")
        return float(value)

    return Rule(check, {"type": "number", "exclusiveMinimum": low, "maximum": high})


def text(pattern: re.Pattern[str], expected: str, **schema: Any) -> Rule:
    def check(value: object) -> str:
        if isinstance(value, str) and pattern.fullmatch(value):
            return value
        raise problem(f"must be {expected}" + ("" if isinstance(value, str) else " in quotes"))

    return Rule(check, {"type": "string", "pattern": f"^{pattern.pattern}$", **schema})


def choice(enum: type[E]) -> Rule:
    """One of an enum's names (which are also its values)."""

    def check(value: object) -> E:
        if isinstance(value, str) and value in enum.__members__:
            return enum[value]
        raise problem(f"must be one of {', '.join(enum.__members__)}")

    return Rule(check, {"enum": list(enum.__members__)})


def url(value: object) -> str:
    parts = urlsplit(value) if isinstance(value, str) else None
    if parts and parts.scheme in ("http", "https") and parts.netloc:
        return str(value)
    raise problem("must be an http or https URL, like https://example.com/unsubscribe")


URL = Rule(url, {"type": "string", "format": "uri", "pattern": "^https?://"})


@dataclass(frozen=True)
class Money:
    """Quoted major units ("50.00"), kept as their exact text; checked against the currency.

    The currency comes in the validation context (a sibling of the section holding the amount);
    without a valid one (reported elsewhere) only the form can be checked.
    """

    def check(self, value: object, info: core_schema.ValidationInfo) -> str:
        amount = decimal_text(value, '"50.00"')
        if amount.startswith("-"):
            raise problem("must not be negative")
        currency = (info.context or {}).get("currency")
        try:
            minor = to_minor(amount, currency) if currency else 0
        except ValueError as err:  # MoneyError: more decimals than the currency has
            raise problem(str(err)) from err
        if minor > _MAX_LONG:
            raise problem("is too large")
        return amount

    def __get_pydantic_core_schema__(
        self, source: Any, handler: GetCoreSchemaHandler
    ) -> core_schema.CoreSchema:
        return core_schema.with_info_before_validator_function(self.check, core_schema.str_schema())

    def __get_pydantic_json_schema__(
        self, schema: core_schema.CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        return {
            "anyOf": [
                {"type": "string", "pattern": r"^[0-9]+(\.[0-9]+)?$"},
                {"type": "integer", "minimum": 0},
            ],
            "examples": ["50.00"],
        }


def percent(value: object) -> Decimal:
    result = Decimal(decimal_text(value, '"2.5"'))
    if not 0 < result <= 100:
        raise problem("must be more than 0 and at most 100")
    return result


PERCENT = Rule(
    percent,
    {
        "anyOf": [
            {"type": "string", "pattern": r"^[0-9]+(\.[0-9]+)?$"},
            {"type": "integer", "exclusiveMinimum": 0, "maximum": 100},
        ],
        "examples": ["2.5"],
    },
)


def decimal_text(value: object, example: str) -> str:
    """The exact text of a decimal; floats are refused because 0.1 is not exactly 0.1."""
    if isinstance(value, float):
        raise problem(
            f"must be quoted, like {example}: unquoted, {value!r} is read as an inexact"
            " floating-point number"
        )
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise problem(f"must be a decimal number in quotes, like {example}")
    if not _DECIMAL.fullmatch(str(value)):
        raise problem(f"must be a decimal number in quotes, like {example}")
    return str(value)
