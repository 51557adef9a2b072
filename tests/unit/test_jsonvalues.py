"""Typed reads of stored JSON values: a wrong type is an error that names what was expected."""

from __future__ import annotations

import pytest

from referrals.platform.jsonvalues import integer, optional_integer, optional_text, text


def test_text_and_integers_pass_through_and_none_is_allowed_only_where_optional() -> None:
    assert text("a") == "a" and integer(3) == 3
    assert optional_text(None) is None and optional_integer(None) is None
    with pytest.raises(TypeError, match="expected a string"):
        text(None)
    with pytest.raises(TypeError, match="expected an integer"):
        integer(None)


def test_a_boolean_is_not_accepted_as_an_integer() -> None:
    with pytest.raises(TypeError, match="expected an integer, got True"):
        integer(True)


def test_a_number_is_not_accepted_as_text() -> None:
    with pytest.raises(TypeError, match="expected a string, got 5"):
        optional_text(5)
