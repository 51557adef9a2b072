"""Round trips for every kind of stored state value, with values derived from the types.

Whatever a state holds, its adapter's codec gives it back unchanged, and equal values give
equal bytes. The strategies come from the dataclasses' type hints themselves (as
test_roundtrip's come from the Avro schemas), so a field added to a state is covered without
touching this file. Integers are unbounded: notifications' bitmasks outgrow 64 bits.
"""

from __future__ import annotations

import dataclasses
import types
from datetime import UTC, datetime
from enum import Enum
from typing import Any, Union, get_args, get_origin, get_type_hints

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from referrals.streams.statecodec import StateCodec
from services.attribution.adapters import codec as attribution
from services.notifications.adapters import codec as notifications
from services.rewards.adapters import codec as rewards

CODECS: dict[str, StateCodec[Any]] = {
    "attribution.REFERRALS": attribution.REFERRALS,
    "attribution.WAITING": attribution.WAITING,
    "attribution.POSITIONS": attribution.POSITIONS,
    "attribution.TOUCHES": attribution.TOUCHES,
    "attribution.ADVOCATES": attribution.ADVOCATES,
    "attribution.CHANGES": attribution.CHANGES,
    "rewards.LEDGERS": rewards.LEDGERS,
    "notifications.STATES": notifications.STATES,
    "notifications.OUTBOX_ENTRIES": notifications.OUTBOX_ENTRIES,
}

# No example database, so the shared checkout gets no .hypothesis/ folder.
SETTINGS = settings(
    max_examples=50,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)

_SCALARS: dict[Any, st.SearchStrategy[Any]] = {
    str: st.text(),
    int: st.integers(),
    bool: st.booleans(),
    type(None): st.none(),
    datetime: st.datetimes(timezones=st.just(UTC)),
}


def values(type_: Any) -> st.SearchStrategy[Any]:
    """A strategy for any value of `type_` (the subset stored state uses)."""
    if isinstance(type_, type) and dataclasses.is_dataclass(type_):
        hints = get_type_hints(type_)
        fields = {f.name: values(hints[f.name]) for f in dataclasses.fields(type_)}
        return st.builds(type_, **fields)
    if isinstance(type_, type) and issubclass(type_, Enum):
        return st.sampled_from(type_)
    if type_ in _SCALARS:
        return _SCALARS[type_]
    origin, args = get_origin(type_), get_args(type_)
    if origin in (Union, types.UnionType):
        return st.one_of(*(values(arg) for arg in args))
    if origin is tuple and args[1:] == (...,):
        return st.lists(values(args[0]), max_size=3).map(tuple)
    if origin is tuple:
        return st.tuples(*(values(arg) for arg in args))
    if origin is list:
        return st.lists(values(args[0]), max_size=3)
    if origin is dict:
        return st.dictionaries(values(args[0]), values(args[1]), max_size=3)
    raise TypeError(f"no strategy for {type_!r}")


@pytest.mark.parametrize("name", sorted(CODECS))
@SETTINGS
@given(data=st.data())
def test_a_stored_value_reads_back_unchanged(name: str, data: st.DataObject) -> None:
    codec = CODECS[name]
    value = data.draw(values(codec.type))
    raw = codec.encode(value)
    assert codec.decode(raw) == value
    assert codec.encode(codec.decode(raw)) == raw
