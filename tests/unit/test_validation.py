"""Impossible values (the contract's "Bad input"): an empty id, an id over 256 characters, a
negative amount, a malformed currency, an attempt below 1, an `occurred_at` before 2000 or more
than one day in the future. Each raises InvalidRecord with its reason and the field at fault."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from referrals.contract.records import (
    AdvocateProfile,
    Channel,
    ConversionEvent,
    DealEvent,
    DealStage,
    PayoutResult,
    PayoutStatus,
    ProgramConfig,
    Record,
    RewardAction,
    RewardCommand,
    ShareEvent,
)
from referrals.contract.validation import check_values
from referrals.platform.errors import InvalidRecord, PermanentError
from referrals.platform.settings import AmountLimits

NOW = datetime(2024, 5, 17, 12, 0, tzinfo=UTC)
WHEN = datetime(2024, 5, 16, 9, 30, tzinfo=UTC)

DEAL = DealEvent(
    event_id="ev-1",
    program_id="acme-b2b",
    deal_id="deal-1",
    prospect_id="pro-1",
    stage=DealStage.WON,
    occurred_at=WHEN,
    amount_minor=125_000,
    currency="USD",
    declared_advocate_id="adv-1",
)
SHARE = ShareEvent(
    event_id="ev-2",
    program_id="acme-b2b",
    advocate_id="adv-1",
    channel=Channel.EMAIL,
    referral_code="ADA-42",
    occurred_at=WHEN,
)
CONVERSION = ConversionEvent(
    event_id="ev-3", program_id="acme-b2b", prospect_id="pro-1", occurred_at=WHEN
)
RESULT = PayoutResult(payout_id="pay-1", attempt=1, status=PayoutStatus.PAID, occurred_at=WHEN)
PROFILE = AdvocateProfile(
    program_id="acme-b2b",
    advocate_id="adv-1",
    email="ada@example.com",
    display_name="Ada",
    email_sha256="a" * 64,
    opted_out=False,
    tax_form_on_file=False,
    updated_at=WHEN,
)


def rejection(record: Record, now: datetime = NOW) -> InvalidRecord:
    with pytest.raises(InvalidRecord) as caught:
        check_values(record, now)
    err = caught.value
    assert isinstance(err, PermanentError)
    return err


def with_(record: Any, **changes: Any) -> Any:
    return dataclasses.replace(record, **changes)


# == sound records ==============================================================================
@pytest.mark.parametrize(
    "record", [DEAL, SHARE, CONVERSION, RESULT, PROFILE], ids=lambda r: type(r).__name__
)
def test_a_sound_record_passes(record: Record) -> None:
    assert check_values(record, NOW) is None


def test_absent_optional_ids_and_amounts_are_not_checked() -> None:
    sparse = with_(DEAL, amount_minor=None, currency=None, declared_advocate_id=None)
    assert check_values(sparse, NOW) is None


# == EMPTY_ID ===================================================================================
@pytest.mark.parametrize("blank", ["", " ", "   \t\n"])
@pytest.mark.parametrize("field", ["event_id", "program_id", "deal_id", "prospect_id"])
def test_an_empty_or_blank_id_is_rejected(field: str, blank: str) -> None:
    err = rejection(with_(DEAL, **{field: blank}))
    assert err.reason == "EMPTY_ID"
    assert err.field == field
    assert f"field '{field}'" in str(err)


def test_an_empty_optional_id_that_is_present_is_rejected() -> None:
    err = rejection(with_(DEAL, declared_advocate_id=""))
    assert (err.reason, err.field) == ("EMPTY_ID", "declared_advocate_id")


def test_an_empty_referral_code_is_rejected_like_an_id() -> None:
    err = rejection(with_(SHARE, referral_code=" "))
    assert (err.reason, err.field) == ("EMPTY_ID", "referral_code")


# == ID_TOO_LONG ================================================================================
def test_an_id_of_257_characters_is_too_long() -> None:
    err = rejection(with_(DEAL, deal_id="d" * 257))
    assert (err.reason, err.field) == ("ID_TOO_LONG", "deal_id")
    assert "257" in str(err) and "256" in str(err)


def test_an_id_of_256_characters_is_fine() -> None:
    assert check_values(with_(DEAL, deal_id="d" * 256), NOW) is None


def test_id_length_counts_characters_not_bytes() -> None:
    assert check_values(with_(DEAL, deal_id="é" * 256), NOW) is None


# == NEGATIVE_AMOUNT ============================================================================
@pytest.mark.parametrize("amount", [-1, -125_000])
def test_a_negative_amount_is_rejected(amount: int) -> None:
    err = rejection(with_(DEAL, amount_minor=amount))
    assert (err.reason, err.field) == ("NEGATIVE_AMOUNT", "amount_minor")
    assert str(amount) in str(err)


def test_a_zero_amount_is_fine() -> None:
    assert check_values(with_(DEAL, amount_minor=0), NOW) is None


# == BAD_CURRENCY ===============================================================================
@pytest.mark.parametrize("currency", ["usd", "US", "USDX", "", "U$D", " USD"])
def test_a_currency_that_is_not_three_capital_letters_is_rejected(currency: str) -> None:
    err = rejection(with_(DEAL, currency=currency))
    assert (err.reason, err.field) == ("BAD_CURRENCY", "currency")
    assert repr(currency) in str(err)


def test_a_currency_with_a_trailing_newline_is_rejected() -> None:
    """BUG (referrals/validation.py, `_CURRENCY.match`): `^[A-Z]{3}$` matches "USD\\n" because `$`
    also matches before a final newline; use `fullmatch` (or `\\Z`)."""
    with pytest.raises(InvalidRecord) as caught:
        check_values(with_(DEAL, currency="USD\n"), NOW)
    assert caught.value.reason == "BAD_CURRENCY"


@pytest.mark.parametrize("currency", ["USD", "EUR", "JPY", "BHD"])
def test_iso_4217_codes_are_fine(currency: str) -> None:
    assert check_values(with_(DEAL, currency=currency), NOW) is None


# == BAD_ATTEMPT ================================================================================
@pytest.mark.parametrize("attempt", [0, -1])
def test_an_attempt_below_one_is_rejected(attempt: int) -> None:
    err = rejection(with_(RESULT, attempt=attempt))
    assert (err.reason, err.field) == ("BAD_ATTEMPT", "attempt")


@pytest.mark.parametrize("attempt", [1, 2, 99])
def test_attempts_from_one_up_are_fine(attempt: int) -> None:
    assert check_values(with_(RESULT, attempt=attempt), NOW) is None


# == TIME_OUT_OF_RANGE ==========================================================================
def test_an_occurred_at_before_2000_is_rejected() -> None:
    err = rejection(with_(DEAL, occurred_at=datetime(1999, 12, 31, 23, 59, 59, tzinfo=UTC)))
    assert (err.reason, err.field) == ("TIME_OUT_OF_RANGE", "occurred_at")
    assert "1999-12-31T23:59:59" in str(err)


def test_an_occurred_at_of_2000_01_01_is_fine() -> None:
    assert check_values(with_(DEAL, occurred_at=datetime(2000, 1, 1, tzinfo=UTC)), NOW) is None


def test_an_occurred_at_exactly_one_day_after_now_is_fine() -> None:
    assert check_values(with_(DEAL, occurred_at=NOW + timedelta(days=1)), NOW) is None


def test_an_occurred_at_one_day_and_one_millisecond_after_now_is_rejected() -> None:
    late = NOW + timedelta(days=1, milliseconds=1)
    err = rejection(with_(DEAL, occurred_at=late))
    assert (err.reason, err.field) == ("TIME_OUT_OF_RANGE", "occurred_at")


def test_the_future_limit_follows_the_now_passed_in() -> None:
    late = NOW + timedelta(days=3)
    rejection(with_(DEAL, occurred_at=late), now=NOW)
    assert check_values(with_(DEAL, occurred_at=late), NOW + timedelta(days=2)) is None


def test_a_profiles_updated_at_is_checked_too() -> None:
    err = rejection(with_(PROFILE, updated_at=datetime(1990, 1, 1, tzinfo=UTC)))
    assert (err.reason, err.field) == ("TIME_OUT_OF_RANGE", "updated_at")


# == the rest of the contract's impossible values ===============================================
def test_an_amount_above_the_default_ceiling_of_ten_to_the_ten_is_rejected() -> None:
    assert check_values(with_(DEAL, amount_minor=10**10), NOW) is None
    err = rejection(with_(DEAL, amount_minor=10**10 + 1))
    assert (err.reason, err.field) == ("AMOUNT_ABOVE_CEILING", "amount_minor")


def test_a_two_to_the_62_cent_won_deal_is_rejected() -> None:
    err = rejection(with_(DEAL, amount_minor=2**62))
    assert (err.reason, err.field) == ("AMOUNT_ABOVE_CEILING", "amount_minor")
    assert str(2**62) in str(err)


def test_the_ceiling_is_configurable_per_currency() -> None:
    limits = AmountLimits(max_amount_minor=1_000, amount_ceilings={"JPY": 50_000})
    check_values(with_(DEAL, amount_minor=50_000, currency="JPY"), NOW, limits=limits)
    with pytest.raises(InvalidRecord) as usd:
        check_values(with_(DEAL, amount_minor=1_001, currency="USD"), NOW, limits=limits)
    with pytest.raises(InvalidRecord) as jpy:
        check_values(with_(DEAL, amount_minor=50_001, currency="JPY"), NOW, limits=limits)
    assert usd.value.reason == jpy.value.reason == "AMOUNT_ABOVE_CEILING"
    assert "JPY" in str(jpy.value)


def test_the_catalogue_a_service_runs_with_checks_the_configured_ceiling() -> None:
    from referrals.contract import topics

    before = topics.TOPICS.validate
    try:
        catalogue = topics.configured(AmountLimits(max_amount_minor=100))
        with pytest.raises(InvalidRecord) as caught:
            catalogue.validate(with_(DEAL, amount_minor=101), NOW)
        assert caught.value.reason == "AMOUNT_ABOVE_CEILING"
        catalogue.validate(with_(DEAL, amount_minor=100), NOW)
    finally:
        topics.TOPICS.validate = before


@pytest.mark.parametrize(
    "bad", ["A" * 64, "a" * 63, "a" * 65, "g" * 64, "", "a" * 64 + "\n", "a" * 900_000]
)
def test_an_email_hash_that_is_not_64_lowercase_hex_digits_is_rejected(bad: str) -> None:
    err = rejection(with_(PROFILE, email_sha256=bad))
    assert (err.reason, err.field) == ("BAD_EMAIL_HASH", "email_sha256")
    assert len(str(err)) < 300  # a 900 KB hash is not copied into the message


def test_an_optional_prospect_email_hash_is_checked_when_present() -> None:
    err = rejection(with_(CONVERSION, prospect_email_sha256="0123"))
    assert (err.reason, err.field) == ("BAD_EMAIL_HASH", "prospect_email_sha256")
    assert check_values(with_(CONVERSION, prospect_email_sha256="0f" * 32), NOW) is None


@pytest.mark.parametrize("field", ["email", "display_name", "locale"])
def test_another_string_over_4096_characters_is_rejected(field: str) -> None:
    assert check_values(with_(PROFILE, **{field: "x" * 4096}), NOW) is None
    err = rejection(with_(PROFILE, **{field: "x" * 4097}))
    assert (err.reason, err.field) == ("STRING_TOO_LONG", field)


def test_a_program_document_may_be_longer_than_4096_characters() -> None:
    config = ProgramConfig(
        program_id="acme-b2b",
        version=1,
        document="x" * 100_000,
        document_sha256="0" * 64,
        published_at=WHEN,
    )
    assert check_values(config, NOW) is None


def test_every_timestamp_field_is_checked_not_only_occurred_at() -> None:
    command = RewardCommand(
        command_id="c-1",
        payout_id="pay-1",
        action=RewardAction.APPROVE,
        requested_by="ops",
        requested_at=datetime(1970, 1, 1, tzinfo=UTC),
    )
    err = rejection(command)
    assert (err.reason, err.field) == ("TIME_OUT_OF_RANGE", "requested_at")


# Each impossible value the contract's "Bad input" bullet names, and the code it gets.
CONTRACT_CASES = {
    "a negative amount": (with_(DEAL, amount_minor=-1), "NEGATIVE_AMOUNT"),
    "an amount above the ceiling": (with_(DEAL, amount_minor=10**10 + 1), "AMOUNT_ABOVE_CEILING"),
    "an empty id": (with_(DEAL, deal_id=""), "EMPTY_ID"),
    "an id over 256 characters": (with_(DEAL, deal_id="d" * 257), "ID_TOO_LONG"),
    "another string over 4,096 characters": (
        with_(PROFILE, display_name="x" * 4097),
        "STRING_TOO_LONG",
    ),
    "an email hash that is not 64 lowercase hex": (
        with_(PROFILE, email_sha256="A" * 64),
        "BAD_EMAIL_HASH",
    ),
    "a timestamp before 2000": (
        with_(DEAL, occurred_at=datetime(1999, 1, 1, tzinfo=UTC)),
        "TIME_OUT_OF_RANGE",
    ),
    "a timestamp more than one day in the future": (
        with_(DEAL, occurred_at=NOW + timedelta(days=2)),
        "TIME_OUT_OF_RANGE",
    ),
}
DOCS = Path(__file__).resolve().parents[2] / "docs" / "bad-input.md"


@pytest.mark.parametrize("case", sorted(CONTRACT_CASES))
def test_each_impossible_value_of_the_contract_gets_its_documented_code(case: str) -> None:
    record, reason = CONTRACT_CASES[case]
    assert rejection(record).reason == reason
    assert f"`{reason}`" in DOCS.read_text(encoding="utf-8")


def test_the_impossible_values_get_distinct_codes_but_for_the_one_timestamp_rule() -> None:
    codes = [reason for _, reason in CONTRACT_CASES.values()]
    assert len(set(codes)) == len(codes) - 1  # before 2000 and in the future: one rule, one code
