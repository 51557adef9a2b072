"""The bench's reading of py-spy's raw profiles: a sample whose frame names came out torn
(`--nonblocking` reads the process's memory while it runs, so a name can hold bytes that are
not UTF-8) is counted under a replaced name, not the end of the whole bench run."""

from __future__ import annotations

from pathlib import Path

from bench.pipeline_support import top_own, top_total


def test_a_torn_frame_name_is_counted_rather_than_failing_the_read(tmp_path: Path) -> None:
    raw = tmp_path / "rewards.txt"
    raw.write_bytes(
        b"main (services/rewards/app.py:25);process (services/rewards/x.py:1) 3\n"
        b"main (services/rewards/app.py:25);tor\xfdn (services/rewards/y.py:2) 1\n"
    )
    total, top = top_own(raw)
    assert total == 4
    assert dict(top) == {
        "process (services/rewards/x.py:1)": 75.0,
        "tor\ufffdn (services/rewards/y.py:2)": 25.0,
    }
    assert ("process (services/rewards/x.py:1)", 75.0) in top_total(raw)
