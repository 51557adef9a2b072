"""Typed reads of decoded JSON values, for the compact state encodings of the service cores.

Each raises TypeError naming what it expected, so a corrupt stored state is reported as such
(the cores turn it into ValueError) rather than surfacing later as a wrong type.
"""

from __future__ import annotations

from typing import Any


def text(value: Any) -> str:
    if not isinstance(value, str):
        raise TypeError(f"expected a string, got {value!r}")
    return value


def optional_text(value: Any) -> str | None:
    return None if value is None else text(value)


def integer(value: Any) -> int:
    if not isinstance(value, int) or isinstance(value, bool):  # bool is an int in Python
        raise TypeError(f"expected an integer, got {value!r}")
    return value


def optional_integer(value: Any) -> int | None:
    return None if value is None else integer(value)
