"""The program document marketing writes, as pydantic models: its rules and its JSON Schema.

Each model is one mapping of the document (`Program` the whole, `rewards.py` and
`notifications.py` their sections). Validation reports every problem at once, each with its
location and in the document's words (`checks.py`); a key left out, or given as null, takes its
default. `build()` turns a validated document into the immutable dataclasses of
`referrals.programs.model`, which the services' pure cores use without importing pydantic.
Callers use `referrals.programs.document` (`validate`, `canonical_json`, `from_canonical`).

`schemas/program.schema.json`, the JSON Schema editors use, is generated from these models:

    python -m referrals.programs.schema > schemas/program.schema.json
"""

from __future__ import annotations

import difflib
import json
import zoneinfo
from collections.abc import Mapping
from typing import Annotated, Any

from pydantic import ConfigDict

from referrals.platform.money import CURRENCIES
from referrals.programs import model
from referrals.programs.model import AttributionPolicy, ProgramStatus
from referrals.programs.schema.checks import Rule, Section, choice, problem, text, whole
from referrals.programs.schema.notifications import Notifications
from referrals.programs.schema.rewards import ID, ID_RULE, Rewards

SCHEMA_PATH = "schemas/program.schema.json"
REGENERATE = f"python -m referrals.programs.schema > {SCHEMA_PATH}"


class Attribution(Section):
    """Which advocate a won deal is credited to."""

    window_days: Annotated[int, whole(1, 3650)] = 90
    """A referral link counts if the prospect used it within this many days of its sharing."""
    policy: Annotated[AttributionPolicy, choice(AttributionPolicy)] = AttributionPolicy.FIRST_TOUCH
    """Two advocates, one prospect: FIRST_TOUCH credits the first to share, LAST_TOUCH the last."""

    def build(self) -> model.Attribution:
        return model.Attribution(self.window_days, self.policy)


class Fraud(Section):
    """Checks against advocates gaming the program."""

    max_wins_per_day: Annotated[int, whole(1, 1_000_000)] | None = None
    """An advocate's won deals beyond this many in one day (program time zone) are held for
    review (none: no limit)."""

    def build(self) -> model.Fraud:
        return model.Fraud(self.max_wins_per_day)


def _currency(value: object) -> str:
    if isinstance(value, str) and value in CURRENCIES:
        return value
    raise problem(f"{value!r} is not an active ISO 4217 currency code, like USD")


def _time_zone(value: object) -> str:
    zones = zoneinfo.available_timezones()
    if isinstance(value, str) and value in zones:
        return value
    close = difflib.get_close_matches(str(value), zones, n=1)
    hint = f"did you mean '{close[0]}'?" if close else "like Europe/Berlin"
    raise problem(f"{value!r} is not an IANA time zone ({hint})")


class Program(Section):
    """A referral program: who gets the credit, what they earn, what they are told."""

    model_config = ConfigDict(title="Referral program document")
    # A document without rewards is missing its tiers: say so where they belong.
    _when_left_out = {"rewards": {}}

    program_id: Annotated[str, text(ID, ID_RULE)]
    """The program's id: 1 to 256 letters, digits, '.', '_' or '-'."""
    currency: Annotated[str, Rule(_currency, {"enum": sorted(CURRENCIES)})]
    """The active ISO 4217 code all amounts of the document are in."""
    time_zone: Annotated[str, Rule(_time_zone, {"type": "string", "examples": ["UTC"]})] = "UTC"
    """The IANA time zone in which periods and the tax year begin, like America/New_York."""
    attribution: Attribution = Attribution()
    rewards: Rewards
    notifications: Notifications = Notifications()
    status: Annotated[ProgramStatus, choice(ProgramStatus)] = ProgramStatus.ACTIVE
    """ACTIVE; PAUSED: referrals still count, new rewards wait until it is active again; ENDED:
    no new referrals, rewards already earned are still paid."""
    fraud: Fraud = Fraud()

    def build(self) -> model.ProgramDocument:
        return model.ProgramDocument(
            self.program_id,
            self.currency,
            self.rewards.build(self.currency),
            self.time_zone,
            self.attribution.build(),
            self.notifications.build(),
            self.status,
            self.fraud.build(),
        )


def read(data: object) -> model.ProgramDocument:
    """The typed document; pydantic's ValidationError lists every problem of `data`."""
    # Amounts are checked against the currency, a key outside their section (when it is valid).
    currency = data.get("currency") if isinstance(data, Mapping) else None
    valid = isinstance(currency, str) and currency in CURRENCIES
    return Program.model_validate(data, context={"currency": currency if valid else None}).build()


def json_schema() -> dict[str, Any]:
    """The JSON Schema of the program document, for editors (descriptions, defaults, enums)."""
    return {"$schema": "https://json-schema.org/draft/2020-12/schema"} | Program.model_json_schema()


def json_schema_text() -> str:
    """The text `schemas/program.schema.json` must have."""
    return json.dumps(json_schema(), indent=2, ensure_ascii=False) + "\n"
