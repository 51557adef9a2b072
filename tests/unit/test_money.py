"""Money is integer minor units plus an ISO 4217 code; documents hold exact decimal strings in
major units; percentages round half-up to the minor unit, and nothing is ever a float."""

from __future__ import annotations

from decimal import Decimal
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from referrals.platform.money import MoneyError, exponent, percent_of, to_major, to_minor

SETTINGS = settings(max_examples=200, deadline=None, database=None)


# == to_minor ===================================================================================
@pytest.mark.parametrize(
    ("amount", "currency", "minor"),
    [
        ("50.00", "USD", 5000),
        ("50", "USD", 5000),
        ("0.05", "USD", 5),
        ("1000.5", "USD", 100050),
        ("0", "USD", 0),
        ("50.000", "USD", 5000),  # a trailing zero is still exact
        ("500", "JPY", 500),
        ("1.234", "BHD", 1234),
        ("1.2", "BHD", 1200),
        ("12.3456", "CLF", 123456),
    ],
)
def test_to_minor_scales_by_the_currencys_exponent(amount: str, currency: str, minor: int) -> None:
    assert to_minor(amount, currency) == minor


@pytest.mark.parametrize(
    ("amount", "currency"),
    [("0.001", "USD"), ("50.005", "USD"), ("500.5", "JPY"), ("0.1", "JPY"), ("1.2345", "BHD")],
)
def test_to_minor_rejects_more_decimals_than_the_currency_has(amount: str, currency: str) -> None:
    with pytest.raises(MoneyError, match=f"more decimals than {currency} allows"):
        to_minor(amount, currency)


@pytest.mark.parametrize("amount", ["-1", "-0.01"])
def test_to_minor_rejects_negative_amounts(amount: str) -> None:
    with pytest.raises(MoneyError, match="negative"):
        to_minor(amount, "USD")


@pytest.mark.parametrize("amount", ["abc", "", "12,50", "$5", "NaN", "Infinity", "-Infinity"])
def test_to_minor_rejects_what_is_not_a_finite_number(amount: str) -> None:
    with pytest.raises(MoneyError):
        to_minor(amount, "USD")


def test_to_minor_rejects_a_non_string() -> None:
    with pytest.raises(MoneyError):
        to_minor(None, "USD")  # type: ignore[arg-type]


@pytest.mark.parametrize("currency", ["ABC", "usd", "US", "", "DOLLAR"])
def test_to_minor_rejects_an_unknown_currency(currency: str) -> None:
    with pytest.raises(MoneyError, match="ISO 4217"):
        to_minor("1.00", currency)


def test_money_errors_are_value_errors() -> None:
    assert issubclass(MoneyError, ValueError)


@pytest.mark.parametrize(("currency", "exp"), [("USD", 2), ("EUR", 2), ("JPY", 0), ("BHD", 3)])
def test_exponent_is_the_iso_4217_minor_unit(currency: str, exp: int) -> None:
    assert exponent(currency) == exp


# == to_major ===================================================================================
@pytest.mark.parametrize(
    ("minor", "currency", "major"),
    [
        (5000, "USD", "50.00"),
        (5, "USD", "0.05"),
        (0, "USD", "0.00"),
        (123456789, "USD", "1234567.89"),
        (500, "JPY", "500"),
        (1234, "BHD", "1.234"),
        (1, "BHD", "0.001"),
    ],
)
def test_to_major_writes_exact_major_units(minor: int, currency: str, major: str) -> None:
    assert to_major(minor, currency) == major


@SETTINGS
@given(st.integers(0, 2**63 - 1), st.sampled_from(["USD", "JPY", "BHD", "CLF"]))
def test_to_major_then_to_minor_gives_back_the_amount(minor: int, currency: str) -> None:
    assert to_minor(to_major(minor, currency), currency) == minor


# == percent_of =================================================================================
@pytest.mark.parametrize(
    ("amount", "percent", "expected"),
    [
        (1250, "5", 63),  # 62.5 rounds up
        (1230, "5", 62),  # 61.5 rounds up
        (1210, "5", 61),  # 60.5 rounds up
        (1, "5", 0),  # 0.05 rounds down
        (1, "50", 1),  # 0.5 rounds up
        (3, "50", 2),  # 1.5 rounds up (half-up, not banker's)
        (5, "50", 3),  # 2.5 rounds up (half-up, not banker's)
        (10000, "12.5", 1250),
        (999, "33.33", 333),  # 332.9667
        (0, "5", 0),
        (1250, "0", 0),
        (1250, "100", 1250),
    ],
)
def test_percent_of_rounds_half_up_to_the_minor_unit(
    amount: int, percent: str, expected: int
) -> None:
    assert percent_of(amount, Decimal(percent)) == expected


PERCENTS = st.decimals(min_value=0, max_value=100, places=2, allow_nan=False, allow_infinity=False)


@SETTINGS
@given(st.integers(0, 2**63 - 1), PERCENTS)
def test_percent_of_is_within_half_a_minor_unit_of_the_exact_value_and_never_negative(
    amount: int, percent: Decimal
) -> None:
    result = percent_of(amount, percent)
    exact = Fraction(amount) * Fraction(percent) / 100
    assert result >= 0
    assert abs(Fraction(result) - exact) <= Fraction(1, 2)
    if exact - int(exact) == Fraction(1, 2):  # an exact half goes up
        assert result == int(exact) + 1


@SETTINGS
@given(st.integers(0, 2**63 - 1), PERCENTS)
def test_percent_of_is_an_int_never_more_than_the_amount(amount: int, percent: Decimal) -> None:
    result = percent_of(amount, percent)
    assert type(result) is int
    assert result <= amount
