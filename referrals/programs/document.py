"""The program document marketing writes: reading, validation, canonical JSON.

`validate` reports every problem at once, each with its path (`rewards.tiers[2].percent`).
Amounts are quoted decimal strings in major units ("50.00"); an unquoted 50.00 is a float in
YAML and is refused. A key left out, or given as null, takes its default (in brackets):

    program_id        required; 1-256 of A-Z a-z 0-9 . _ -
    currency          required; active ISO 4217 code
    time_zone         IANA zone, for periods and the tax year [UTC]
    attribution       window_days 1-3650 [90]; policy FIRST_TOUCH or LAST_TOUCH [FIRST_TOUCH]
    rewards           period CALENDAR_YEAR, ROLLING_365_DAYS or LIFETIME [CALENDAR_YEAR];
                      rule_id, part of every payout id [referral-reward];
                      tiers (required): {from_referral, amount or percent, reward_type}, the
                      first from 1, strictly increasing; period_cap, approval_threshold,
                      tax_threshold: amounts [none]; hold_days 0-365 [0];
                      friend_reward: {amount, reward_type}, the referred prospect's reward
                      on WON [none]; clawback: true claws back a reward issued for a deal
                      later REVERSED [false]
    status            ACTIVE, PAUSED (new rewards held) or ENDED (no new referrals) [ACTIVE]
    fraud             max_wins_per_day: an advocate's WONs beyond this many in a day (program
                      time zone) are held for review, 1-1000000 [none]
    notifications
      channels              EMAIL and/or WEBHOOK [EMAIL]
      webhook               required with WEBHOOK: url (http or https); secret_env, the NAME
                            of the environment variable holding the HMAC-SHA256 secret (never
                            the secret), starting with WEBHOOK_SECRET_ [WEBHOOK_SECRET_REFERRALS;
                            the old REFERRALS_WEBHOOK_SECRET reads as it]; timeout_s, over 0
                            to 60 [10]; max_attempts 1-20 [5]
      from_address          sender of emails [referrals@example.com]
      default_locale        for advocates whose profile has no locale [en-US]
      staleness_days        a message whose trigger is older is not sent, 1-365 [7]
      rate_limit            max_per_day: messages per advocate per day, 1-100 [3]
      nurture_days          "refer again" messages this many days after a WON, increasing [3, 14]
      unsubscribe_base_url  http(s) URL of the unsubscribe page [none: the service's setting]
      templates             KIND -> locale -> {subject, text, html}, KIND one of LEAD, WON,
                            REWARDED, PAID, PAYOUT_FAILED, NURTURE. Built-in en-US templates
                            cover every kind; one given here replaces the built-in one for its
                            kind and locale. subject and text are required, html optional (none:
                            plain text only); text and html must use {{ unsubscribe_url }}. The
                            variables are those of `referrals.programs.templating.SAMPLE_CONTEXT`.

The rules themselves are the pydantic models of `referrals.programs.schema`, from which
`schemas/program.schema.json` is generated for editors.
"""

from __future__ import annotations

import json

import yaml
from pydantic import ValidationError

from referrals.platform.errors import ConfigError
from referrals.programs import schema
from referrals.programs.model import ProgramDocument, to_document
from referrals.programs.reader import DuplicateKey, TooDeep, load, load_json
from referrals.programs.schema.checks import Location, found_in

Problems = list[tuple[str, str]]  # (path, message)


class ProgramInvalid(ConfigError):
    """A program document with problems: `.problems` lists (path, message), one per line."""

    reason = "INVALID_PROGRAM"

    def __init__(self, problems: Problems) -> None:
        super().__init__("\n".join(f"{path}: {message}" for path, message in problems))
        self.problems = problems


def parse_document(
    text: str, source: str = "<document>", *, json_only: bool = False
) -> dict[object, object]:
    """The data of a YAML or JSON document (JSON only with `json_only`); unreadable text is a
    ProgramInvalid naming where."""
    try:
        data = load_json(text) if json_only else load(text)
    except TooDeep as err:
        raise ProgramInvalid([(source, str(err))]) from err
    except RecursionError as err:
        raise ProgramInvalid([(source, "nests too deeply")]) from err
    except json.JSONDecodeError as err:
        where = f"{source}:{err.lineno}:{err.colno}"
        raise ProgramInvalid([(where, f"is not valid JSON: {err.msg}")]) from err
    except DuplicateKey as err:
        raise ProgramInvalid([(source, str(err))]) from err
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark
        where = f"{source}:{mark.line + 1}:{mark.column + 1}" if mark else source
        raise ProgramInvalid([(where, f"is not valid YAML: {err.problem}")]) from err
    except yaml.YAMLError as err:
        raise ProgramInvalid([(source, f"is not valid YAML: {err}")]) from err
    if not isinstance(data, dict):
        raise ProgramInvalid([(source, "must be a mapping of keys (program_id:, currency:, ...)")])
    return data


def validate(data: object) -> ProgramDocument:
    """The typed document, or ProgramInvalid listing every problem found in `data`."""
    try:
        return schema.read(data)
    except ValidationError as err:
        problems = [(_path(where), message) for where, message in found_in(err)]
        raise ProgramInvalid(problems) from err


def _path(where: Location) -> str:
    """('rewards', 'tiers', 2, 'percent') -> 'rewards.tiers[2].percent'."""
    path = ""
    for part in where:
        path += f"[{part}]" if isinstance(part, int) else f".{part}" if path else str(part)
    return path or "<document>"


def canonical_json(doc: ProgramDocument) -> str:
    """Deterministic JSON of the complete document: what `referrals program put` publishes."""
    return json.dumps(to_document(doc), sort_keys=True, ensure_ascii=False, separators=(",", ":"))


def from_canonical(text: str) -> ProgramDocument:
    """The document back from `canonical_json` (validated again: it came over the wire). JSON
    only: what came over the wire is not a person's YAML, and no alias may expand in it."""
    return validate(parse_document(text, "<canonical>", json_only=True))
