"""The read model on disk: newest first, stable paging with an opaque token, erasure, and the
advocate's summary, applied in batches as the follower does."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from portal_builders import ADVOCATE, T0, at, status

from referrals.contract.records import AdvocateProfile, ReferralStatus
from referrals.contract.topics import ADVOCATES, STATUS
from services.api.portal.readmodel import BadPageToken, ReadModel
from services.api.portal.store import Store

S = ReferralStatus


@pytest.fixture
def model(tmp_path: Path) -> Iterator[ReadModel]:
    store = Store(tmp_path / "portal")
    yield ReadModel(store)
    store.close()


def _apply(model: ReadModel, topic: str, *records: object, key: str = ADVOCATE) -> None:
    batch = model.store.batch()
    for record in records:
        model.apply(batch, topic, key, record, T0)  # type: ignore[arg-type]
    batch.commit({(topic, 0): 1})


def _ids(model: ReadModel, size: int, token: str = "") -> tuple[list[str], str]:
    views, token = model.page(ADVOCATE, size, token)
    return [v.referral_id for v in views], token


def test_pages_are_newest_first_and_stable_while_referrals_arrive(model: ReadModel) -> None:
    _apply(model, STATUS, *(status(f"r{m}", S.LEAD, m) for m in range(5)))
    _apply(model, STATUS, status("r0", S.WON, 99))  # an update does not move it
    first, token = _ids(model, 2)
    assert first == ["r4", "r3"] and token
    _apply(model, STATUS, status("r9", S.LEAD, 50))  # newer: sorts before the first page
    second, token = _ids(model, 2, token)
    third, last = _ids(model, 2, token)
    assert (second, third, last) == (["r2", "r1"], ["r0"], "")
    assert _ids(model, 0) == (["r9", "r4", "r3", "r2", "r1", "r0"], "")
    assert _ids(model, 6) == (["r9", "r4", "r3", "r2", "r1", "r0"], "")


def test_a_token_not_handed_out_is_refused(model: ReadModel) -> None:
    for token in ("!!!", "abc"):
        with pytest.raises(BadPageToken):
            model.page(ADVOCATE, 2, token)


def test_another_advocate_with_a_longer_id_is_not_mixed_in(model: ReadModel) -> None:
    _apply(model, STATUS, status("r1", S.LEAD, 1), status("x1", S.LEAD, 2, advocate=ADVOCATE + "x"))
    assert _ids(model, 10) == (["r1"], "")
    assert [v.referral_id for v in model.current(ADVOCATE + "x")] == ["x1"]


def test_an_erased_advocate_keeps_referrals_and_program_but_no_name(model: ReadModel) -> None:
    profile = AdvocateProfile(
        "acme-b2b", ADVOCATE, "ada@example.com", "Ada", "a" * 64, False, True, T0
    )
    _apply(model, ADVOCATES, profile)
    _apply(model, STATUS, status("r1", S.WON, 1))
    known = model.summary(ADVOCATE, at(5))
    assert known is not None and (known.display_name, known.erased) == ("Ada", False)
    _apply(model, ADVOCATES, None)
    erased = model.summary(ADVOCATE, at(5))
    assert erased is not None
    assert (erased.display_name, erased.erased, erased.program_id) == ("", True, "acme-b2b")
    assert erased.referrals_total == 1
    assert b"Ada" not in b"".join(v for _, v in model.store.scan(b"a"))
    assert model.summary("nobody", at(5)) is None and not model.known("nobody")
