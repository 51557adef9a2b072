"""Reading documents people write: YAML or JSON without silent surprises, and typed reads.

`load` refuses a key given twice (YAML and JSON would both keep the last one silently).
`Section` reads one mapping of a document: each typed read either returns a good value or
records a problem at the key's path (`rewards.tiers[2].percent`) and returns the default, so a
validator can go on and report every problem at once.
"""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Collection, Hashable, Mapping
from decimal import Decimal
from enum import StrEnum
from typing import Any, TypeVar
from urllib.parse import urlsplit

import yaml

from referrals.platform.money import to_minor

E = TypeVar("E", bound=StrEnum)
Problems = list[tuple[str, str]]  # (path, message)

_DECIMAL = re.compile(r"-?[0-9]+(\.[0-9]+)?")
_MAX_LONG = 2**63 - 1  # amounts travel as Avro longs


class _Loader(yaml.SafeLoader):
    """A SafeLoader that refuses a key given twice in one mapping."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Hashable, Any]:
        seen: list[object] = []
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"key {key!r} appears twice", key_node.start_mark
                )
            seen.append(key)
        return super().construct_mapping(node, deep)


class DuplicateKey(ValueError):
    """A JSON object naming one key twice."""


def _unique(pairs: list[tuple[str, object]]) -> dict[str, object]:
    keys = [key for key, _ in pairs]
    for key in keys:
        if keys.count(key) > 1:
            raise DuplicateKey(f"key {key!r} appears twice")
    return dict(pairs)


def load(text: str) -> object:
    """YAML, or JSON when the text starts with `{` (JSON's own errors say more)."""
    if text.lstrip().startswith("{"):
        return json.loads(text, object_pairs_hook=_unique)
    return yaml.load(text, Loader=_Loader)


def _unknown(key: object, allowed: Collection[str]) -> str:
    close = difflib.get_close_matches(str(key), allowed, n=1)
    if close:
        return f"unknown key (did you mean '{close[0]}'?)"
    return f"unknown key (expected one of {', '.join(allowed)})"


class Section:
    """One mapping of a document: typed reads record problems and fall back to defaults.

    `keys` None accepts any string key (mappings keyed by data, such as locales). A key given as
    null counts as left out.
    """

    def __init__(
        self,
        problems: Problems,
        data: object,
        path: str,
        keys: Collection[str] | None,
        required: Collection[str] = (),
    ) -> None:
        self.problems, self.path, self.values = problems, path, dict[str, object]()
        self.is_mapping = isinstance(data, Mapping | None)
        if not isinstance(data, Mapping | None):
            self.problem("", "must be a mapping of keys")
            return
        for key, value in (data or {}).items():
            if not isinstance(key, str) or (keys is not None and key not in keys):
                self.problem(str(key), _unknown(key, keys or ()))
            elif value is not None:
                self.values[key] = value
        for key in required:
            if key not in self.values:
                self.problem(key, "is required")

    def at(self, key: str) -> str:
        """The path of `key` in this section ('' is the section itself)."""
        if not key:
            return self.path or "<document>"
        return f"{self.path}.{key}" if self.path else key

    def problem(self, key: str, message: str) -> None:
        self.problems.append((self.at(key), message))

    def section(
        self, key: str, keys: Collection[str] | None, required: Collection[str] = ()
    ) -> Section:
        return Section(self.problems, self.values.get(key), self.at(key), keys, required)

    def item(
        self, key: str, index: int, keys: Collection[str] | None, required: Collection[str] = ()
    ) -> Section:
        """The `index`-th mapping of the list at `key` (the caller checked it is a list)."""
        items = self.values[key]
        assert isinstance(items, list)
        return Section(self.problems, items[index], f"{self.at(key)}[{index}]", keys, required)

    def integer(self, key: str, default: int, low: int, high: int) -> int:
        if key not in self.values:
            return default
        value = self.values[key]
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            self.problem(key, f"must be a whole number from {low} to {high}")
            return default
        return value

    def number(self, key: str, default: float, low: float, high: float) -> float:
        """A measurement such as a timeout: floats are fine here, unlike for money."""
        value = self.values.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int | float) or not low < value <= high:
            self.problem(key, f"must be a number above {low} and at most {high}")
            return default
        return float(value)

    def choice(self, key: str, enum: type[E], default: E) -> E:
        value = self.values.get(key, default)
        if isinstance(value, str) and value in enum.__members__:
            return enum[value]
        self.problem(key, f"must be one of {', '.join(enum.__members__)}")
        return default

    def text(self, key: str, default: str, pattern: re.Pattern[str], expected: str) -> str:
        value = self.values.get(key, default)
        if isinstance(value, str) and pattern.fullmatch(value):
            return value
        self.problem(key, f"must be {expected}" + ("" if isinstance(value, str) else " in quotes"))
        return default

    def url(self, key: str) -> str | None:
        value = self.values.get(key)
        if value is None:
            return None
        parts = urlsplit(value) if isinstance(value, str) else None
        if parts and parts.scheme in ("http", "https") and parts.netloc:
            return str(value)
        self.problem(key, "must be an http or https URL, like https://example.com/unsubscribe")
        return None

    def money(self, key: str, currency: str | None) -> int | None:
        """Quoted major units ("50.00") to minor units; None if absent or wrong."""
        if key not in self.values:
            return None
        try:
            text = _decimal_text(self.values[key], '"50.00"')
            if text.startswith("-"):
                raise ValueError("must not be negative")
            # Without a valid currency (reported elsewhere) only the form can be checked.
            minor = to_minor(text, currency) if currency else 0
            if minor > _MAX_LONG:
                raise ValueError("is too large")
            return minor
        except ValueError as err:  # MoneyError included: too many decimals
            self.problem(key, str(err))
            return None

    def percent(self, key: str) -> Decimal | None:
        if key not in self.values:
            return None
        try:
            value = Decimal(_decimal_text(self.values[key], '"2.5"'))
            if not 0 < value <= 100:
                raise ValueError("must be more than 0 and at most 100")
            return value
        except ValueError as err:
            self.problem(key, str(err))
            return None


def _decimal_text(value: object, example: str) -> str:
    """The exact text of a decimal; floats are refused because 0.1 is not exactly 0.1."""
    if isinstance(value, float):
        raise ValueError(
            f"must be quoted, like {example}: unquoted, {value!r} is read as an inexact"
            " floating-point number"
        )
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise ValueError(f"must be a decimal number in quotes, like {example}")
    if not _DECIMAL.fullmatch(str(value)):
        raise ValueError(f"must be a decimal number in quotes, like {example}")
    return str(value)
