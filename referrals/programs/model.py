"""A validated program document as typed, immutable objects (see `referrals.programs.document`).

Amounts are integer minor units of the program's currency, percentages exact Decimals. Every
field has the default the contract promises, so `ProgramDocument` built from a document holding
only the required keys is complete. Build one through `document.validate`, which checks what
these classes assume (ordered tiers, known zones, templates that render).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from enum import StrEnum
from types import MappingProxyType

from referrals.contract.records import RewardType
from referrals.platform.money import to_major


class AttributionPolicy(StrEnum):
    FIRST_TOUCH = "FIRST_TOUCH"
    LAST_TOUCH = "LAST_TOUCH"


class RewardPeriod(StrEnum):
    CALENDAR_YEAR = "CALENDAR_YEAR"
    ROLLING_365_DAYS = "ROLLING_365_DAYS"
    LIFETIME = "LIFETIME"


class ProgramStatus(StrEnum):
    """ACTIVE runs normally; PAUSED still attributes but holds new rewards; ENDED takes no new
    referrals but pays what was earned."""

    ACTIVE = "ACTIVE"
    PAUSED = "PAUSED"
    ENDED = "ENDED"


class NotificationChannel(StrEnum):
    EMAIL = "EMAIL"
    WEBHOOK = "WEBHOOK"
    # Not one a program lists in `channels`: the delivery of a lead to `sales_webhook`.
    SALES_WEBHOOK = "SALES_WEBHOOK"


ADVOCATE_CHANNELS = (NotificationChannel.EMAIL, NotificationChannel.WEBHOOK)


class MessageKind(StrEnum):
    LEAD = "LEAD"
    WON = "WON"
    REWARDED = "REWARDED"
    PAID = "PAID"
    PAYOUT_FAILED = "PAYOUT_FAILED"
    REWARD_DENIED = "REWARD_DENIED"  # an operator denied the reward (REJECTED DENIED)
    REWARD_CLAWED_BACK = "REWARD_CLAWED_BACK"  # a refunded deal's reward (REVERSED CLAWED_BACK)
    NURTURE = "NURTURE"


@dataclass(frozen=True, slots=True)
class Attribution:
    window_days: int = 90
    policy: AttributionPolicy = AttributionPolicy.FIRST_TOUCH


@dataclass(frozen=True, slots=True)
class Tier:
    """From the `from_referral`-th successful referral in a period: a fixed amount or a percent."""

    from_referral: int
    reward_type: RewardType
    amount_minor: int | None = None
    percent: Decimal | None = None

    def __post_init__(self) -> None:
        if (self.amount_minor is None) == (self.percent is None):
            raise ValueError("a tier has exactly one of amount_minor and percent")


@dataclass(frozen=True, slots=True)
class FriendReward:
    """Two-sided rewards: what the referred prospect (the friend) gets when the referral wins."""

    amount_minor: int
    reward_type: RewardType


@dataclass(frozen=True, slots=True)
class Rewards:
    tiers: tuple[Tier, ...]
    period: RewardPeriod = RewardPeriod.CALENDAR_YEAR
    rule_id: str = "referral-reward"
    period_cap_minor: int | None = None
    approval_threshold_minor: int | None = None
    hold_days: int = 0
    tax_threshold_minor: int | None = None
    friend_reward: FriendReward | None = None
    clawback: bool = False  # a deal REVERSED after its reward was issued is clawed back

    def tier_for(self, n: int) -> Tier:
        """The tier earned by the n-th successful referral: the last one starting at or before n."""
        return [tier for tier in self.tiers if tier.from_referral <= max(n, 1)][-1]

    def next_tier(self, n: int) -> Tier | None:
        """The first tier that starts after the n-th referral (None on the last tier)."""
        return next((tier for tier in self.tiers if tier.from_referral > n), None)


@dataclass(frozen=True, slots=True)
class Fraud:
    max_wins_per_day: int | None = None  # an advocate's further WONs that day are reviewed


# A webhook's secret comes from an environment variable whose name starts with this, so that a
# program document cannot name another secret of the process (KAFKA_SASL_PASSWORD, ...).
SECRET_ENV_PREFIX = "WEBHOOK_SECRET_"
# The default before the prefix was required; documents naming it read as the new default.
LEGACY_SECRET_ENV = "REFERRALS_WEBHOOK_SECRET"
DEFAULT_SECRET_ENV = "WEBHOOK_SECRET_REFERRALS"


@dataclass(frozen=True, slots=True)
class Webhook:
    url: str
    secret_env: str = DEFAULT_SECRET_ENV  # the NAME of the variable holding the secret
    timeout_s: float = 10.0
    max_attempts: int = 5


@dataclass(frozen=True, slots=True)
class RateLimit:
    max_per_day: int = 3


@dataclass(frozen=True, slots=True)
class MessageTemplate:
    """Jinja2 sources; `html` None sends a plain-text message only."""

    subject: str
    text: str
    html: str | None = None


Templates = Mapping[MessageKind, Mapping[str, MessageTemplate]]  # kind -> locale -> template


def freeze_templates(templates: Mapping[MessageKind, Mapping[str, MessageTemplate]]) -> Templates:
    """A read-only copy that iterates kinds and locales in sorted order."""
    return MappingProxyType(
        {
            kind: MappingProxyType(dict(sorted(templates[kind].items())))
            for kind in sorted(templates)
        }
    )


_FOOTER_TEXT = (
    "\n\n--\nYou receive this because you joined our referral program.\n"
    "Unsubscribe: {{ unsubscribe_url }}\n"
)
_FOOTER_HTML = (
    '<p style="font-size:small;color:#666">You receive this because you joined our referral'
    ' program. <a href="{{ unsubscribe_url }}">Unsubscribe</a></p>'
)
_NEXT_TIER = (
    "{% if referrals_to_next_tier %} {{ referrals_to_next_tier }} more successful"
    " referral{{ 's' if referrals_to_next_tier != 1 else '' }} and your reward grows to"
    " {{ next_tier_amount }}.{% endif %}"
)
_TYPE = "{{ reward_type | replace('_', ' ') | lower }}"


def _default(subject: str, *paragraphs: str) -> MessageTemplate:
    """One built-in en-US message: greeting, paragraphs, the unsubscribe footer."""
    text = "Hi {{ advocate_name }},\n\n" + "\n\n".join(paragraphs) + _FOOTER_TEXT
    html = "".join(f"<p>{paragraph}</p>" for paragraph in paragraphs)
    return MessageTemplate(subject, text, f"<p>Hi {{{{ advocate_name }}}},</p>{html}{_FOOTER_HTML}")


DEFAULT_LOCALE = "en-US"
DEFAULT_TEMPLATES: Templates = freeze_templates(
    {
        kind: {DEFAULT_LOCALE: template}
        for kind, template in {
            MessageKind.LEAD: _default(
                "Thank you: {{ prospect_label }} signed up",
                "{{ prospect_label }} signed up thanks to you. We will let you know how it goes.",
                "Know someone else? Share your link: {{ refer_url }}",
            ),
            MessageKind.WON: _default(
                "Great news: {{ prospect_label }} became a customer",
                "{{ prospect_label }} became a customer thanks to your referral.",
                "Your reward is on its way through our usual checks; we will write again soon.",
            ),
            MessageKind.REWARDED: _default(
                "You earned {{ reward_amount }}",
                "Thank you for referring {{ prospect_label }}: you earned a reward of"
                f" {{{{ reward_amount }}}} ({_TYPE}).{_NEXT_TIER} Keep them coming!",
            ),
            MessageKind.PAID: _default(
                "Your {{ reward_amount }} reward has been sent",
                f"Your reward of {{{{ reward_amount }}}} ({_TYPE}) for referring"
                " {{ prospect_label }} has been sent. Thank you for spreading the word!",
            ),
            MessageKind.PAYOUT_FAILED: _default(
                "About your {{ reward_amount }} reward",
                "We tried to send your reward of {{ reward_amount }}, but it did not go through.",
                "Nothing is lost and there is nothing you need to do: our team is on it and will"
                " be in touch if we need anything from you. We are sorry for the delay.",
            ),
            MessageKind.REWARD_DENIED: _default(
                "An update on your referral reward",
                "Thank you for your recent referral. We have reviewed its reward"
                "{% if reward_amount %} of {{ reward_amount }}{% endif %} and, this time, we are"
                " not able to issue it.",
                "This decision is about this one referral under our program's terms; it is not a"
                " judgement of you, and it does not change your other referrals or rewards.",
                "If you have a question or think we got it wrong, just reply to this email and our"
                " team will look into it.",
                "We are grateful you thought of us, and we would love to hear about the next person"
                " who could use us: {{ refer_url }}",
            ),
            MessageKind.REWARD_CLAWED_BACK: _default(
                "An update on your referral reward",
                "{{ prospect_label }} has cancelled or been refunded for the purchase you referred,"
                " so the referral no longer qualifies and the reward of {{ reward_amount }}"
                f" ({_TYPE}) issued for it has been reversed.",
                "This happens when a deal does not go ahead, and it says nothing about you: your"
                " referral was welcome, and your other rewards are not affected.",
                "If you have a question, just reply to this email and our team will help.",
                "Thank you for spreading the word. Your next referral can earn you a reward again:"
                " {{ refer_url }}",
            ),
            MessageKind.NURTURE: _default(
                "Know someone else who would like us?",
                "Thanks again for your referral. Friends you refer earn you rewards every time.",
                "Share your personal link: {{ refer_url }}",
            ),
        }.items()
    }
)


@dataclass(frozen=True, slots=True)
class Notifications:
    channels: tuple[NotificationChannel, ...] = (NotificationChannel.EMAIL,)
    webhook: Webhook | None = None
    from_address: str = "referrals@example.com"
    default_locale: str = DEFAULT_LOCALE
    staleness_days: int = 7
    rate_limit: RateLimit = RateLimit()
    nurture_days: tuple[int, ...] = (3, 14)
    unsubscribe_base_url: str | None = None
    templates: Templates = field(default_factory=lambda: DEFAULT_TEMPLATES)
    # Every new lead is POSTed here for the advocate's account owner, whatever the opt-out.
    sales_webhook: Webhook | None = None
    kinds: tuple[MessageKind, ...] = tuple(MessageKind)  # the messages advocates get

    def template(self, kind: MessageKind, locale: str | None) -> MessageTemplate:
        """The template for `locale`, else one in its language, else for the default locale."""
        by_locale = {_normal(key): template for key, template in self.templates[kind].items()}
        for wanted in (locale, self.default_locale):
            if not wanted:
                continue
            if _normal(wanted) in by_locale:
                return by_locale[_normal(wanted)]
            language = _normal(wanted).split("-")[0]
            for key in sorted(by_locale):
                if key.split("-")[0] == language:
                    return by_locale[key]
        return self.templates[kind][DEFAULT_LOCALE]


def _normal(locale: str) -> str:
    """'de_DE' and 'de-de' name the same locale as 'de-DE'."""
    return locale.replace("_", "-").lower()


@dataclass(frozen=True, slots=True)
class ProgramDocument:
    program_id: str
    currency: str
    rewards: Rewards
    time_zone: str = "UTC"
    attribution: Attribution = Attribution()
    notifications: Notifications = Notifications()
    status: ProgramStatus = ProgramStatus.ACTIVE
    fraud: Fraud = Fraud()


def to_document(doc: ProgramDocument) -> dict[str, object]:
    """The complete document as JSON-ready data in the terms marketing writes (amounts "50.00")."""

    def amount(minor: int | None) -> str | None:
        return None if minor is None else to_major(minor, doc.currency)

    rewards, notes, webhook = doc.rewards, doc.notifications, doc.notifications.webhook
    friend = rewards.friend_reward
    return {
        "program_id": doc.program_id,
        "currency": doc.currency,
        "time_zone": doc.time_zone,
        "attribution": {
            "window_days": doc.attribution.window_days,
            "policy": doc.attribution.policy,
        },
        "rewards": {
            "period": rewards.period,
            "rule_id": rewards.rule_id,
            "tiers": [
                {"from_referral": tier.from_referral, "reward_type": tier.reward_type}
                | (
                    {"amount": amount(tier.amount_minor)}
                    if tier.percent is None
                    else {"percent": f"{tier.percent.normalize():f}"}
                )
                for tier in rewards.tiers
            ],
            "period_cap": amount(rewards.period_cap_minor),
            "approval_threshold": amount(rewards.approval_threshold_minor),
            "hold_days": rewards.hold_days,
            "tax_threshold": amount(rewards.tax_threshold_minor),
            "friend_reward": None
            if friend is None
            else {"amount": amount(friend.amount_minor), "reward_type": friend.reward_type},
            "clawback": rewards.clawback,
        },
        "status": doc.status,
        "fraud": {"max_wins_per_day": doc.fraud.max_wins_per_day},
        "notifications": {
            "channels": list(notes.channels),
            "webhook": None
            if webhook is None
            else {
                "url": webhook.url,
                "secret_env": webhook.secret_env,
                "timeout_s": webhook.timeout_s,
                "max_attempts": webhook.max_attempts,
            },
            "from_address": notes.from_address,
            "default_locale": notes.default_locale,
            "staleness_days": notes.staleness_days,
            "rate_limit": {"max_per_day": notes.rate_limit.max_per_day},
            "nurture_days": list(notes.nurture_days),
            "unsubscribe_base_url": notes.unsubscribe_base_url,
            "sales_webhook": None
            if notes.sales_webhook is None
            else {
                "url": notes.sales_webhook.url,
                "secret_env": notes.sales_webhook.secret_env,
                "timeout_s": notes.sales_webhook.timeout_s,
                "max_attempts": notes.sales_webhook.max_attempts,
            },
            "kinds": [kind for kind in MessageKind if kind in notes.kinds],
            "templates": {
                kind: {
                    locale: {"subject": t.subject, "text": t.text, "html": t.html}
                    for locale, t in by_locale.items()
                }
                for kind, by_locale in notes.templates.items()
            },
        },
    }
