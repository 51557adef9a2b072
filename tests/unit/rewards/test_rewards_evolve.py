"""The core's `replace` is `dataclasses.replace`, only cheaper: same values, same errors."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import pytest
from rewards_builders import T0, ledger, rules, won

from services.rewards.domain.decide import on_won
from services.rewards.domain.evolve import replace
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
