"""`replace` as `dataclasses.replace` does it, for the core's frozen value classes, cheaper.

Every decision copies entries and ledgers with a field or two changed (an entry has thirty),
several times per input; `dataclasses.replace` looks every field up again on each call. This
one calls the same `__init__` with the same arguments, from a field list read once per class,
and hands anything unusual (an unknown field name, an InitVar, an init=False or keyword-only
field) to `dataclasses.replace` itself, errors included.
"""

from __future__ import annotations

import dataclasses
from typing import Any, TypeVar

T = TypeVar("T")

_NAMES: dict[type, tuple[tuple[str, ...], frozenset[str]] | None] = {}


def replace(obj: T, /, **changes: Any) -> T:
    """`obj` with `changes`, exactly as `dataclasses.replace(obj, **changes)`."""
    cls = type(obj)
    try:
        spec = _NAMES[cls]
    except KeyError:
        spec = _NAMES[cls] = _positional(cls)
    if spec is None or not spec[1].issuperset(changes):
        return dataclasses.replace(obj, **changes)  # type: ignore[type-var]
    return cls(*[changes[n] if n in changes else getattr(obj, n) for n in spec[0]])


def _positional(cls: type) -> tuple[tuple[str, ...], frozenset[str]] | None:
    """The fields `__init__` takes, in order, when it takes exactly every field positionally."""
    declared = getattr(cls, "__dataclass_fields__", None)
    if declared is None:
        return None
    fields = dataclasses.fields(cls)
    if len(fields) != len(declared) or any(not f.init or f.kw_only for f in fields):
        return None  # InitVars, init=False or keyword-only fields: the library's own way
    names = tuple(f.name for f in fields)
    return names, frozenset(names)
