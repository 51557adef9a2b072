"""The RocksDB directory behind attribution's `Directory` port: touches indexed by code and by
email hash, duplicates ignored, profiles replaced, positions and the change log surviving a
reopen (so a restart resumes the global topics instead of re-reading them)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
from attribution_builders import PROGRAM, PROSPECT_EMAIL, T0, profile, rules, share

from referrals.contract.records import Channel
from referrals.contract.topics import ADVOCATES, SHARES
from referrals.platform.errors import ConfigError
from services.attribution.adapters.directory import RocksDirectory
from services.attribution.adapters.keys import advocate_wait, code_wait, email_wait
from services.attribution.domain.model import DictDirectory, Rules, Touch


def _open(path: Path) -> RocksDirectory:
    return RocksDirectory(path, lambda program_id: rules(program_id=program_id))


@pytest.fixture
def directory(tmp_path: Path) -> RocksDirectory:
    return _open(tmp_path / "directory")


def test_touches_are_found_by_program_and_code(directory: RocksDirectory) -> None:
    directory.add_share(share("sh-1", "adv-a", code="SPRING"))
    directory.add_share(share("sh-2", "adv-b", code="SPRING", channel=Channel.PRINT_CARD))
    directory.add_share(share("sh-3", "adv-a", code="SPRING-2"))  # a code that extends another
    found = directory.touches_by_code(PROGRAM, "SPRING")
    assert sorted(t.event_id for t in found) == ["sh-1", "sh-2"]
    assert directory.touches_by_code("other-program", "SPRING") == ()
    assert directory.touches_by_code(PROGRAM, "SPRIN") == ()


def test_a_touch_reads_back_exactly_as_the_share_said(directory: RocksDirectory) -> None:
    event = share("sh-1", "adv-a", channel=Channel.EMAIL, email=PROSPECT_EMAIL, at=T0)
    directory.add_share(event)
    assert directory.touches_by_email(PROGRAM, PROSPECT_EMAIL) == (Touch.from_share(event),)
    assert directory.touches_by_code(PROGRAM, event.referral_code) == (Touch.from_share(event),)


def test_ids_holding_separators_do_not_collide(directory: RocksDirectory) -> None:
    directory.add_share(replace(share("sh-1", "adv-a", code="B"), program_id="A\x00"))
    directory.add_share(replace(share("sh-2", "adv-b", code="\x00B"), program_id="A"))
    assert [t.event_id for t in directory.touches_by_code("A\x00", "B")] == ["sh-1"]
    assert [t.event_id for t in directory.touches_by_code("A", "\x00B")] == ["sh-2"]


def test_a_redelivered_share_adds_no_second_touch(directory: RocksDirectory) -> None:
    first = share("sh-1", "adv-a", channel=Channel.EMAIL, email=PROSPECT_EMAIL)
    assert directory.add_share(first) == [
        code_wait(PROGRAM, first.referral_code),
        email_wait(PROGRAM, PROSPECT_EMAIL),
    ]
    assert directory.add_share(first) == []  # in the same unflushed batch
    directory.mark(SHARES, 0, 1)
    assert directory.add_share(replace(first, occurred_at=T0)) == []  # after it was written
    assert len(directory.touches_by_code(PROGRAM, first.referral_code)) == 1
    assert len(directory.touches_by_email(PROGRAM, PROSPECT_EMAIL)) == 1


def test_the_latest_profile_of_an_advocate_wins(directory: RocksDirectory) -> None:
    assert directory.advocate("adv-a") is None
    assert directory.add_profile(profile("adv-a")) == [advocate_wait("adv-a")]
    directory.add_profile(profile("adv-a", owner_rep_id="rep-2"))
    found = directory.advocate("adv-a")
    assert found is not None and found.owner_rep_id == "rep-2"


def test_lookups_match_the_in_memory_reference_directory(directory: RocksDirectory) -> None:
    reference = DictDirectory(rules=[rules()])
    events = [
        share(f"sh-{n}", f"adv-{n % 3}", channel=channel, email=PROSPECT_EMAIL if n % 2 else None)
        for n, channel in enumerate(list(Channel) * 3)
    ]
    for event in events + events[:4]:
        directory.add_share(event)
        reference.add_share(event)
    directory.add_profile(profile("adv-1"))
    reference.add_profile(profile("adv-1"))
    for advocate_id in ("adv-0", "adv-1", "adv-2"):
        code = f"CODE-{advocate_id.upper()}"
        assert sorted(directory.touches_by_code(PROGRAM, code), key=_id) == sorted(
            reference.touches_by_code(PROGRAM, code), key=_id
        )
        assert directory.advocate(advocate_id) == reference.advocate(advocate_id)
    assert sorted(directory.touches_by_email(PROGRAM, PROSPECT_EMAIL), key=_id) == sorted(
        reference.touches_by_email(PROGRAM, PROSPECT_EMAIL), key=_id
    )


def test_positions_and_data_survive_a_reopen(tmp_path: Path) -> None:
    first = _open(tmp_path / "d")
    assert first.position(SHARES, 0) is None  # a first start reads from the beginning
    first.add_share(share("sh-1", "adv-a"))
    first.mark(SHARES, 0, 7)
    first.add_profile(profile("adv-a"))
    first.mark(ADVOCATES, 2, 3)
    first.close()
    again = _open(tmp_path / "d")
    assert again.position(SHARES, 0) == 7
    assert again.position(ADVOCATES, 2) == 3
    assert again.position(SHARES, 1) is None
    assert again.positions() == {SHARES: {0: 7}, ADVOCATES: {2: 3}}
    assert len(again.touches_by_code(PROGRAM, "CODE-ADV-A")) == 1
    assert again.advocate("adv-a") is not None
    assert again.add_share(share("sh-1", "adv-a")) == []  # still known after the reopen


def test_the_change_log_returns_what_arrived_after_a_watermark(directory: RocksDirectory) -> None:
    directory.add_share(share("sh-1", "adv-a", code="ONE"))
    directory.mark(SHARES, 0, 5)
    directory.add_share(share("sh-2", "adv-b", code="TWO"))
    directory.mark(SHARES, 0, 9)
    directory.add_profile(profile("adv-c"))
    directory.mark(ADVOCATES, 1, 4)
    directory.add_share(share("sh-3", "adv-c", code="THREE"))  # handed over, not yet marked
    everything = directory.changes_since({}, limit=100)
    assert everything == {
        code_wait(PROGRAM, "ONE"),
        code_wait(PROGRAM, "TWO"),
        code_wait(PROGRAM, "THREE"),
        advocate_wait("adv-c"),
    }
    later = directory.changes_since({SHARES: {0: 5}, ADVOCATES: {1: 4}}, limit=100)
    assert later == {code_wait(PROGRAM, "TWO"), code_wait(PROGRAM, "THREE")}
    assert directory.changes_since({}, limit=3) is None  # too many: the caller rescans instead


def test_rules_come_from_the_catalogue_callback(directory: RocksDirectory) -> None:
    assert directory.rules("p-9") == Rules(program_id="p-9", version=7)


def test_a_directory_held_by_another_instance_is_a_configuration_error(tmp_path: Path) -> None:
    held = _open(tmp_path / "d")
    try:
        with pytest.raises(ConfigError, match="attribution directory"):
            _open(tmp_path / "d")
    finally:
        held.close()


def _id(touch: Touch) -> str:
    return touch.event_id


def test_the_change_log_is_pruned_and_a_watermark_below_it_rescans(tmp_path: Path) -> None:
    def open_small() -> RocksDirectory:
        return RocksDirectory(
            tmp_path / "d", lambda p: rules(program_id=p), retain=100, prune_every=50
        )

    directory = open_small()
    for n in range(1, 41):  # one share per poll of 10 records: 40 change log entries
        directory.add_share(share(f"sh-{n}", "adv-a", code=f"C{n}"))
        directory.mark(SHARES, 0, n * 10)
    log = [key for key, _ in directory._scan(b"w")]
    assert len(log) == 10  # records 300..400 kept: the 10 polls ending after offset 300
    assert directory.changes_since({}, limit=1_000) is None  # below the floor: rescan
    assert directory.changes_since({SHARES: {0: 299}}, limit=1_000) is None
    recent = directory.changes_since({SHARES: {0: 380}}, limit=1_000)
    assert recent == {code_wait(PROGRAM, "C39"), code_wait(PROGRAM, "C40")}
    directory.close()
    again = open_small()  # the floor survives a restart
    assert again.changes_since({SHARES: {0: 250}}, limit=1_000) is None
    assert again.changes_since({SHARES: {0: 300}}, limit=1_000) == {
        code_wait(PROGRAM, f"C{n}") for n in range(31, 41)
    }
