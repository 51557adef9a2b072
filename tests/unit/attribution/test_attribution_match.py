"""Matching one event: channels, precedence within an event, the window, self-referral."""

from __future__ import annotations

from datetime import timedelta

import pytest
from attribution_builders import (
    DAY,
    MS,
    PROGRAM,
    PROSPECT,
    PROSPECT_EMAIL,
    T0,
    advocate,
    code_of,
    conversion,
    directory,
    engine,
    said,
    share,
)

from referrals.contract.records import Channel, MatchedBy, ReferralStatus
from services.attribution.domain.ids import referral_id
from services.attribution.domain.model import Policy
from services.attribution.domain.referral import on_conversion

ALL_CHANNELS = list(Channel)


@pytest.mark.parametrize("channel", ALL_CHANNELS)
def test_a_referral_code_matches_a_share_of_every_channel(channel: Channel) -> None:
    shares = [share("sh-1", "adv-a", channel=channel)]
    step = on_conversion(None, conversion(code=code_of("adv-a")), directory(shares=shares))
    [lead] = step.outputs
    assert (lead.advocate_id, lead.status) == ("adv-a", ReferralStatus.LEAD)
    assert (lead.channel, lead.matched_by) == (channel, MatchedBy.CODE)


@pytest.mark.parametrize(
    ("channel", "matches"),
    [
        (Channel.EMAIL, True),
        (Channel.LEAD_FORM, True),
        (Channel.SOCIAL, False),
        (Channel.VERBAL, False),
        (Channel.SHARE_URL, False),
        (Channel.PRINT_CARD, False),
    ],
)
def test_the_prospect_email_matches_only_email_and_lead_form_shares(
    channel: Channel, matches: bool
) -> None:
    shares = [share("sh-1", "adv-a", channel=channel, email=PROSPECT_EMAIL)]
    step = on_conversion(None, conversion(email=PROSPECT_EMAIL), directory(shares=shares))
    if matches:
        [lead] = step.outputs
        assert (lead.channel, lead.matched_by) == (channel, MatchedBy.EMAIL)
    else:
        assert step.outputs == []
        assert step.waits.emails == {PROSPECT_EMAIL}


def test_a_declared_advocate_creates_the_referral_by_itself_as_verbal() -> None:
    step = on_conversion(None, conversion(declared="adv-a"), directory())
    [lead] = step.outputs
    assert (lead.advocate_id, lead.channel, lead.matched_by) == (
        "adv-a",
        Channel.VERBAL,
        MatchedBy.DECLARED,
    )


def test_a_declared_advocate_has_no_window() -> None:
    late = conversion(declared="adv-a", at=T0 + 400 * DAY)
    assert said(on_conversion(None, late, directory(window_days=1)).outputs) == [
        ("adv-a", "LEAD", None)
    ]


SHARES_OF_ALL = [
    share("sh-b", "adv-b", channel=Channel.PRINT_CARD, at=T0 - 2 * DAY),
    share("sh-c", "adv-c", channel=Channel.EMAIL, email=PROSPECT_EMAIL, at=T0 - 3 * DAY),
]


@pytest.mark.parametrize(
    ("fields", "advocate_id", "matched_by"),
    [
        (
            {"declared": "adv-a", "code": code_of("adv-b"), "email": PROSPECT_EMAIL},
            "adv-a",
            "DECLARED",
        ),
        ({"declared": "adv-a", "code": code_of("adv-b")}, "adv-a", "DECLARED"),
        ({"declared": "adv-a", "email": PROSPECT_EMAIL}, "adv-a", "DECLARED"),
        ({"code": code_of("adv-b"), "email": PROSPECT_EMAIL}, "adv-b", "CODE"),
        ({"email": PROSPECT_EMAIL}, "adv-c", "EMAIL"),
    ],
)
def test_within_one_event_declared_beats_code_beats_email(
    fields: dict[str, str], advocate_id: str, matched_by: str
) -> None:
    step = on_conversion(None, conversion(**fields), directory(shares=SHARES_OF_ALL))
    # The weaker claims of the same event are not claims at all: nobody else hears anything.
    [lead] = step.outputs
    assert (lead.advocate_id, lead.matched_by.value) == (advocate_id, matched_by)


def test_a_code_without_any_share_falls_back_to_the_email_and_keeps_waiting_for_the_code() -> None:
    engine_ = engine(shares=SHARES_OF_ALL[1:])
    engine_.conversion(conversion(code="TYPO", email=PROSPECT_EMAIL))
    assert said(engine_.outputs) == [("adv-c", "LEAD", None)]
    assert engine_.waits((PROGRAM, PROSPECT)).codes == {"TYPO"}


@pytest.mark.parametrize(
    ("share_age", "window_days", "expected"),
    [
        (timedelta(days=90), 90, ("adv-a", "LEAD", None)),
        (timedelta(days=90) + MS, 90, ("adv-a", "REJECTED", "OUTSIDE_WINDOW")),
        (timedelta(days=30), 30, ("adv-a", "LEAD", None)),
        (timedelta(days=30) + MS, 30, ("adv-a", "REJECTED", "OUTSIDE_WINDOW")),
        (timedelta(0), 90, ("adv-a", "LEAD", None)),
        (-timedelta(hours=1), 90, ("adv-a", "LEAD", None)),  # clock skew: still a cause
    ],
)
def test_a_share_counts_up_to_exactly_the_window_before_the_conversion(
    share_age: timedelta, window_days: int, expected: tuple[str, str, str | None]
) -> None:
    shares = [share("sh-1", "adv-a", at=T0 - share_age)]
    dir_ = directory(shares=shares, window_days=window_days)
    step = on_conversion(None, conversion(code=code_of("adv-a")), dir_)
    assert said(step.outputs) == [expected]


def test_a_share_after_the_conversion_beyond_clock_skew_is_ignored_and_waited_past() -> None:
    shares = [share("sh-1", "adv-a", at=T0 + timedelta(hours=1) + MS)]
    step = on_conversion(None, conversion(code=code_of("adv-a")), directory(shares=shares))
    assert step.outputs == []
    assert step.waits.codes == {code_of("adv-a")}


def test_the_email_window_is_the_same_as_the_code_window() -> None:
    old = share("sh-1", "adv-a", channel=Channel.EMAIL, email=PROSPECT_EMAIL, at=T0 - 91 * DAY)
    step = on_conversion(None, conversion(email=PROSPECT_EMAIL), directory(shares=[old]))
    [rejected] = step.outputs
    assert (rejected.reason, rejected.matched_by, rejected.channel) == (
        "OUTSIDE_WINDOW",
        MatchedBy.EMAIL,
        Channel.EMAIL,
    )


def test_an_outside_window_code_does_not_stop_a_valid_email_claim() -> None:
    shares = [
        share("sh-a", "adv-a", at=T0 - 200 * DAY),
        share("sh-b", "adv-b", channel=Channel.LEAD_FORM, email=PROSPECT_EMAIL),
    ]
    step = on_conversion(
        None, conversion(code=code_of("adv-a"), email=PROSPECT_EMAIL), directory(shares=shares)
    )
    assert said(step.outputs) == [("adv-b", "LEAD", None), ("adv-a", "REJECTED", "OUTSIDE_WINDOW")]


@pytest.mark.parametrize(
    "fields",
    [
        {"declared": "adv-a", "email": advocate("adv-a").email_sha256},
        {"code": code_of("adv-a"), "email": advocate("adv-a").email_sha256},
    ],
)
def test_a_prospect_with_the_advocates_own_email_is_a_self_referral_without_lead(
    fields: dict[str, str],
) -> None:
    dir_ = directory(shares=[share("sh-1", "adv-a")])
    assert said(on_conversion(None, conversion(**fields), dir_).outputs) == [
        ("adv-a", "REJECTED", "SELF_REFERRAL")
    ]


def test_a_self_referral_does_not_hide_another_advocates_valid_claim() -> None:
    own_email = advocate("adv-a").email_sha256
    shares = [share("sh-b", "adv-b", channel=Channel.EMAIL, email=own_email)]
    step = on_conversion(
        None, conversion(declared="adv-a", email=own_email), directory(shares=shares)
    )
    assert said(step.outputs) == [("adv-b", "LEAD", None), ("adv-a", "REJECTED", "SELF_REFERRAL")]


def test_a_self_referral_found_after_the_lead_rejects_the_winner() -> None:
    engine_ = engine()
    engine_.conversion(conversion("cv-1", declared="adv-a"))
    engine_.conversion(conversion("cv-2", email=advocate("adv-a").email_sha256))
    assert said(engine_.outputs) == [
        ("adv-a", "LEAD", None),
        ("adv-a", "REJECTED", "SELF_REFERRAL"),
    ]


def test_a_lead_says_who_owns_the_advocate_and_which_config_decided() -> None:
    step = on_conversion(None, conversion(declared="adv-a"), directory())
    [lead] = step.outputs
    assert lead.owner_rep_id == "rep-of-adv-a"
    assert lead.config_version == 7
    assert lead.occurred_at == T0
    assert (lead.program_id, lead.prospect_id) == (PROGRAM, PROSPECT)
    assert lead.referral_id == referral_id(PROGRAM, PROSPECT)


def test_an_advocate_of_another_program_claims_nothing() -> None:
    dir_ = directory()
    dir_.add_advocate(advocate("adv-x", program_id="other-program"))
    step = on_conversion(None, conversion(declared="adv-x"), dir_)
    assert step.outputs == []
    assert not step.waits


def test_several_shares_of_one_advocate_count_as_one_claim_picked_by_the_policy() -> None:
    # adv-a's first share beats adv-b under FIRST_TOUCH, its last one under LAST_TOUCH: adv-a
    # wins both only if its share is picked by the policy.
    email = PROSPECT_EMAIL
    shares = [
        share("sh-a1", "adv-a", channel=Channel.EMAIL, email=email, at=T0 - 10 * DAY),
        share("sh-a2", "adv-a", channel=Channel.EMAIL, email=email, at=T0 - 1 * DAY),
        share("sh-b", "adv-b", channel=Channel.EMAIL, email=email, at=T0 - 5 * DAY),
    ]
    for policy in Policy:
        step = on_conversion(None, conversion(email=email), directory(shares=shares, policy=policy))
        assert said(step.outputs) == [
            ("adv-a", "LEAD", None),
            ("adv-b", "REJECTED", "ALREADY_REFERRED"),
        ]
