"""The core's `replace` is `dataclasses.replace`, only cheaper: same values, same errors."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import pytest
from rewards_builders import T0, ledger, rules, won

from referrals.platform.evolve import replace, slot_setters
from services.rewards.domain.decide import on_won
from services.rewards.domain.ledger import State


@dataclass(frozen=True)
class Odd:
    a: int
    b: int = field(default=0, init=False)
    c: int = field(default=1, kw_only=True)


def test_replace_gives_what_dataclasses_replace_gives() -> None:
    entry = on_won(ledger(), rules(), won("r1"), T0).ledger.entries[0]
    for changes in ({}, {"state": State.PAID, "reason": None}, {"friend": None, "seq": 9}):
        assert replace(entry, **changes) == dataclasses.replace(entry, **changes)
    assert replace(Odd(1, c=2), a=3) == dataclasses.replace(Odd(1, c=2), a=3)


def test_replace_fails_as_dataclasses_replace_fails() -> None:
    entry = on_won(ledger(), rules(), won("r1"), T0).ledger.entries[0]
    with pytest.raises(TypeError, match="nope"):
        replace(entry, nope=1)
    with pytest.raises(ValueError, match="hold_days"):
        replace(rules(), hold_days=-1)  # __post_init__ still checks


@dataclass(frozen=True, slots=True)
class Slotted:
    a: int
    b: str = "b"
    c: tuple[int, ...] = ()


def test_a_copy_made_by_setting_slots_is_the_same_value_frozen_and_takes_each_calls_values() -> (
    None
):
    entry = on_won(ledger(), rules(), won("r1"), T0).ledger.entries[0]
    for seq in (1, 2, 3):  # one copier for the names (state, seq); the values are each call's
        copied = replace(entry, state=State.PAID, seq=seq)
        assert copied == dataclasses.replace(entry, state=State.PAID, seq=seq)
        assert copied.seq == seq
    assert replace(entry, seq=5, state=State.PAID) == replace(entry, state=State.PAID, seq=5)
    one = Slotted(1, "x", (2,))
    for changes in ({}, {"a": 9}, {"c": (), "b": "y"}):
        made = replace(one, **changes)
        assert made == dataclasses.replace(one, **changes) and type(made) is Slotted
        assert hash(made) == hash(dataclasses.replace(one, **changes))
        with pytest.raises(dataclasses.FrozenInstanceError):
            made.a = 0  # type: ignore[misc]
    assert replace(one) is not one  # a new object, as dataclasses.replace makes


@dataclass(frozen=True, slots=True)
class Derived(Slotted):
    d: int = 4


def test_a_class_whose_fields_are_partly_its_bases_slots_is_copied_through_init() -> None:
    assert slot_setters(Derived) is None  # `a`, `b`, `c` are Slotted's slots
    assert [name for name, _ in slot_setters(Slotted) or ()] == ["a", "b", "c"]
    one = Derived(1, "x", (2,), 5)
    assert replace(one, d=6, a=0) == dataclasses.replace(one, d=6, a=0)
