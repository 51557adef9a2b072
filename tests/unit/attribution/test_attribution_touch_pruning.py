"""Share touches are pruned by event time: older than the retention (longest window plus a
margin) behind the newest share, read from a time-ordered index, and matching still works."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import pytest
from attribution_builders import DAY, PROGRAM, PROSPECT_EMAIL, T0, conversion, profile, rules, share
from test_attribution_adapter_processor import NOW, harness, program_config, statuses

from referrals.contract.records import Channel, ConversionEvent
from referrals.contract.topics import ADVOCATES, CONVERSIONS, PROGRAMS, SHARES
from services.attribution.adapters import directory as directory_module
from services.attribution.adapters.directory import TOUCH_INDEXED, RocksDirectory

RETENTION_MS = 120 * 86_400_000


def _open(path: Path) -> RocksDirectory:
    return RocksDirectory(path, lambda program_id: rules(program_id=program_id))


def _keys(directory: RocksDirectory, prefix: bytes) -> list[bytes]:
    return [key for key, _ in directory._scan(prefix)]


def _add(directory: RocksDirectory, event_id: str, days_before: float) -> None:
    at = T0 - timedelta(days=days_before)
    directory.add_share(
        share(event_id, "adv-a", code="SPRING", channel=Channel.EMAIL, at=at, email=PROSPECT_EMAIL)
    )


def test_touches_past_the_retention_behind_the_newest_share_are_pruned(tmp_path: Path) -> None:
    directory = _open(tmp_path / "d")
    for event_id, days in [("old", 200), ("edge", 120.5), ("kept", 119.5), ("newest", 0)]:
        _add(directory, event_id, days)
    assert directory.prune_touches(RETENTION_MS) == 2
    by_code = directory.touches_by_code(PROGRAM, "SPRING")
    by_email = directory.touches_by_email(PROGRAM, PROSPECT_EMAIL)
    assert sorted(t.event_id for t in by_code) == ["kept", "newest"]
    assert sorted(t.event_id for t in by_email) == ["kept", "newest"]
    for prefix in (b"t", b"c", b"e", b"x"):
        assert len(_keys(directory, prefix)) == 2
    # a newer share moves the horizon (event time, not the wall clock)
    _add(directory, "newer", -1)
    assert directory.prune_touches(RETENTION_MS) == 1
    assert sorted(t.event_id for t in directory.touches_by_code(PROGRAM, "SPRING")) == [
        "newer",
        "newest",
    ]
    # a pruned share redelivered is indexed again, and pruned again at the next step
    _add(directory, "old", 200)
    assert len(directory.touches_by_code(PROGRAM, "SPRING")) == 3
    assert directory.prune_touches(RETENTION_MS) == 1
    assert len(directory.touches_by_code(PROGRAM, "SPRING")) == 2


def test_a_prune_step_reads_only_the_expired_entries(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    directory = _open(tmp_path / "d")
    for n in range(300):
        _add(directory, f"sh-{n}", 300 - n)  # one a day, the newest now
    read: list[bytes] = []
    scan = directory._scan

    def counting(prefix: bytes, start: bytes | None = None) -> Iterator[tuple[bytes, bytes]]:
        for item in scan(prefix, start):
            read.append(item[0])
            yield item

    monkeypatch.setattr(directory, "_scan", counting)
    assert directory.prune_touches(RETENTION_MS, limit=50) == 50
    assert len(read) == 51  # the 50 pruned and the first one kept
    read.clear()
    assert directory.prune_touches(RETENTION_MS) == 300 - 50 - 121
    assert len(read) == 300 - 50 - 121 + 1
    read.clear()
    assert directory.prune_touches(RETENTION_MS) == 0  # nothing due: nothing read
    assert read == []
    assert len(directory.touches_by_code(PROGRAM, "SPRING")) == 121


def test_a_directory_written_before_the_time_index_gets_it_at_open(tmp_path: Path) -> None:
    first = _open(tmp_path / "d")
    for event_id, days in [("old", 200), ("kept", 10)]:
        _add(first, event_id, days)
    first.flush()
    for key in [*_keys(first, b"x"), directory_module.NEWEST, TOUCH_INDEXED]:
        first._db.delete(key)  # as an older version left it
    first.close()
    again = _open(tmp_path / "d")
    assert len(_keys(again, b"x")) == 2
    assert again.prune_touches(RETENTION_MS) == 1
    assert [t.event_id for t in again.touches_by_code(PROGRAM, "SPRING")] == ["kept"]
    again.close()


async def test_the_processor_keeps_touches_for_the_longest_window_and_still_matches(
    tmp_path: Path,
) -> None:
    h = await harness(tmp_path)
    assert h.processor.touch_retention_ms() == (90 + 365) * 86_400_000
    h.global_record(ADVOCATES, profile("adv-a"))
    first = T0 - 500 * DAY
    h.global_record(SHARES, share("sh-old", "adv-a", at=first))
    h.global_record(SHARES, share("sh-new", "adv-a", at=T0 - 10 * DAY))
    h.punctuate(now=NOW)
    codes = h.processor.directory.touches_by_code(PROGRAM, "CODE-ADV-A")
    assert [t.event_id for t in codes] == ["sh-new"]  # 490 days behind the newest: pruned
    converted: ConversionEvent = conversion(code="CODE-ADV-A")  # in the window of sh-new
    assert statuses(h.send(CONVERSIONS, converted)) == [("adv-a", "LEAD")]


async def test_a_program_with_a_longer_window_keeps_touches_longer(tmp_path: Path) -> None:
    h = await harness(tmp_path)
    config = program_config("long-program")
    document = config.document.replace('"window_days":90', '"window_days":365')
    assert document != config.document
    digest = hashlib.sha256(document.encode()).hexdigest()
    h.global_record(PROGRAMS, replace(config, document=document, document_sha256=digest))
    assert h.processor.touch_retention_ms() == (365 + 365) * 86_400_000
    h.global_record(SHARES, share("sh-old", "adv-a", at=T0 - 600 * DAY))  # past 90 + 365
    h.global_record(SHARES, share("sh-new", "adv-a", at=T0))
    h.punctuate(now=NOW)
    assert len(h.processor.directory.touches_by_code(PROGRAM, "CODE-ADV-A")) == 2
