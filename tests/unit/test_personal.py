"""`referrals export`'s document, from typed records (no Kafka): referrals grouped with their
history in order and repeats dropped, rewards with their own results, a stable JSON shape."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from referrals.contract.personal import (
    BadAdvocateId,
    PersonalData,
    ProfileState,
    _referrals,
    _rewards,
    check_id,
    to_document,
)
from referrals.contract.records import (
    AdvocateProfile,
    Channel,
    MatchedBy,
    NotificationSent,
    PayoutCommand,
    PayoutResult,
    PayoutStatus,
    ReferralStatus,
    ReferralStatusChanged,
    RewardType,
)

T0 = datetime(2026, 3, 2, 15, 0, tzinfo=UTC)


def _status(rid: str, status: ReferralStatus, minute: int) -> ReferralStatusChanged:
    return ReferralStatusChanged(
        f"st-{rid}-{status.value}", rid, "acme", "adv-1", f"prospect-{rid}", Channel.EMAIL,
        MatchedBy.CODE, status, 1, T0 + timedelta(minutes=minute),
    )  # fmt: skip


def _payout(pid: str, minute: int) -> PayoutCommand:
    return PayoutCommand(
        pid, 1, "acme", "adv-1", "r1", RewardType.GIFT_CARD, 5000, "USD", "tier-1", 1, 1,
        T0 + timedelta(minutes=minute),
    )  # fmt: skip


def test_referrals_are_grouped_in_order_and_a_repeated_status_appears_once() -> None:
    lead, won = _status("r1", ReferralStatus.LEAD, 0), _status("r1", ReferralStatus.WON, 5)
    other = _status("r0", ReferralStatus.LEAD, 1)
    [r0, r1] = _referrals([lead, other, lead, won])
    assert (r0.referral_id, r1.referral_id) == ("r0", "r1")
    assert [s.status for s in r1.history] == [ReferralStatus.LEAD, ReferralStatus.WON]
    assert (r1.program_id, r1.prospect_id) == ("acme", "prospect-r1")


def test_each_reward_carries_its_own_results_once() -> None:
    paid = PayoutResult("po-1", 1, PayoutStatus.PAID, T0 + timedelta(hours=1))
    other = PayoutResult("po-9", 1, PayoutStatus.FAILED, T0)
    [first, second] = _rewards([_payout("po-2", 3), _payout("po-1", 2)], [paid, other, paid])
    assert (first.payout.payout_id, first.results) == ("po-1", (paid,))
    assert (second.payout.payout_id, second.results) == ("po-2", ())


def test_the_document_has_a_stable_shape() -> None:
    profile = AdvocateProfile("acme", "adv-1", "a@example.com", "Alex", "0" * 64, False, True, T0)
    data = PersonalData(
        "adv-1",
        ProfileState.KNOWN,
        profile,
        _referrals([_status("r1", ReferralStatus.LEAD, 0)]),
        _rewards([_payout("po-1", 2)], []),
        (NotificationSent("n-1", "adv-1", "LEAD", "EMAIL", T0, "r1"),),
    )
    document = to_document(data)
    assert list(document) == ["advocate_id", "profile", "referrals", "rewards", "messages"]
    assert document["profile"]["email"] == "a@example.com"
    assert document["profile"]["updated_at"] == "2026-03-02T15:00:00.000Z"
    [referral] = document["referrals"]
    assert referral["status"] == "LEAD" and referral["history"][0]["matched_by"] == "CODE"
    [reward] = document["rewards"]
    assert (reward["payout_id"], reward["kind"], reward["results"]) == ("po-1", "PAYOUT", [])
    assert document["messages"][0]["notification_id"] == "n-1"
    json.dumps(document)  # JSON-ready


def test_an_erased_advocate_shows_as_erased_and_an_unknown_one_as_null() -> None:
    erased = PersonalData("adv-1", ProfileState.ERASED, None, (), (), ())
    assert to_document(erased)["profile"] == "erased"
    unknown = PersonalData("adv-1", ProfileState.UNKNOWN, None, (), (), ())
    assert to_document(unknown)["profile"] is None


@pytest.mark.parametrize("bad", ["", "  ", "x" * 257])
def test_an_impossible_advocate_id_is_refused(bad: str) -> None:
    with pytest.raises(BadAdvocateId):
        check_id(bad)
