"""The directory's read caches and the adapter's fast key encodings: every write is seen by
the next read, the caches stay bounded, and the encodings are the bytes `json.dumps` writes."""

from __future__ import annotations

import hashlib
import json
from datetime import timedelta
from pathlib import Path

import pytest
from attribution_builders import PROGRAM, PROSPECT_EMAIL, T0, profile, rules, share

from referrals.contract.records import Channel, ReferralStatus
from services.attribution.adapters import directory as directory_module
from services.attribution.adapters.directory import RocksDirectory
from services.attribution.adapters.keys import encode_wait, referral_key
from services.attribution.domain.ids import status_id


def test_a_write_after_a_cached_read_is_seen_by_the_next_read(tmp_path: Path) -> None:
    directory = RocksDirectory(tmp_path / "d", lambda program_id: rules(program_id=program_id))
    assert directory.advocate("adv-a") is None  # an absent advocate is cached too
    assert directory.touches_by_code(PROGRAM, "SPRING") == ()
    assert directory.touches_by_email(PROGRAM, PROSPECT_EMAIL) == ()
    directory.add_profile(profile("adv-a"))
    old = T0 - timedelta(days=400)
    directory.add_share(
        share("s1", "adv-a", code="SPRING", channel=Channel.EMAIL, at=old, email=PROSPECT_EMAIL)
    )
    found = directory.advocate("adv-a")
    assert found is not None and not found.erased
    assert [t.event_id for t in directory.touches_by_code(PROGRAM, "SPRING")] == ["s1"]
    assert [t.event_id for t in directory.touches_by_email(PROGRAM, PROSPECT_EMAIL)] == ["s1"]
    directory.erase("adv-a")
    erased = directory.advocate("adv-a")
    assert erased is not None and erased.erased
    directory.add_share(share("s2", "adv-b", code="SPRING", at=T0))  # the newest share
    assert directory.prune_touches(retention_ms=86_400_000) == 1  # s1 is past the retention
    assert [t.event_id for t in directory.touches_by_code(PROGRAM, "SPRING")] == ["s2"]
    assert directory.touches_by_email(PROGRAM, PROSPECT_EMAIL) == ()
    directory.close()


def test_the_read_caches_are_bounded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(directory_module, "ADVOCATE_CACHE", 8)
    monkeypatch.setattr(directory_module, "TOUCH_CACHE", 4)
    directory = RocksDirectory(tmp_path / "d", lambda program_id: rules(program_id=program_id))
    for i in range(50):
        directory.add_profile(profile(f"adv-{i}"))
        directory.add_share(share(f"s{i}", f"adv-{i}"))
        assert directory.advocate(f"adv-{i}") is not None
        assert len(directory.touches_by_code(PROGRAM, f"CODE-ADV-{i}")) == 1
    assert len(directory._advocate_cache) == 8
    assert len(directory._touch_cache) == 4
    directory.close()


def test_keys_and_status_ids_are_the_bytes_json_writes() -> None:
    odd = ['a"b', "back\\slash", "tab\t", "del\x7f", "é", "😀", "", "plain-id_1"]
    for text in odd:
        expected = json.dumps([PROGRAM, text], separators=(",", ":"), ensure_ascii=False)
        assert referral_key(PROGRAM, text) == expected.encode()
        assert (
            encode_wait(("c", PROGRAM, text))
            == json.dumps(["c", PROGRAM, text], separators=(",", ":"), ensure_ascii=False).encode()
        )
    # status ids hash the facts' JSON: pinned, so a faster encoding cannot change them
    lead = status_id("rf-1", "adv-a", ReferralStatus.LEAD, event_id="cv-1", lead=1)
    assert lead == _hashed(["rf-1", "adv-a", "LEAD", None, None, "cv-1", 1])
    odd_one = status_id("rf-1", 'a"é', ReferralStatus.REJECTED, reason="SELF_REFERRAL")
    assert odd_one == _hashed(["rf-1", 'a"é', "REJECTED", "SELF_REFERRAL", None, None, 0])


def _hashed(facts: list[str | int | None]) -> str:
    material = json.dumps(["attribution.status.v1", *facts], separators=(",", ":"))
    return "st-" + hashlib.sha256(material.encode()).hexdigest()[:32]
