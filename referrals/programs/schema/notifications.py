"""The `notifications` section: channels, the webhook, limits and marketing's own templates."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Annotated

from pydantic import ConfigDict, Field, ValidatorFunctionWrapHandler, WrapValidator

from referrals.programs import model, templating
from referrals.programs.model import (
    ADVOCATE_CHANNELS,
    DEFAULT_TEMPLATES,
    MessageKind,
    NotificationChannel,
)
from referrals.programs.schema.checks import (
    URL,
    Found,
    Rule,
    Section,
    collect,
    number,
    problem,
    report,
    text,
    whole,
)

LOCALE = re.compile(r"[a-z]{2,3}(-[A-Za-z0-9]{2,8})*")
_SECRET_ENV = re.compile(model.SECRET_ENV_PREFIX + r"[A-Z0-9_]+")
_SECRET_NAME = text(
    _SECRET_ENV,
    "the NAME of an environment variable starting with WEBHOOK_SECRET_, like WEBHOOK_SECRET_CRM",
)


def _secret_env(value: object) -> str:
    """A name with the prefix; the old default (published documents carry it) reads as the new
    one, so they keep working once the variable is renamed (the README says how)."""
    if value == model.LEGACY_SECRET_ENV:
        return model.DEFAULT_SECRET_ENV
    checked: str = _SECRET_NAME.check(value)
    return checked


SECRET_ENV = Rule(_secret_env, _SECRET_NAME.schema)
_EMAIL = re.compile(r"[^@\s<>]+@[^@\s<>]+\.[^@\s<>]+")


class Webhook(Section):
    """Where the WEBHOOK channel posts each message, signed with HMAC-SHA256."""

    url: Annotated[str, URL]
    """The http or https endpoint, e.g. your CRM's."""
    secret_env: Annotated[str, SECRET_ENV] = model.DEFAULT_SECRET_ENV
    """The NAME of the environment variable holding the signing secret (never the secret),
    starting with WEBHOOK_SECRET_."""
    timeout_s: Annotated[float, number(0, 60)] = 10.0
    """Seconds to wait for the endpoint's answer."""
    max_attempts: Annotated[int, whole(1, 20)] = 5
    """Attempts before the message counts as failed."""

    def build(self) -> model.Webhook:
        return model.Webhook(self.url, self.secret_env, self.timeout_s, self.max_attempts)


class SalesWebhook(Webhook):
    """Where each new lead is POSTed (type "lead.created"), signed like the webhook, so that the
    advocate's account owner can follow it up; sent whatever the advocate's opt-out."""

    secret_env: Annotated[str, SECRET_ENV]
    """The NAME of the environment variable holding the signing secret (never the secret)."""


class RateLimit(Section):
    """How many messages an advocate gets at most."""

    max_per_day: Annotated[int, whole(1, 100)] = 3
    """Messages per advocate per day."""


def _part(name: str) -> Rule:
    """A template part compiles and renders with the sample context; bodies link to unsubscribe."""

    def check(source: object) -> str:
        if not isinstance(source, str):
            raise problem("must be text")
        try:
            rendered = templating.check(source, html=name == "html")
            if name != "subject" and "unsubscribe_url" not in templating.variables(source):
                raise templating.TemplateProblem("must include the link {{ unsubscribe_url }}")
            if name == "subject" and (not rendered.strip() or "\n" in rendered.strip()):
                raise templating.TemplateProblem("must render to one non-empty line")
        except templating.TemplateProblem as err:
            raise problem(str(err)) from err
        return source

    return Rule(check, {"type": "string"})


class MessageTemplate(Section):
    """One message in one locale: Jinja2 templates using the variables of
    `referrals.programs.templating.SAMPLE_CONTEXT`."""

    subject: Annotated[str, _part("subject")]
    """One line."""
    text: Annotated[str, _part("text")]
    """The plain-text body; must include the link {{ unsubscribe_url }}."""
    html: Annotated[str, _part("html")] | None = None
    """The HTML body (none: plain text only); must include the link {{ unsubscribe_url }}."""

    def build(self) -> model.MessageTemplate:
        return model.MessageTemplate(self.subject, self.text, self.html)


def _locales(value: object, handler: ValidatorFunctionWrapHandler) -> object:
    """Locales as keys; a locale given as null counts as left out."""
    if not isinstance(value, Mapping):
        report([((), "must be a mapping of keys")])
    keys = [str(key) for key in value]
    good = [key for key in value if isinstance(key, str) and LOCALE.fullmatch(key)]
    found: list[Found] = [
        ((str(key),), "is not a locale like en-US or de-DE") for key in value if key not in good
    ]
    given = {key: value[key] for key in good if value[key] is not None}
    return collect(handler, given, found, lambda item: keys.index(str(item[0][0])))


Locales = Annotated[
    dict[str, MessageTemplate],
    WrapValidator(_locales),
    Field(json_schema_extra={"propertyNames": {"pattern": f"^{LOCALE.pattern}$"}}),
]


class Templates(Section):
    """Message templates by kind, then by locale. Built-in en-US templates cover every kind;
    one given here replaces the built-in one for its kind and locale."""

    LEAD: Locales | None = None
    """To the advocate when a prospect they referred signed up."""
    WON: Locales | None = None
    """To the advocate when their referral became a customer."""
    REWARDED: Locales | None = None
    """To the advocate when they earned a reward."""
    PAID: Locales | None = None
    """To the advocate when their reward was sent."""
    PAYOUT_FAILED: Locales | None = None
    """To the advocate when sending their reward failed."""
    REWARD_DENIED: Locales | None = None
    """To the advocate when an operator denied the reward of their referral."""
    REWARD_CLAWED_BACK: Locales | None = None
    """To the advocate when a refunded deal's reward was clawed back."""
    NURTURE: Locales | None = None
    """A "refer again" reminder, nurture_days after a won deal."""

    def build(self) -> model.Templates:
        merged = {kind: dict(DEFAULT_TEMPLATES[kind]) for kind in MessageKind}
        for kind in MessageKind:
            locales: dict[str, MessageTemplate] = getattr(self, kind) or {}
            for locale, template in locales.items():
                merged[kind][locale] = template.build()
        return model.freeze_templates(merged)


def _channels(value: object) -> tuple[NotificationChannel, ...]:
    if not isinstance(value, list):
        raise problem("must be a list such as [EMAIL, WEBHOOK] (or [] for none)")
    channels: list[NotificationChannel] = []
    found: list[Found] = []
    for index, name in enumerate(value):
        if name in ADVOCATE_CHANNELS and NotificationChannel(name) not in channels:
            channels.append(NotificationChannel(name))
        else:
            found.append(((index,), "must be EMAIL or WEBHOOK, each at most once"))
    if found:
        report(found)
    return tuple(channels)


def _kinds(value: object) -> tuple[MessageKind, ...]:
    if not isinstance(value, list):
        raise problem("must be a list of message kinds such as [LEAD, WON] (or [] for none)")
    found: list[Found] = [
        ((index,), f"must be one of {', '.join(MessageKind)}, each at most once")
        for index, name in enumerate(value)
        if not isinstance(name, str) or name not in MessageKind.__members__ or name in value[:index]
    ]
    if found:
        report(found)
    return tuple(kind for kind in MessageKind if kind in value)  # in the usual order


def _nurture_days(days: object) -> tuple[int, ...]:
    valid = isinstance(days, list) and all(type(day) is int and 0 < day <= 365 for day in days)
    if valid and isinstance(days, list) and days == sorted(set(days)):
        return tuple(days)
    raise problem("must be a list of increasing whole numbers from 1 to 365")


class Notifications(Section):
    """The messages advocates get, and how."""

    model_config = ConfigDict(
        json_schema_extra={
            "if": {
                "properties": {"channels": {"contains": {"const": "WEBHOOK"}}},
                "required": ["channels"],
            },
            "then": {"required": ["webhook"]},
        }
    )
    channels: Annotated[
        tuple[NotificationChannel, ...],
        Rule(
            _channels,
            {"type": "array", "items": {"enum": ["EMAIL", "WEBHOOK"]}, "uniqueItems": True},
        ),
    ] = (NotificationChannel.EMAIL,)
    """EMAIL and/or WEBHOOK, each at most once ([] for none)."""
    webhook: Webhook | None = None
    """Required when channels include WEBHOOK."""
    from_address: Annotated[str, text(_EMAIL, "an email address")] = "referrals@example.com"
    """The sender of emails."""
    default_locale: Annotated[str, text(LOCALE, "a locale like en-US or de-DE")] = "en-US"
    """For advocates whose profile has no locale."""
    staleness_days: Annotated[int, whole(1, 365)] = 7
    """A message whose trigger is older than this many days is not sent (e.g. on a replay)."""
    rate_limit: RateLimit = RateLimit()
    nurture_days: Annotated[
        tuple[int, ...],
        Rule(
            _nurture_days,
            {
                "type": "array",
                "items": {"type": "integer", "minimum": 1, "maximum": 365},
                "uniqueItems": True,
            },
        ),
    ] = (3, 14)
    """Days after a won deal to send "refer again" messages, increasing."""
    unsubscribe_base_url: Annotated[str, URL] | None = None
    """The unsubscribe page (none: the notifications service's own page)."""
    templates: Templates = Templates()
    sales_webhook: SalesWebhook | None = None
    """Where each new lead is POSTed for sales (none: leads are not sent)."""
    kinds: Annotated[
        tuple[MessageKind, ...],
        Rule(
            _kinds,
            {"type": "array", "items": {"enum": [*MessageKind.__members__]}, "uniqueItems": True},
        ),
    ] = tuple(MessageKind)
    """The messages advocates get, by kind (default: all); NURTURE also needs nurture_days."""

    @classmethod
    def _across(cls, given: Mapping[str, object]) -> list[Found]:
        channels = given.get("channels", ["EMAIL"])
        if isinstance(channels, list) and "WEBHOOK" in channels and "webhook" not in given:
            return [(("webhook",), "is required when channels include WEBHOOK")]
        return []

    def build(self) -> model.Notifications:
        return model.Notifications(
            self.channels,
            None if self.webhook is None else self.webhook.build(),
            self.from_address,
            self.default_locale,
            self.staleness_days,
            model.RateLimit(self.rate_limit.max_per_day),
            self.nurture_days,
            self.unsubscribe_base_url,
            self.templates.build(),
            None if self.sales_webhook is None else self.sales_webhook.build(),
            self.kinds,
        )
