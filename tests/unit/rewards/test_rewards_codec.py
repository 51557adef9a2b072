"""The adapter stores a ledger compactly and it comes back identical, whatever state its
rewards are in; anything else is refused before it can pay from a misread entry."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from decimal import Decimal
from typing import Any

import msgspec
import pytest
from rewards_builders import ESCALATING, T0, ledger, profile, result, reversal, rules, won

from referrals.contract.records import Channel, PayoutStatus, RewardType
from referrals.streams.statecodec import StateCodec
from services.rewards.adapters.codec import LEDGERS
from services.rewards.adapters.ledgers import DecodedLedgers
from services.rewards.domain.decide import (
    on_payout_result,
    on_profile,
    on_reversed,
    on_tick,
    on_won,
)
from services.rewards.domain.ledger import Ledger, State
from services.rewards.domain.rules import Tier


def every_state() -> Ledger:
    """A ledger holding an entry in every state a reward can be in."""
    mixed = rules(
        tiers=(Tier(1, RewardType.CHECK, percent=Decimal("5")), *ESCALATING[1:]),
        approval_threshold_minor=7_500,
        period_cap_minor=30_000,
    )
    book = on_profile(ledger(), profile(tax_form_on_file=True), T0).ledger
    steps = [
        ("r1", None, 100_000),  # 5%: paid at once, then finance fails it
        ("r2", None, None),  # 5% of nothing: MISSING_AMOUNT
        ("r3", None, 1),  # tier 3 = 7,500: NEEDS_APPROVAL
        ("r4", 30, 1),  # PENDING, then reversed: CANCELLED
        ("r5", 30, 1),  # PENDING
    ]
    for referral, hold, amount in steps:
        step_rules = mixed
        if hold:
            step_rules = rules(tiers=mixed.tiers, hold_days=hold)
        book = on_won(book, step_rules, won(referral, amount=amount), T0).ledger
    book = on_reversed(book, reversal("r4"), T0).ledger
    failed_id = book.entries[0].payout_id
    book = on_payout_result(book, result(failed_id, PayoutStatus.FAILED, reason="VOID"), T0).ledger
    return book


def test_a_restored_ledger_equals_the_one_persisted() -> None:
    book = every_state()
    assert {e.state for e in book.entries} == {
        State.FAILED,
        State.HELD,
        State.CANCELLED,
        State.PENDING,
    }
    restored = LEDGERS.decode(LEDGERS.encode(book))
    assert restored == book
    assert isinstance(restored.entries[0].channel, Channel)
    assert restored.tax_form_on_file is True


def test_a_restored_ledger_decides_exactly_as_the_original() -> None:
    book = every_state()
    later = T0 + timedelta(days=31)
    assert on_tick(LEDGERS.decode(LEDGERS.encode(book)), later) == on_tick(book, later)


def plain(book: Ledger) -> Any:
    """The stored form as plain data:
    [version, [program, advocate, tax_form, [entry...], [tally...], wins]]."""
    return msgspec.json.decode(LEDGERS.encode(book))


def test_the_persisted_form_is_positional_canonical_and_small() -> None:
    book = every_state()
    raw = LEDGERS.encode(book)
    version, (program_id, advocate_id, tax_form, entries, tallies, wins, days) = plain(book)
    assert (version, program_id, advocate_id, tax_form, tallies, wins, days) == (
        1,
        book.program_id,
        book.advocate_id,
        True,
        [],
        len(book.entries),
        [[d, n] for d, n in book.days],
    )
    assert entries[0][0] == book.entries[0].referral_id  # one array per entry, fields in order
    assert LEDGERS.encode(LEDGERS.decode(raw)) == raw
    # positional rows: a few hundred bytes per referral keeps a million advocates affordable
    assert len(raw) / len(book.entries) < 450


def test_an_empty_ledger_round_trips() -> None:
    assert LEDGERS.decode(LEDGERS.encode(ledger())) == ledger()


_JSON = msgspec.json.encode


@pytest.mark.parametrize(
    "raw",
    [
        b"not json",
        b"\xff\xfe",
        _JSON({}),
        _JSON([2, ["p", "a", False, []]]),  # a format version this code does not know
        _JSON([1, ["p", "a", False, [[1, 2, 3]]]]),
        _JSON([1, ["p", "a", False, [None]]]),
        b'[1, "p", "a", false, []]',  # the positional JSON of before
    ],
)
def test_a_corrupt_ledger_is_refused_with_a_value_error(raw: bytes) -> None:
    with pytest.raises(ValueError, match="corrupt rewards ledger at key b'adv-1'"):
        LEDGERS.decode(raw, b"adv-1")


@pytest.mark.parametrize(
    ("position", "value"),
    [(15, "NOT_A_STATE"), (3, "TELEPATHY"), (7, "soon"), (13, 1.5), (0, None), (21, 1), (7, True)],
)
def test_a_ledger_with_a_mistyped_field_is_refused(position: int, value: object) -> None:
    data = plain(every_state())
    data[1][3][0][position] = value
    with pytest.raises(ValueError, match="corrupt rewards ledger"):
        LEDGERS.decode(_JSON(data))


def test_a_stored_ledger_is_written_as_the_generic_codec_writes_it() -> None:
    # LEDGERS writes a ledger without a working set (the stored shape) straight from its tallies
    generic: StateCodec[Ledger] = StateCodec("rewards ledger", Ledger)
    book = every_state()
    stored, _ = book.archive()
    shapes = [
        book,
        stored,
        replace(stored, days=((739_000, 2), (739_001, 1)), tax_form_on_file=False),
        ledger(),
        replace(ledger(), wins=2**70),
    ]
    for shape in shapes:
        assert LEDGERS.encode(shape) == generic.encode(shape)
        assert LEDGERS.decode(LEDGERS.encode(shape)) == shape
    assert stored.tallies  # the archived entries are tallied


def test_decoded_ledgers_are_reused_only_for_the_very_bytes_and_within_a_budget() -> None:
    stored, _ = every_state().archive()
    raw = LEDGERS.encode(stored)
    cache = DecodedLedgers(budget_bytes=3 * (len(raw) + DecodedLedgers.OVERHEAD))
    cache.put(b"adv-1", raw, stored)
    assert cache.get(b"adv-1", bytes(raw)) is stored  # equal bytes, another object
    assert cache.get(b"adv-1", raw + b" ") is None and len(cache) == 0  # changed: dropped
    for n in range(4):
        cache.put(f"adv-{n}".encode(), raw, stored)
    assert len(cache) == 3 and cache.get(b"adv-0", raw) is None  # least recent out
    assert cache.size <= cache.budget
