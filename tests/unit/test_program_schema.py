"""The program document's JSON Schema for editors: generated from the models that validate, and
in agreement with the example programs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from jsonschema import Draft202012Validator

from referrals.programs.document import canonical_json, parse_document, validate
from referrals.programs.schema import REGENERATE, SCHEMA_PATH, json_schema_text

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = sorted((REPO / "deploy" / "programs").glob("*.yaml"))


def committed() -> dict[str, Any]:
    schema: dict[str, Any] = json.loads((REPO / SCHEMA_PATH).read_text(encoding="utf-8"))
    return schema


def test_the_committed_schema_is_the_one_the_models_generate() -> None:
    on_disk = (REPO / SCHEMA_PATH).read_text(encoding="utf-8")
    assert on_disk == json_schema_text(), f"{SCHEMA_PATH} is stale; regenerate it: {REGENERATE}"


def test_the_committed_schema_is_a_valid_json_schema() -> None:
    Draft202012Validator.check_schema(committed())


def test_there_are_example_programs() -> None:
    assert [path.name for path in EXAMPLES] == [
        "acme-b2b.yaml",
        "brightcell-b2c.yaml",
        "demo-compressed.yaml",
    ]


@pytest.mark.parametrize("path", EXAMPLES, ids=[path.name for path in EXAMPLES])
def test_every_example_program_and_its_canonical_json_satisfy_the_committed_schema(
    path: Path,
) -> None:
    validator = Draft202012Validator(committed())
    text = path.read_text(encoding="utf-8")
    assert [error.message for error in validator.iter_errors(yaml.safe_load(text))] == []
    published = json.loads(canonical_json(validate(parse_document(text, str(path)))))
    assert [error.message for error in validator.iter_errors(published)] == []


@pytest.mark.parametrize("path", EXAMPLES, ids=[path.name for path in EXAMPLES])
def test_every_example_program_names_the_schema_for_editors(path: Path) -> None:
    first = path.read_text(encoding="utf-8").splitlines()[0]
    assert first == "# yaml-language-server: $schema=../../schemas/program.schema.json"
    assert (path.parent / "../../schemas/program.schema.json").resolve() == REPO / SCHEMA_PATH


def test_the_schema_refuses_unknown_keys_where_validation_does() -> None:
    schema = committed()
    sections = [schema, *schema["$defs"].values()]
    assert all(section["additionalProperties"] is False for section in sections)
    validator = Draft202012Validator(schema)
    data = {"program_id": "p", "currency": "USD", "rewards": {"tiers": [], "hold_day": 3}}
    messages = [error.message for error in validator.iter_errors(data)]
    assert any("'hold_day' was unexpected" in message for message in messages)


def test_the_schema_lists_enums_and_gives_descriptions_and_defaults() -> None:
    defs = committed()["$defs"]
    attribution = defs["Attribution"]["properties"]
    assert attribution["policy"]["enum"] == ["FIRST_TOUCH", "LAST_TOUCH"]
    assert attribution["policy"]["default"] == "FIRST_TOUCH"
    assert attribution["window_days"] == attribution["window_days"] | {
        "default": 90,
        "minimum": 1,
        "maximum": 3650,
    }
    status = committed()["properties"]["status"]
    assert (status["enum"], status["default"]) == (["ACTIVE", "PAUSED", "ENDED"], "ACTIVE")
    assert defs["Rewards"]["properties"]["clawback"] == defs["Rewards"]["properties"][
        "clawback"
    ] | {"type": "boolean", "default": False}
    assert defs["Fraud"]["properties"]["max_wins_per_day"]["default"] is None
    assert defs["FriendReward"]["required"] == ["amount", "reward_type"]
    tier = defs["Tier"]["properties"]
    assert tier["reward_type"]["enum"] == ["GIFT_CARD", "CHECK", "BILL_CREDIT", "MERCHANDISE"]
    for section in defs.values():
        for name, field in section["properties"].items():
            assert field.get("description") or "$ref" in field, name
    assert set(defs["Templates"]["properties"]) == {
        "LEAD",
        "WON",
        "REWARDED",
        "PAID",
        "PAYOUT_FAILED",
        "REWARD_DENIED",
        "REWARD_CLAWED_BACK",
        "NURTURE",
    }
    notifications = defs["Notifications"]["properties"]
    assert notifications["kinds"]["default"] == notifications["kinds"]["items"]["enum"]
    assert defs["SalesWebhook"]["required"] == ["url", "secret_env"]
    assert defs["SalesWebhook"]["properties"]["secret_env"]["pattern"] == (
        "^WEBHOOK_SECRET_[A-Z0-9_]+$"
    )
