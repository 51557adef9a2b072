"""Every status and every reason code the services write has its own plain sentence.

The codes come from the services' code (attribution's and rewards' Reason enums) and from the
contract's list, so a code added to either without a sentence fails here."""

from __future__ import annotations

import pytest

from referrals.contract.records import ReferralStatus as S
from services.api.portal.explain import BY_REASON, BY_STATUS, explain
from services.attribution.domain.state import Reason as AttributionReason
from services.rewards.domain.ledger import OWN_REVERSALS
from services.rewards.domain.ledger import Reason as RewardsReason

CONTRACT = {
    S.REJECTED: {
        "SELF_REFERRAL",
        "ALREADY_REFERRED",
        "OUTSIDE_WINDOW",
        "PROGRAM_ENDED",
        "DENIED",
        "ADVOCATE_ERASED",
    },
    S.REWARD_HELD: {
        "NEEDS_APPROVAL",
        "CAP_REACHED",
        "TAX_INFO_REQUIRED",
        "MISSING_AMOUNT",
        "CURRENCY_MISMATCH",
        "FRAUD_REVIEW",
        "PROGRAM_PAUSED",
    },
    S.REVERSED: {"REWARD_CANCELLED", "CANCELLED", "CLAWED_BACK"},
}


def _status_of_rewards_reason(reason: RewardsReason) -> S:
    if reason in OWN_REVERSALS:
        return S.REVERSED
    return S.REJECTED if reason is RewardsReason.DENIED else S.REWARD_HELD


def _codes() -> set[tuple[S, str]]:
    codes = {(S.REJECTED, r.value) for r in AttributionReason}
    codes |= {(_status_of_rewards_reason(r), r.value) for r in RewardsReason}
    codes |= {(status, r) for status, reasons in CONTRACT.items() for r in reasons}
    return codes


def _one_sentence(text: str) -> bool:
    body = text[:-1]
    return text.endswith(".") and "\n" not in text and ". " not in body and len(text) < 240


@pytest.mark.parametrize("status", list(S))
def test_every_status_has_a_sentence(status: S) -> None:
    assert status in BY_STATUS
    assert _one_sentence(explain(status, None))


@pytest.mark.parametrize(("status", "reason"), sorted(_codes()))
def test_every_reason_code_has_its_own_sentence(status: S, reason: str) -> None:
    assert (status, reason) in BY_REASON, f"no sentence for {status} {reason}"
    sentence = explain(status, reason)
    assert _one_sentence(sentence)
    assert reason not in sentence  # words for people, not codes


def test_sentences_say_why_no_credit_and_what_releases_a_hold() -> None:
    assert explain(S.REWARD_HELD, "FRAUD_REVIEW") == (
        "Held for review: more deals were won for you in one day than the program allows;"
        " a program manager will approve or decline it."
    )
    assert "tax form is on file" in explain(S.REWARD_HELD, "TAX_INFO_REQUIRED")
    assert "active again" in explain(S.REWARD_HELD, "PROGRAM_PAUSED")
    for (status, _), sentence in BY_REASON.items():
        if status is S.REJECTED:
            assert sentence.startswith("Not credited")


def test_finances_free_text_reason_is_quoted_in_a_generic_sentence() -> None:
    sentence = explain(S.PAYOUT_FAILED, "account closed")
    assert "(account closed)" in sentence and "our team is on it" in sentence


def test_an_unknown_code_gets_its_status_sentence_with_the_reason() -> None:
    assert explain(S.REJECTED, "NEW_CODE") == (
        "This referral was not accepted, so it earns no reward (reason: NEW_CODE)."
    )
