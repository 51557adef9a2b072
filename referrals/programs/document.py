"""The program document marketing writes: parsing, validation, canonical JSON.

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
                      tax_threshold: amounts [none]; hold_days 0-365 [0]
    notifications
      channels              EMAIL and/or WEBHOOK [EMAIL]
      webhook               required with WEBHOOK: url (http or https); secret_env, the NAME
                            of the environment variable holding the HMAC-SHA256 secret (never
                            the secret) [REFERRALS_WEBHOOK_SECRET]; timeout_s, over 0 to 60 [10];
                            max_attempts 1-20 [5]
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
"""

from __future__ import annotations

import difflib
import json
import re
import zoneinfo

import yaml

from referrals.contract.records import RewardType
from referrals.platform.errors import ConfigError
from referrals.platform.money import CURRENCIES
from referrals.programs import templating
from referrals.programs.model import (
    DEFAULT_TEMPLATES,
    Attribution,
    AttributionPolicy,
    MessageKind,
    MessageTemplate,
    NotificationChannel,
    Notifications,
    ProgramDocument,
    RateLimit,
    RewardPeriod,
    Rewards,
    Templates,
    Tier,
    Webhook,
    freeze_templates,
    to_document,
)
from referrals.programs.reader import DuplicateKey, Problems, Section, load

_ID = re.compile(r"[A-Za-z0-9._-]{1,256}")
_ID_RULE = "1 to 256 letters, digits, '.', '_' or '-'"
_LOCALE = re.compile(r"[a-z]{2,3}(-[A-Za-z0-9]{2,8})*")
_ENV_NAME = re.compile(r"[A-Z_][A-Z0-9_]*")
_EMAIL = re.compile(r"[^@\s<>]+@[^@\s<>]+\.[^@\s<>]+")
_ROOT = ("program_id", "currency", "time_zone", "attribution", "rewards", "notifications")
_REWARDS = (
    *("period", "rule_id", "tiers", "period_cap", "approval_threshold", "hold_days"),
    "tax_threshold",
)
_TIER = ("from_referral", "amount", "percent", "reward_type")
_NOTIFICATIONS = (
    *("channels", "webhook", "from_address", "default_locale", "staleness_days", "rate_limit"),
    *("nurture_days", "unsubscribe_base_url", "templates"),
)
_WEBHOOK = ("url", "secret_env", "timeout_s", "max_attempts")


class ProgramInvalid(ConfigError):
    """A program document with problems: `.problems` lists (path, message), one per line."""

    reason = "INVALID_PROGRAM"

    def __init__(self, problems: Problems) -> None:
        super().__init__("\n".join(f"{path}: {message}" for path, message in problems))
        self.problems = problems


def parse_document(text: str, source: str = "<document>") -> dict[object, object]:
    """The data of a YAML or JSON document; unreadable text is a ProgramInvalid naming where."""
    try:
        data = load(text)
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
    problems: Problems = []
    root = Section(problems, data, "", _ROOT, required=("program_id", "currency"))
    program_id = root.text("program_id", "", _ID, _ID_RULE)
    currency = _currency(root)
    time_zone = _time_zone(root)
    attribution = root.section("attribution", ("window_days", "policy"))
    window_days = attribution.integer("window_days", 90, 1, 3650)
    policy = attribution.choice("policy", AttributionPolicy, AttributionPolicy.FIRST_TOUCH)
    rewards = _rewards(root.section("rewards", _REWARDS, required=("tiers",)), currency)
    notifications = _notifications(root.section("notifications", _NOTIFICATIONS))
    if problems or currency is None:
        raise ProgramInvalid(problems)
    return ProgramDocument(
        program_id,
        currency,
        rewards,
        time_zone,
        Attribution(window_days, policy),
        notifications,
    )


def _currency(root: Section) -> str | None:
    value = root.values.get("currency")
    if isinstance(value, str) and value in CURRENCIES:
        return value
    if value is not None:
        root.problem("currency", f"{value!r} is not an active ISO 4217 currency code, like USD")
    return None


def _time_zone(root: Section) -> str:
    value = root.values.get("time_zone", "UTC")
    zones = zoneinfo.available_timezones()
    if isinstance(value, str) and value in zones:
        return value
    close = difflib.get_close_matches(str(value), zones, n=1)
    hint = f"did you mean '{close[0]}'?" if close else "like Europe/Berlin"
    root.problem("time_zone", f"{value!r} is not an IANA time zone ({hint})")
    return "UTC"


def _rewards(section: Section, currency: str | None) -> Rewards:
    return Rewards(
        _tiers(section, currency),
        section.choice("period", RewardPeriod, RewardPeriod.CALENDAR_YEAR),
        section.text("rule_id", "referral-reward", _ID, _ID_RULE),
        section.money("period_cap", currency),
        section.money("approval_threshold", currency),
        section.integer("hold_days", 0, 0, 365),
        section.money("tax_threshold", currency),
    )


def _tiers(rewards: Section, currency: str | None) -> tuple[Tier, ...]:
    """Tiers start at the first referral and strictly increase, so each n has exactly one."""
    raw = rewards.values.get("tiers")
    if raw is None:
        return ()  # reported as required
    if not isinstance(raw, list) or not raw:
        rewards.problem("tiers", "must be a list of at least one tier")
        return ()
    tiers, previous = [], 0
    for index in range(len(raw)):
        tier = rewards.item("tiers", index, _TIER, required=("from_referral", "reward_type"))
        if not tier.is_mapping:
            continue
        start = tier.integer("from_referral", 0, 1, 1_000_000)
        if index == 0 and start > 1:
            tier.problem("from_referral", f"the first tier must start at 1, not {start}")
        elif start and start == previous:
            tier.problem("from_referral", f"another tier already starts at {start}")
        elif start and start < previous:
            tier.problem("from_referral", f"tiers must be in order: {start} after {previous}")
        previous = start or previous
        amount, percent = tier.money("amount", currency), tier.percent("percent")
        if ("amount" in tier.values) == ("percent" in tier.values):
            tier.problem("", "needs either an amount or a percent (not both, not neither)")
        reward_type = tier.choice("reward_type", RewardType, RewardType.GIFT_CARD)
        if start and (amount is None) != (percent is None):
            tiers.append(Tier(start, reward_type, amount, percent))
    return tuple(tiers)


def _notifications(section: Section) -> Notifications:
    channels = _channels(section)
    webhook = None
    if "webhook" in section.values:
        webhook = _webhook(section.section("webhook", _WEBHOOK, required=("url",)))
    elif NotificationChannel.WEBHOOK in channels:
        section.problem("webhook", "is required when channels include WEBHOOK")
    rate_limit = section.section("rate_limit", ("max_per_day",))
    return Notifications(
        channels,
        webhook,
        section.text("from_address", "referrals@example.com", _EMAIL, "an email address"),
        section.text("default_locale", "en-US", _LOCALE, "a locale like en-US or de-DE"),
        section.integer("staleness_days", 7, 1, 365),
        RateLimit(rate_limit.integer("max_per_day", 3, 1, 100)),
        _nurture_days(section),
        section.url("unsubscribe_base_url"),
        _templates(section.section("templates", MessageKind.__members__)),
    )


def _channels(section: Section) -> tuple[NotificationChannel, ...]:
    raw = section.values.get("channels", ["EMAIL"])
    if not isinstance(raw, list):
        section.problem("channels", "must be a list such as [EMAIL, WEBHOOK] (or [] for none)")
        return (NotificationChannel.EMAIL,)
    channels: list[NotificationChannel] = []
    for index, name in enumerate(raw):
        if name in NotificationChannel.__members__ and NotificationChannel(name) not in channels:
            channels.append(NotificationChannel(name))
            continue
        section.problem(f"channels[{index}]", "must be EMAIL or WEBHOOK, each at most once")
    return tuple(channels)


def _nurture_days(section: Section) -> tuple[int, ...]:
    days = section.values.get("nurture_days", [3, 14])
    valid = isinstance(days, list) and all(type(day) is int and 0 < day <= 365 for day in days)
    if valid and isinstance(days, list) and days == sorted(set(days)):
        return tuple(days)
    section.problem("nurture_days", "must be a list of increasing whole numbers from 1 to 365")
    return (3, 14)


def _webhook(section: Section) -> Webhook | None:
    timeout_s = section.number("timeout_s", 10.0, 0, 60)
    secret_env = section.text(
        "secret_env",
        "REFERRALS_WEBHOOK_SECRET",
        _ENV_NAME,
        "the NAME of an environment variable holding the secret, like ACME_WEBHOOK_SECRET",
    )
    max_attempts = section.integer("max_attempts", 5, 1, 20)
    url = section.url("url")
    return None if url is None else Webhook(url, secret_env, timeout_s, max_attempts)


def _templates(section: Section) -> Templates:
    """The built-in templates, with the document's replacing them per kind and locale."""
    merged = {kind: dict(DEFAULT_TEMPLATES[kind]) for kind in MessageKind}
    for kind in section.values:
        locales = section.section(kind, None)
        for locale in locales.values:
            if not _LOCALE.fullmatch(locale):
                locales.problem(locale, "is not a locale like en-US or de-DE")
                continue
            parts = locales.section(locale, ("subject", "text", "html"), ("subject", "text"))
            template = _template(parts)
            if template is not None:
                merged[MessageKind(kind)][locale] = template
    return freeze_templates(merged)


def _template(section: Section) -> MessageTemplate | None:
    """Each part compiles and renders with the sample context; bodies link to unsubscribe."""
    before = len(section.problems)
    for part, source in section.values.items():
        if not isinstance(source, str):
            section.problem(part, "must be text")
            continue
        try:
            rendered = templating.check(source, html=part == "html")
            if part != "subject" and "unsubscribe_url" not in templating.variables(source):
                raise templating.TemplateProblem("must include the link {{ unsubscribe_url }}")
            if part == "subject" and (not rendered.strip() or "\n" in rendered.strip()):
                raise templating.TemplateProblem("must render to one non-empty line")
        except templating.TemplateProblem as err:
            section.problem(part, str(err))
    if len(section.problems) > before:
        return None
    subject, text, html = (section.values.get(part) for part in ("subject", "text", "html"))
    return MessageTemplate(str(subject), str(text), None if html is None else str(html))


def canonical_json(doc: ProgramDocument) -> str:
    """Deterministic JSON of the complete document: what `referrals program put` publishes."""
    return json.dumps(to_document(doc), sort_keys=True, ensure_ascii=False, separators=(",", ":"))


def from_canonical(text: str) -> ProgramDocument:
    """The document back from `canonical_json` (validated again: it came over the wire)."""
    return validate(parse_document(text, "<canonical>"))
