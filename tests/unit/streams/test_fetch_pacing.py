"""A consumer's fetches follow its load: quiet, a fetch answers at the first record; busy, it
waits a few ms for a fuller answer, so a busy consumer stops sending a fetch per round trip."""

from __future__ import annotations

from types import SimpleNamespace

from referrals.streams.kafka import FetchPacing


def _consumer() -> SimpleNamespace:
    return SimpleNamespace(_fetcher=SimpleNamespace(_fetch_min_bytes=1, _fetch_max_wait_ms=100))


def test_busy_waits_for_fuller_fetches_and_quiet_goes_back_to_the_first_record() -> None:
    consumer = _consumer()
    now = [0.0]
    pacing = FetchPacing(consumer, clock=lambda: now[0])  # type: ignore[arg-type]
    fetcher = consumer._fetcher

    def window(records: int) -> None:
        now[0] += FetchPacing.WINDOW_S
        pacing.observe(records)

    window(10)  # 40 records/s: quiet
    assert (fetcher._fetch_min_bytes, fetcher._fetch_max_wait_ms) == (1, 100)
    window(int(FetchPacing.BUSY_RECORDS_S * FetchPacing.WINDOW_S))  # busy
    assert pacing.busy
    assert fetcher._fetch_min_bytes == FetchPacing.BUSY_MIN_BYTES
    assert fetcher._fetch_max_wait_ms == FetchPacing.BUSY_WAIT_MS
    window(0)
    assert not pacing.busy
    assert (fetcher._fetch_min_bytes, fetcher._fetch_max_wait_ms) == (1, 100)


def test_the_rate_is_judged_over_a_whole_window_not_one_large_fetch() -> None:
    consumer = _consumer()
    now = [0.0]
    pacing = FetchPacing(consumer, clock=lambda: now[0])  # type: ignore[arg-type]
    pacing.observe(10_000)  # one large answer at once: no time has passed
    assert not pacing.busy and consumer._fetcher._fetch_min_bytes == 1


def test_busy_never_waits_longer_than_the_consumer_would_when_quiet() -> None:
    consumer = SimpleNamespace(_fetcher=SimpleNamespace(_fetch_min_bytes=1, _fetch_max_wait_ms=5))
    now = [0.0]
    pacing = FetchPacing(consumer, clock=lambda: now[0])  # type: ignore[arg-type]
    now[0] += 1.0
    pacing.observe(10_000)
    assert pacing.busy and consumer._fetcher._fetch_max_wait_ms == 5
