"""The program document marketing writes: defaults, every problem at once with its path, and a
canonical JSON form that round-trips."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from referrals.contract.records import RewardType
from referrals.platform.errors import ConfigError
from referrals.programs.document import (
    ProgramInvalid,
    canonical_json,
    from_canonical,
    parse_document,
    validate,
)
from referrals.programs.model import (
    DEFAULT_TEMPLATES,
    AttributionPolicy,
    FriendReward,
    MessageKind,
    NotificationChannel,
    ProgramStatus,
    RewardPeriod,
    Tier,
)

PROGRAMS = Path(__file__).resolve().parents[2] / "deploy" / "programs"

MINIMAL = """
program_id: acme-b2b
currency: USD
rewards:
  tiers:
    - {from_referral: 1, amount: "50.00", reward_type: GIFT_CARD}
"""


def document(**changes: Any) -> dict[str, Any]:
    """A valid document as data; `rewards__tiers=[...]` replaces a nested key."""
    data: dict[str, Any] = {
        "program_id": "acme-b2b",
        "currency": "USD",
        "rewards": {
            "tiers": [
                {"from_referral": 1, "amount": "50.00", "reward_type": "GIFT_CARD"},
                {"from_referral": 3, "amount": "75.00", "reward_type": "GIFT_CARD"},
                {"from_referral": 6, "percent": "5", "reward_type": "CHECK"},
            ]
        },
    }
    for key, value in changes.items():
        *parents, last = key.split("__")
        target = data
        for parent in parents:
            target = target.setdefault(parent, {})
        target[last] = value
    return data


def problems_of(data: object) -> list[tuple[str, str]]:
    with pytest.raises(ProgramInvalid) as caught:
        validate(data)
    return caught.value.problems


def test_a_document_with_only_the_required_keys_is_valid_and_gets_every_default() -> None:
    doc = validate(parse_document(MINIMAL))
    assert (doc.program_id, doc.currency, doc.time_zone) == ("acme-b2b", "USD", "UTC")
    assert doc.attribution.window_days == 90
    assert doc.attribution.policy is AttributionPolicy.FIRST_TOUCH
    rewards = doc.rewards
    assert rewards.tiers == (Tier(1, RewardType.GIFT_CARD, amount_minor=5000),)
    assert rewards.period is RewardPeriod.CALENDAR_YEAR
    assert rewards.rule_id == "referral-reward"
    assert (rewards.period_cap_minor, rewards.approval_threshold_minor) == (None, None)
    assert (rewards.hold_days, rewards.tax_threshold_minor) == (0, None)
    assert (rewards.friend_reward, rewards.clawback) == (None, False)
    assert doc.status is ProgramStatus.ACTIVE
    assert doc.fraud.max_wins_per_day is None
    notes = doc.notifications
    assert notes.channels == (NotificationChannel.EMAIL,)
    assert notes.webhook is None
    assert (notes.from_address, notes.default_locale) == ("referrals@example.com", "en-US")
    assert (notes.staleness_days, notes.rate_limit.max_per_day) == (7, 3)
    assert notes.nurture_days == (3, 14)
    assert notes.unsubscribe_base_url is None
    assert notes.templates == DEFAULT_TEMPLATES
    assert set(notes.templates) == set(MessageKind)
    assert notes.sales_webhook is None
    assert notes.kinds == tuple(MessageKind)


def test_the_sales_webhook_and_the_message_kinds_are_read_and_round_trip() -> None:
    doc = validate(
        document(
            notifications__sales_webhook={
                "url": "https://crm.example/hooks/referrals",
                "secret_env": "WEBHOOK_SECRET_SALES",
            },
            notifications__kinds=["WON", "LEAD", "REWARD_CLAWED_BACK"],
        )
    )
    hook = doc.notifications.sales_webhook
    assert hook is not None
    assert (hook.url, hook.secret_env) == (
        "https://crm.example/hooks/referrals",
        "WEBHOOK_SECRET_SALES",
    )
    assert doc.notifications.kinds == (
        MessageKind.LEAD,
        MessageKind.WON,
        MessageKind.REWARD_CLAWED_BACK,
    )
    assert from_canonical(canonical_json(doc)) == doc
    assert validate(document(notifications__kinds=[])).notifications.kinds == ()


@pytest.mark.parametrize("kind", [MessageKind.REWARD_DENIED, MessageKind.REWARD_CLAWED_BACK])
def test_denied_and_clawed_back_rewards_have_courteous_default_messages(kind: MessageKind) -> None:
    template = DEFAULT_TEMPLATES[kind]["en-US"]
    assert template.subject == "An update on your referral reward"
    assert "reply to this email" in template.text  # whom to contact
    assert "{{ refer_url }}" in template.text  # and a nudge to keep referring
    assert "not a judgement of you" in template.text or "says nothing about you" in template.text


@pytest.mark.parametrize("name", ["acme-b2b.yaml", "brightcell-b2c.yaml"])
def test_the_example_programs_validate(name: str) -> None:
    path = PROGRAMS / name
    doc = validate(parse_document(path.read_text(encoding="utf-8"), str(path)))
    assert doc.program_id == name.removesuffix(".yaml")
    assert from_canonical(canonical_json(doc)) == doc


def test_the_b2b_example_escalates_gift_cards_then_pays_a_percentage_by_check() -> None:
    doc = validate(parse_document((PROGRAMS / "acme-b2b.yaml").read_text(encoding="utf-8")))
    assert [(t.from_referral, t.amount_minor, t.percent) for t in doc.rewards.tiers] == [
        (1, 5000, None),
        (3, 7500, None),
        (6, None, Decimal(5)),
    ]
    assert doc.rewards.tier_for(4).amount_minor == 7500
    assert doc.rewards.tax_threshold_minor == 60000
    assert doc.rewards.friend_reward == FriendReward(2500, RewardType.BILL_CREDIT)
    assert doc.rewards.clawback is True
    assert (doc.status, doc.fraud.max_wins_per_day) == (ProgramStatus.ACTIVE, 10)
    assert doc.notifications.template(MessageKind.LEAD, "en-US").subject.startswith("Thank you")


def test_the_b2c_example_speaks_german_and_falls_back_to_english_defaults() -> None:
    doc = validate(parse_document((PROGRAMS / "brightcell-b2c.yaml").read_text(encoding="utf-8")))
    assert {t.reward_type for t in doc.rewards.tiers} == {RewardType.BILL_CREDIT}
    notes = doc.notifications
    assert "Gutschrift" in notes.template(MessageKind.REWARDED, "de-DE").subject
    assert "Gutschrift" in notes.template(MessageKind.REWARDED, None).subject  # default de-DE
    english = DEFAULT_TEMPLATES[MessageKind.REWARDED]["en-US"]
    assert notes.template(MessageKind.REWARDED, "en-GB") == english
    assert notes.template(MessageKind.WON, "de-DE") == DEFAULT_TEMPLATES[MessageKind.WON]["en-US"]


def tiers(*entries: dict[str, object]) -> list[dict[str, object]]:
    return [{"reward_type": "GIFT_CARD", **entry} for entry in entries]


BAD_TEMPLATE = {"REWARDED": {"en-US": {"subject": "{{ reward_amount ", "text": "x"}}}
INVALID = {
    "unordered tiers": (
        document(
            rewards__tiers=tiers(
                {"from_referral": 1, "amount": "1"},
                {"from_referral": 5, "amount": "2"},
                {"from_referral": 3, "amount": "3"},
            )
        ),
        "rewards.tiers[2].from_referral",
        "tiers must be in order: 3 after 5",
    ),
    "duplicate from_referral": (
        document(
            rewards__tiers=tiers(
                {"from_referral": 1, "amount": "1"}, {"from_referral": 1, "amount": "2"}
            )
        ),
        "rewards.tiers[1].from_referral",
        "another tier already starts at 1",
    ),
    "first tier not 1": (
        document(rewards__tiers=tiers({"from_referral": 2, "amount": "1"})),
        "rewards.tiers[0].from_referral",
        "the first tier must start at 1, not 2",
    ),
    "negative amount": (
        document(rewards__tiers=tiers({"from_referral": 1, "amount": "-5.00"})),
        "rewards.tiers[0].amount",
        "must not be negative",
    ),
    "too many decimals": (
        document(rewards__period_cap="10.001"),
        "rewards.period_cap",
        "'10.001' has more decimals than USD allows",
    ),
    "unknown currency": (
        document(currency="USX"),
        "currency",
        "'USX' is not an active ISO 4217 currency code, like USD",
    ),
    "unknown time zone": (
        document(time_zone="Europe/berlin"),
        "time_zone",
        "'Europe/berlin' is not an IANA time zone (did you mean 'Europe/Berlin'?)",
    ),
    "percent 0": (
        document(rewards__tiers=tiers({"from_referral": 1, "percent": "0"})),
        "rewards.tiers[0].percent",
        "must be more than 0 and at most 100",
    ),
    "percent 101": (
        document(rewards__tiers=tiers({"from_referral": 1, "percent": "101"})),
        "rewards.tiers[0].percent",
        "must be more than 0 and at most 100",
    ),
    "both amount and percent": (
        document(rewards__tiers=tiers({"from_referral": 1, "amount": "5", "percent": "5"})),
        "rewards.tiers[0]",
        "needs either an amount or a percent (not both, not neither)",
    ),
    "neither amount nor percent": (
        document(rewards__tiers=tiers({"from_referral": 1})),
        "rewards.tiers[0]",
        "needs either an amount or a percent (not both, not neither)",
    ),
    "unquoted float amount": (
        document(rewards__tiers=tiers({"from_referral": 1, "amount": 50.0})),
        "rewards.tiers[0].amount",
        'must be quoted, like "50.00": unquoted, 50.0 is read as an inexact floating-point number',
    ),
    "unknown key typo": (
        {**document(), "reward": {}},
        "reward",
        "unknown key (did you mean 'rewards'?)",
    ),
    "nested unknown key typo": (
        document(rewards__hold_day=3),
        "rewards.hold_day",
        "unknown key (did you mean 'hold_days'?)",
    ),
    "template that does not render": (
        document(notifications__templates=BAD_TEMPLATE),
        "notifications.templates.REWARDED.en-US.subject",
        "line 1: unexpected end of template, expected 'end of print statement'.",
    ),
    "template reaching for internals": (
        document(
            notifications__templates={
                "LEAD": {
                    "en-US": {"subject": "{{ ''.__class__ }}", "text": "{{ unsubscribe_url }}"}
                }
            }
        ),
        "notifications.templates.LEAD.en-US.subject",
        "is refused: access to attribute '__class__' of 'str' object is unsafe.",
    ),
    "template without unsubscribe link": (
        document(notifications__templates={"LEAD": {"de-DE": {"subject": "Hallo", "text": "x"}}}),
        "notifications.templates.LEAD.de-DE.text",
        "must include the link {{ unsubscribe_url }}",
    ),
    "missing tiers": (
        {"program_id": "p", "currency": "USD"},
        "rewards.tiers",
        "is required",
    ),
    "empty program id": (
        document(program_id=""),
        "program_id",
        "must be 1 to 256 letters, digits, '.', '_' or '-'",
    ),
    "window out of range": (
        document(attribution__window_days=0),
        "attribution.window_days",
        "must be a whole number from 1 to 3650",
    ),
    "unknown policy": (
        document(attribution__policy="MIDDLE_TOUCH"),
        "attribution.policy",
        "must be one of FIRST_TOUCH, LAST_TOUCH",
    ),
    "unknown reward type": (
        document(rewards__tiers=tiers({"from_referral": 1, "amount": "1", "reward_type": "CASH"})),
        "rewards.tiers[0].reward_type",
        "must be one of GIFT_CARD, CHECK, BILL_CREDIT, MERCHANDISE",
    ),
    "hold too long": (
        document(rewards__hold_days=366),
        "rewards.hold_days",
        "must be a whole number from 0 to 365",
    ),
    "friend reward with too many decimals": (
        document(rewards__friend_reward={"amount": "2.555", "reward_type": "BILL_CREDIT"}),
        "rewards.friend_reward.amount",
        "'2.555' has more decimals than USD allows",
    ),
    "negative friend reward": (
        document(rewards__friend_reward={"amount": "-1", "reward_type": "BILL_CREDIT"}),
        "rewards.friend_reward.amount",
        "must not be negative",
    ),
    "friend reward without a type": (
        document(rewards__friend_reward={"amount": "25.00"}),
        "rewards.friend_reward.reward_type",
        "is required",
    ),
    "friend reward of an unknown type": (
        document(rewards__friend_reward={"amount": "25.00", "reward_type": "CASH"}),
        "rewards.friend_reward.reward_type",
        "must be one of GIFT_CARD, CHECK, BILL_CREDIT, MERCHANDISE",
    ),
    "clawback not a boolean": (
        document(rewards__clawback="yes"),
        "rewards.clawback",
        "must be true or false",
    ),
    "unknown status": (
        document(status="CLOSED"),
        "status",
        "must be one of ACTIVE, PAUSED, ENDED",
    ),
    "no wins allowed per day": (
        document(fraud__max_wins_per_day=0),
        "fraud.max_wins_per_day",
        "must be a whole number from 1 to 1000000",
    ),
    "wins per day not a whole number": (
        document(fraud__max_wins_per_day="5"),
        "fraud.max_wins_per_day",
        "must be a whole number from 1 to 1000000",
    ),
    "fraud key typo": (
        document(fraud__max_win_per_day=5),
        "fraud.max_win_per_day",
        "unknown key (did you mean 'max_wins_per_day'?)",
    ),
    "webhook channel without webhook": (
        document(notifications__channels=["EMAIL", "WEBHOOK"]),
        "notifications.webhook",
        "is required when channels include WEBHOOK",
    ),
    "webhook secret given instead of its name": (
        document(notifications__webhook={"url": "https://crm.example", "secret_env": "s3cr3t!"}),
        "notifications.webhook.secret_env",
        "must be the NAME of an environment variable starting with WEBHOOK_SECRET_, like"
        " WEBHOOK_SECRET_CRM",
    ),
    "webhook secret naming another secret of the process": (
        document(
            notifications__webhook={
                "url": "https://crm.example",
                "secret_env": "KAFKA_SASL_PASSWORD",
            }
        ),
        "notifications.webhook.secret_env",
        "must be the NAME of an environment variable starting with WEBHOOK_SECRET_, like"
        " WEBHOOK_SECRET_CRM",
    ),
    "nurture days out of order": (
        document(notifications__nurture_days=[14, 3]),
        "notifications.nurture_days",
        "must be a list of increasing whole numbers from 1 to 365",
    ),
    "unknown message kind": (
        document(notifications__templates={"THANKS": {}}),
        "notifications.templates.THANKS",
        "unknown key (expected one of LEAD, WON, REWARDED, PAID, PAYOUT_FAILED, REWARD_DENIED,"
        " REWARD_CLAWED_BACK, NURTURE)",
    ),
    "sales webhook without its url": (
        document(notifications__sales_webhook={"secret_env": "WEBHOOK_SECRET_SALES"}),
        "notifications.sales_webhook.url",
        "is required",
    ),
    "sales webhook url not http": (
        document(
            notifications__sales_webhook={"url": "ftp://crm", "secret_env": "WEBHOOK_SECRET_SALES"}
        ),
        "notifications.sales_webhook.url",
        "must be an http or https URL, like https://example.com/unsubscribe",
    ),
    "sales webhook secret outside WEBHOOK_SECRET_": (
        document(
            notifications__sales_webhook={"url": "https://crm.example", "secret_env": "SALES_KEY"}
        ),
        "notifications.sales_webhook.secret_env",
        "must be the NAME of an environment variable starting with WEBHOOK_SECRET_, like"
        " WEBHOOK_SECRET_CRM",
    ),
    "sales webhook secret left out": (
        document(notifications__sales_webhook={"url": "https://crm.example"}),
        "notifications.sales_webhook.secret_env",
        "is required",
    ),
    "sales webhook key typo": (
        document(notifications__sales_webhok={"url": "https://crm.example"}),
        "notifications.sales_webhok",
        "unknown key (did you mean 'sales_webhook'?)",
    ),
    "message kinds with an unknown one": (
        document(notifications__kinds=["LEAD", "DENIED"]),
        "notifications.kinds[1]",
        "must be one of LEAD, WON, REWARDED, PAID, PAYOUT_FAILED, REWARD_DENIED,"
        " REWARD_CLAWED_BACK, NURTURE, each at most once",
    ),
    "message kinds with a repeat": (
        document(notifications__kinds=["LEAD", "LEAD"]),
        "notifications.kinds[1]",
        "must be one of LEAD, WON, REWARDED, PAID, PAYOUT_FAILED, REWARD_DENIED,"
        " REWARD_CLAWED_BACK, NURTURE, each at most once",
    ),
    "message kinds not a list": (
        document(notifications__kinds="LEAD"),
        "notifications.kinds",
        "must be a list of message kinds such as [LEAD, WON] (or [] for none)",
    ),
    "sales webhook as a channel": (
        document(notifications__channels=["EMAIL", "SALES_WEBHOOK"]),
        "notifications.channels[1]",
        "must be EMAIL or WEBHOOK, each at most once",
    ),
}


@pytest.mark.parametrize(("data", "path", "message"), INVALID.values(), ids=list(INVALID))
def test_an_invalid_document_names_the_path_and_the_problem(
    data: object, path: str, message: str
) -> None:
    assert (path, message) in problems_of(data)


def test_a_document_with_several_problems_reports_all_of_them_at_once() -> None:
    text = """
program_id: acme-b2b
currency: USX
time_zone: Mars/Olympus_Mons
reward: {}
rewards:
  tiers:
    - {from_referral: 3, amount: 50.00, reward_type: GIFT_CARD}
    - {from_referral: 2, percent: "101", reward_type: CHECK}
notifications:
  templates:
    WON: {en-US: {subject: "{{ nope }}", text: "{{ unsubscribe_url }}"}}
"""
    with pytest.raises(ProgramInvalid) as caught:
        validate(parse_document(text))
    paths = [path for path, _ in caught.value.problems]
    assert paths == [
        "reward",
        "currency",
        "time_zone",
        "rewards.tiers[0].from_referral",
        "rewards.tiers[0].amount",
        "rewards.tiers[1].from_referral",
        "rewards.tiers[1].percent",
        "notifications.templates.WON.en-US.subject",
    ]
    lines = str(caught.value).splitlines()
    assert len(lines) == len(paths)
    assert lines[1] == "currency: 'USX' is not an active ISO 4217 currency code, like USD"
    assert isinstance(caught.value, ConfigError)


def test_a_key_given_as_null_takes_its_default() -> None:
    nulls = document(time_zone=None, attribution=None, notifications__templates={"LEAD": None})
    nulls["rewards"]["period_cap"] = None
    assert validate(nulls) == validate(document())


def test_a_tier_with_bad_values_and_both_amount_and_percent_reports_every_problem() -> None:
    bad = {"from_referral": 1, "amount": "-1", "percent": "x", "reward_type": "CASH"}
    assert problems_of(document(rewards__tiers=[bad])) == [
        ("rewards.tiers[0].amount", "must not be negative"),
        ("rewards.tiers[0].percent", 'must be a decimal number in quotes, like "2.5"'),
        (
            "rewards.tiers[0].reward_type",
            "must be one of GIFT_CARD, CHECK, BILL_CREDIT, MERCHANDISE",
        ),
        ("rewards.tiers[0]", "needs either an amount or a percent (not both, not neither)"),
    ]


def test_json_input_works_as_well_as_yaml() -> None:
    from_json = validate(parse_document(json.dumps(document())))
    from_yaml = validate(parse_document(json.dumps(document(), indent=2).replace("{", "{ ")))
    assert from_json == from_yaml
    assert from_json.rewards.tiers[2].percent == Decimal(5)


@pytest.mark.parametrize(
    ("text", "where", "message"),
    [
        ("a: 1\na: 2\n", "f.yaml:2:1", "is not valid YAML: key 'a' appears twice"),
        ('{"a": 1, "a": 2}', "f.yaml", "key 'a' appears twice"),
        ("a: [1\n", "f.yaml:2:1", "is not valid YAML: expected ',' or ']', but got '<stream end>'"),
        ('{"a": }', "f.yaml:1:7", "is not valid JSON: Expecting value"),
        ("- 1\n", "f.yaml", "must be a mapping of keys (program_id:, currency:, ...)"),
        ("a: !!python/object:os.system {}\n", "f.yaml:1:4", "is not valid YAML"),
    ],
)
def test_unreadable_text_is_reported_with_its_position(text: str, where: str, message: str) -> None:
    with pytest.raises(ProgramInvalid) as caught:
        parse_document(text, "f.yaml")
    [(path, problem)] = caught.value.problems
    assert path == where
    assert problem.startswith(message)


def test_canonical_json_is_deterministic_complete_and_round_trips() -> None:
    doc = validate(document(rewards__period_cap="2500", notifications__channels=[]))
    text = canonical_json(doc)
    same = document(rewards__period_cap=2500, notifications__channels=[])
    same["rewards"]["tiers"][0]["amount"] = "50"
    assert canonical_json(validate(dict(reversed(same.items())))) == text
    data = json.loads(text)
    assert list(data) == sorted(data)
    assert data["rewards"]["period_cap"] == "2500.00"
    assert data["rewards"]["tiers"][2] == {
        "from_referral": 6,
        "percent": "5",
        "reward_type": "CHECK",
    }
    assert data["attribution"] == {"policy": "FIRST_TOUCH", "window_days": 90}
    assert set(data["notifications"]["templates"]) == {kind.value for kind in MessageKind}
    assert from_canonical(text) == doc
    assert canonical_json(from_canonical(text)) == text


def test_the_further_keys_are_read_in_minor_units_and_round_trip() -> None:
    doc = validate(
        document(
            rewards__friend_reward={"amount": "25", "reward_type": "BILL_CREDIT"},
            rewards__clawback=True,
            status="ENDED",
            fraud__max_wins_per_day=5,
        )
    )
    assert doc.rewards.friend_reward == FriendReward(2500, RewardType.BILL_CREDIT)
    assert doc.rewards.clawback is True
    assert doc.status is ProgramStatus.ENDED
    assert doc.fraud.max_wins_per_day == 5
    text = canonical_json(doc)
    data = json.loads(text)
    assert data["rewards"]["friend_reward"] == {"amount": "25.00", "reward_type": "BILL_CREDIT"}
    assert data["rewards"]["clawback"] is True
    assert (data["status"], data["fraud"]) == ("ENDED", {"max_wins_per_day": 5})
    assert from_canonical(text) == doc


def test_the_further_keys_are_published_off_when_left_out() -> None:
    data = json.loads(canonical_json(validate(document())))
    assert (data["rewards"]["friend_reward"], data["rewards"]["clawback"]) == (None, False)
    assert (data["status"], data["fraud"]) == ("ACTIVE", {"max_wins_per_day": None})


def test_a_percent_is_published_in_its_shortest_exact_form() -> None:
    doc = validate(document(rewards__tiers=tiers({"from_referral": 1, "percent": "2.50"})))
    assert json.loads(canonical_json(doc))["rewards"]["tiers"][0]["percent"] == "2.5"


def test_a_document_template_replaces_the_default_only_for_its_kind_and_locale() -> None:
    custom = {"subject": "Hallo", "text": "Danke! {{ unsubscribe_url }}"}
    doc = validate(document(notifications__templates={"LEAD": {"de-DE": custom}}))
    lead = doc.notifications.templates[MessageKind.LEAD]
    assert set(lead) == {"de-DE", "en-US"}
    assert lead["de-DE"].html is None  # plain text only
    assert lead["en-US"] == DEFAULT_TEMPLATES[MessageKind.LEAD]["en-US"]
    assert doc.notifications.template(MessageKind.LEAD, "de_AT").subject == "Hallo"


def test_the_summary_validate_and_put_print_names_the_money_rules_in_force() -> None:
    from referrals.programs.put import describe, load_program

    acme = describe(load_program(PROGRAMS / "acme-b2b.yaml"))
    assert acme.startswith("program acme-b2b (USD, America/New_York): tiers #1+: 50.00 GIFT_CARD")
    assert "friend reward 25.00 BILL_CREDIT" in acme
    assert "clawbacks on" in acme and "at most 10 wins a day before review" in acme
    assert "status" not in acme  # ACTIVE goes without saying


def test_the_old_default_secret_variable_reads_as_the_new_one() -> None:
    # Canonical documents published before the WEBHOOK_SECRET_ rule carry the old default.
    for given in ({}, {"secret_env": "REFERRALS_WEBHOOK_SECRET"}):
        doc = validate(document(notifications__webhook={"url": "https://crm.example", **given}))
        assert doc.notifications.webhook is not None
        assert doc.notifications.webhook.secret_env == "WEBHOOK_SECRET_REFERRALS"
