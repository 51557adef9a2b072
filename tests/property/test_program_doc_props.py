"""Any valid tier list survives publication: canonical JSON gives back the same document, and
satisfies the JSON Schema editors use."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator

from referrals.contract.records import RewardType
from referrals.platform.money import CURRENCIES, exponent
from referrals.programs.document import canonical_json, from_canonical, validate
from referrals.programs.schema import SCHEMA_PATH

REPO = Path(__file__).resolve().parents[2]

# Currencies of every minor-unit size: 0 (JPY), 2 (USD), 3 (KWD), 4 (CLF) decimals.
CURRENCY = st.sampled_from(sorted(CURRENCIES))
PERCENT = st.decimals(min_value=Decimal("0.0001"), max_value=100, places=4)


def major(amount_minor: int, currency: str, trailing_zeros: bool) -> str:
    """'50.00' or '50' for 5000 USD: both are the same exact amount."""
    text = f"{Decimal(amount_minor).scaleb(-exponent(currency)):f}"
    if "." in text and not trailing_zeros:
        text = text.rstrip("0").rstrip(".")
    return text


@st.composite
def documents(
    draw: st.DrawFn,
) -> tuple[dict[str, Any], list[tuple[int, int | None, Decimal | None]]]:
    """A valid document and the tiers (from_referral, amount_minor, percent) it describes."""
    currency = draw(CURRENCY)
    gaps = draw(st.lists(st.integers(min_value=1, max_value=50), max_size=8))
    starts = [1]
    for gap in gaps:
        starts.append(starts[-1] + gap)
    tiers: list[dict[str, Any]] = []
    expected: list[tuple[int, int | None, Decimal | None]] = []
    for start in starts:
        tier: dict[str, Any] = {
            "from_referral": start,
            "reward_type": draw(st.sampled_from(list(RewardType))).value,
        }
        if draw(st.booleans()):
            minor = draw(st.integers(min_value=0, max_value=10**12))
            tier["amount"] = major(minor, currency, draw(st.booleans()))
            expected.append((start, minor, None))
        else:
            percent = draw(PERCENT)
            tier["percent"] = str(percent)
            expected.append((start, None, percent))
        tiers.append(tier)
    cap = draw(st.none() | st.integers(min_value=0, max_value=10**9))
    rewards: dict[str, Any] = {"tiers": tiers}
    if cap is not None:
        rewards["period_cap"] = major(cap, currency, trailing_zeros=True)
    return {"program_id": "prop", "currency": currency, "rewards": rewards}, expected


@settings(max_examples=50, deadline=None)
@given(documents())
def test_any_valid_tier_list_round_trips_through_canonical_json(
    case: tuple[dict[str, Any], list[tuple[int, int | None, Decimal | None]]],
) -> None:
    data, expected = case
    doc = validate(data)
    assert [(t.from_referral, t.amount_minor, t.percent) for t in doc.rewards.tiers] == expected
    text = canonical_json(doc)
    again = from_canonical(text)
    assert again == doc
    assert canonical_json(again) == text


SCHEMA = Draft202012Validator(json.loads((REPO / SCHEMA_PATH).read_text(encoding="utf-8")))


@settings(max_examples=50, deadline=None)
@given(documents())
def test_any_valid_tier_list_satisfies_the_published_schema_as_written_and_as_published(
    case: tuple[dict[str, Any], list[tuple[int, int | None, Decimal | None]]],
) -> None:
    data, _ = case
    assert [error.message for error in SCHEMA.iter_errors(data)] == []
    published = json.loads(canonical_json(validate(data)))
    assert [error.message for error in SCHEMA.iter_errors(published)] == []
