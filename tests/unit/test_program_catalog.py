"""The catalogue every service keeps of program configs: newest valid version wins."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime

import pytest

from referrals.contract.records import ProgramConfig
from referrals.platform.errors import InvalidRecord
from referrals.programs.catalog import ProgramCatalog
from referrals.programs.document import canonical_json, parse_document, validate

DOC = canonical_json(
    validate(
        parse_document(
            "program_id: acme\ncurrency: USD\nrewards:\n  tiers:\n"
            '    - {from_referral: 1, amount: "50.00", reward_type: GIFT_CARD}\n'
        )
    )
)


def _config(version: int, document: str = DOC, program_id: str = "acme") -> ProgramConfig:
    digest = hashlib.sha256(document.encode()).hexdigest()
    return ProgramConfig(program_id, version, document, digest, datetime(2026, 1, 1, tzinfo=UTC))


def test_the_newest_version_is_in_force_whatever_the_arrival_order() -> None:
    catalog = ProgramCatalog()
    catalog.apply(_config(2))
    catalog.apply(_config(1))
    program = catalog.get("acme")
    assert program is not None and program.version == 2
    assert program.document.rewards.tiers[0].amount_minor == 5000


def test_a_document_that_fails_its_checksum_is_bad_input() -> None:
    config = _config(1)
    tampered = ProgramConfig(
        "acme", 1, config.document.replace("5", "6"), config.document_sha256, config.published_at
    )
    with pytest.raises(InvalidRecord, match="SHA-256") as err:
        ProgramCatalog().apply(tampered)
    assert err.value.reason == "BAD_PROGRAM_DOCUMENT"


def test_an_invalid_document_is_bad_input_and_the_version_in_force_stays() -> None:
    catalog = ProgramCatalog()
    catalog.apply(_config(1))
    with pytest.raises(InvalidRecord) as err:
        catalog.apply(_config(2, DOC.replace('"USD"', '"XXX1"')))
    assert "currency" in str(err.value)
    program = catalog.get("acme")
    assert program is not None and program.version == 1


def test_a_document_for_another_program_is_refused() -> None:
    with pytest.raises(InvalidRecord, match="names program 'acme'"):
        ProgramCatalog().apply(_config(1, program_id="other"))


def test_a_yaml_document_on_the_topic_is_bad_input_never_parsed_as_yaml() -> None:
    # A valid document, as YAML, with a matching SHA-256: only `program put`'s JSON is read.
    yaml_doc = (
        "program_id: acme\ncurrency: USD\nrewards:\n  tiers:\n"
        '    - {from_referral: 1, amount: "50.00", reward_type: GIFT_CARD}\n'
    )
    with pytest.raises(InvalidRecord, match="is not valid JSON") as err:
        ProgramCatalog().apply(_config(1, yaml_doc))
    assert err.value.reason == "BAD_PROGRAM_DOCUMENT"
