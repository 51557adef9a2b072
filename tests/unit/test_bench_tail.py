"""`tail_in_windows`: whether a latency phase's slowest 1% came in stalls or spread out."""

from __future__ import annotations

from bench.pipeline_support import tail_in_windows


def test_a_stall_puts_the_slowest_in_few_windows_and_a_spread_does_not() -> None:
    sent = {f"w{i}": i * 0.01 for i in range(3000)}  # 30 s at 100/s
    base = {key: 100.0 + (i % 7) for i, key in enumerate(sent)}
    stalled = dict(base)
    for i in range(1500, 1530):  # 0.3 s of WONs caught in one stall
        stalled[f"w{i}"] = 400.0
    slow, share = tail_in_windows(sent, stalled)
    assert slow == 30 and share == 1.0

    spread = dict(base)
    for i in range(0, 3000, 100):  # one slow WON a second
        spread[f"w{i}"] = 400.0
    slow, share = tail_in_windows(sent, spread)
    assert slow == 30 and share == 4 / 30


def test_no_latencies_no_tail() -> None:
    assert tail_in_windows({}, {}) == (0, 0.0)
