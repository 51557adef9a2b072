"""Erasure: once an advocate is erased (a tombstone on the advocates topic), a referral claimed
for them later is REJECTED with ADVOCATE_ERASED, by code, email hash or declaration; the
referrals they already had go on; other advocates are not affected; erasing twice is erasing."""

from __future__ import annotations

from attribution_builders import (
    DAY,
    KEY,
    PROSPECT_EMAIL,
    T0,
    code_of,
    conversion,
    deal,
    engine,
    profile,
    said,
    share,
)

from referrals.contract.records import Channel, DealStage
from services.attribution.adapters.codec import ADVOCATES
from services.attribution.domain.model import DictDirectory, erased_advocate

SHARES = [
    share("sh-a", "adv-a", at=T0 - 3 * DAY),
    share("sh-b", "adv-b", channel=Channel.EMAIL, email=PROSPECT_EMAIL, at=T0 - DAY),
]


def test_the_erased_marker_holds_the_id_and_nothing_personal() -> None:
    marker = erased_advocate("adv-a")
    assert marker.erased and marker.advocate_id == "adv-a"
    assert (marker.program_id, marker.email_sha256, marker.owner_rep_id) == ("", "", None)
    assert b"example.com" not in ADVOCATES.encode(marker)
    assert ADVOCATES.decode(ADVOCATES.encode(marker)) == marker


def test_a_referral_by_code_after_the_erasure_is_rejected_advocate_erased() -> None:
    engine_ = engine(shares=SHARES)
    engine_.erase("adv-a")
    out = engine_.conversion(conversion("cv-1", code=code_of("adv-a")))
    assert said(out) == [("adv-a", "REJECTED", "ADVOCATE_ERASED")]
    assert engine_.counters["rejected_advocate_erased"] == 1


def test_a_referral_declaring_the_erased_advocate_is_rejected() -> None:
    engine_ = engine(shares=SHARES)
    engine_.erase("adv-c")
    out = engine_.deal(deal("dl-1", DealStage.OPEN, declared="adv-c"))
    assert said(out) == [("adv-c", "REJECTED", "ADVOCATE_ERASED")]


def test_a_referral_by_email_hash_after_the_erasure_is_rejected() -> None:
    engine_ = engine(shares=SHARES)
    engine_.erase("adv-b")
    out = engine_.conversion(conversion("cv-1", email=PROSPECT_EMAIL))
    assert said(out) == [("adv-b", "REJECTED", "ADVOCATE_ERASED")]


def test_a_stale_share_of_an_erased_advocate_is_rejected_for_the_erasure_not_the_window() -> None:
    engine_ = engine(shares=[share("sh-old", "adv-a", at=T0 - 200 * DAY)])
    engine_.erase("adv-a")
    out = engine_.conversion(conversion("cv-1", code=code_of("adv-a")))
    assert said(out) == [("adv-a", "REJECTED", "ADVOCATE_ERASED")]


def test_another_advocates_claim_on_the_same_prospect_wins_as_usual() -> None:
    engine_ = engine(shares=SHARES)
    engine_.erase("adv-a")
    out = engine_.conversion(conversion("cv-1", code=code_of("adv-a"), email=PROSPECT_EMAIL))
    # The code level is all rejected, so the email level's claimant is the referral's advocate.
    assert ("adv-b", "LEAD", None) in said(out)
    state = engine_.state(KEY)
    assert state is not None and state.winner is not None
    assert state.winner.advocate_id == "adv-b"


def test_a_referral_made_before_the_erasure_goes_on_to_won() -> None:
    engine_ = engine(shares=SHARES)
    assert said(engine_.conversion(conversion("cv-1", code=code_of("adv-a")))) == [
        ("adv-a", "LEAD", None)
    ]
    engine_.erase("adv-a")
    out = engine_.deal(deal("dl-1", DealStage.WON))
    assert said(out) == [("adv-a", "WON", None)]
    out = engine_.deal(deal("dl-2", DealStage.REVERSED, at=T0 + 2 * DAY))
    assert said(out) == [("adv-a", "REVERSED", None)]


def test_a_referral_waiting_for_the_profile_is_rejected_when_the_tombstone_comes() -> None:
    engine_ = engine(shares=SHARES, advocates=())
    assert engine_.conversion(conversion("cv-1", declared="adv-z")) == []  # waits for a profile
    assert said(engine_.erase("adv-z")) == [("adv-z", "REJECTED", "ADVOCATE_ERASED")]


def test_erasing_twice_changes_nothing_more() -> None:
    engine_ = engine(shares=SHARES)
    engine_.erase("adv-a")
    first = engine_.conversion(conversion("cv-1", code=code_of("adv-a")))
    assert engine_.erase("adv-a") == []
    assert engine_.conversion(conversion("cv-2", code=code_of("adv-a"), at=T0 + DAY)) == []
    assert said(first) == [("adv-a", "REJECTED", "ADVOCATE_ERASED")]


def test_a_profile_published_after_the_erasure_enrols_the_advocate_again() -> None:
    directory = DictDirectory()
    directory.erase("adv-a")
    advocate = directory.add_profile(profile("adv-a"))
    found = directory.advocate("adv-a")
    assert found == advocate and not found.erased
