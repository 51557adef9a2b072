"""`replace` as `dataclasses.replace` does it, for the services' frozen value classes, cheaper.

The cores copy their values with a field or two changed several times per input (a rewards
decision copies entries of thirty fields and ledgers; attribution its referrals; notifications
its advocates' state); `dataclasses.replace` looks every field up again on each call (17 us
for an entry), and even calling `__init__` with the same arguments sets each field through
`object.__setattr__` (9 us). For a slotted class without `__post_init__`, this one makes the
copy with a function generated once per class and set of changed names: a new object whose
slots are set through their descriptors, the unchanged ones read as attributes (about 3 us).
A class with `__post_init__` (rewards' rules check themselves) or without slots gets
`__init__` with the same arguments; anything unusual (an unknown field name, an InitVar, an
init=False or keyword-only field) is handed to `dataclasses.replace` itself, errors included.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from types import MemberDescriptorType
from typing import Any, TypeVar

T = TypeVar("T")

_Spec = tuple[tuple[str, ...], frozenset[str], bool]  # fields, their set, slots settable
_NAMES: dict[type, _Spec | None] = {}
_COPIERS: dict[tuple[type, tuple[str, ...]], Callable[[Any, dict[str, Any]], Any]] = {}


def replace(obj: T, /, **changes: Any) -> T:
    """`obj` with `changes`, exactly as `dataclasses.replace(obj, **changes)`."""
    cls = type(obj)
    copier = _COPIERS.get((cls, tuple(changes)))
    if copier is not None:
        made: T = copier(obj, changes)
        return made
    try:
        spec = _NAMES[cls]
    except KeyError:
        spec = _NAMES[cls] = _positional(cls)
    if spec is None or not spec[1].issuperset(changes):
        return dataclasses.replace(obj, **changes)  # type: ignore[type-var]
    names, _, settable = spec
    if not settable:
        return cls(*[changes[n] if n in changes else getattr(obj, n) for n in names])
    copier = _COPIERS[(cls, tuple(changes))] = _copier(cls, names, frozenset(changes))
    made = copier(obj, changes)
    return made


def _positional(cls: type) -> _Spec | None:
    """The fields `__init__` takes, in order, when it takes exactly every field positionally,
    and whether a copy may set them as slots (`__init__` would do nothing more)."""
    declared = getattr(cls, "__dataclass_fields__", None)
    if declared is None:
        return None
    fields = dataclasses.fields(cls)
    if len(fields) != len(declared) or any(not f.init or f.kw_only for f in fields):
        return None  # InitVars, init=False or keyword-only fields: the library's own way
    names = tuple(f.name for f in fields)
    return names, frozenset(names), slot_setters(cls) is not None


def slot_setters(cls: type) -> tuple[tuple[str, Callable[[Any, Any], None]], ...] | None:
    """Each field of dataclass `cls` with the setter of its slot, in declaration order, when a
    new object may be made by setting them after `object.__new__` (its `__init__` would do
    nothing more: the class has slots of its own for every field and no `__post_init__`);
    None otherwise. `referrals.contract.avro` builds decoded records this way too."""
    if hasattr(cls, "__post_init__"):
        return None
    setters: list[tuple[str, Callable[[Any, Any], None]]] = []
    for field in dataclasses.fields(cls):
        slot = cls.__dict__.get(field.name)
        if not isinstance(slot, MemberDescriptorType):
            return None  # no slot of its own (no slots, or the field is a base class's)
        setters.append((field.name, slot.__set__))
    return tuple(setters)


def _copier(
    cls: type, names: tuple[str, ...], changed: frozenset[str]
) -> Callable[[Any, dict[str, Any]], Any]:
    """A function (obj, changes) -> a new `cls` with `changes` and the rest of `obj`."""
    setters = slot_setters(cls)
    assert setters is not None and tuple(n for n, _ in setters) == names
    scope: dict[str, Any] = {"_new": object.__new__, "_cls": cls}
    lines = ["def copy(obj, changes):", "    made = _new(_cls)"]
    for i, (name, set_slot) in enumerate(setters):
        scope[f"_set{i}"] = set_slot
        value = f"changes[{name!r}]" if name in changed else f"obj.{name}"
        lines.append(f"    _set{i}(made, {value})")
    lines.append("    return made")
    exec("\n".join(lines), scope)  # the source is built from the class's field names only
    copy: Callable[[Any, dict[str, Any]], Any] = scope["copy"]
    return copy
