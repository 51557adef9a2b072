"""`stop_quietly`: a client's stop never ends the caller, except when the caller itself is
cancelled. No broker: the clients here raise what aiokafka's consumer raises."""

from __future__ import annotations

import asyncio

import pytest

from referrals.streams import kafka


class FetcherLike:
    """Stops as aiokafka's `Fetcher.close` does: cancels a task waiting out its retry
    backoff and awaits it without catching the `CancelledError`."""

    def __init__(self) -> None:
        self.stopped = False

    async def stop(self) -> None:
        backoff = asyncio.create_task(asyncio.sleep(10))
        await asyncio.sleep(0)
        backoff.cancel()
        self.stopped = True
        await backoff


class Failing:
    async def stop(self) -> None:
        raise OSError("connection reset")


class Slow:
    async def stop(self) -> None:
        await asyncio.sleep(10)


async def test_a_stray_cancellation_from_a_clients_stop_does_not_reach_the_caller() -> None:
    client = FetcherLike()
    with pytest.raises(asyncio.CancelledError):  # what the caller got before
        await FetcherLike().stop()
    await kafka.stop_quietly(client)
    assert client.stopped
    await kafka.stop_quietly(Failing())


async def test_the_caller_being_cancelled_still_cancels_it() -> None:
    task = asyncio.create_task(kafka.stop_quietly(Slow()))
    await asyncio.sleep(0.05)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_a_stop_that_hangs_is_given_up_after_the_timeout(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(kafka, "STOP_TIMEOUT_S", 0.05)
    await asyncio.wait_for(kafka.stop_quietly(Slow()), timeout=5)
