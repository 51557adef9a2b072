"""Delivery slots: a waiter marked urgent (a WON's thank-you) gets the next free slot before
the others; each group in arrival order; cancelled waiters never keep or lose a slot."""

from __future__ import annotations

import asyncio

from services.notifications.adapters.slots import Slots


async def _queue(slots: Slots, order: list[str], name: str, urgent: bool) -> None:
    async with slots.slot(urgent):
        order.append(name)
        await asyncio.sleep(0)


async def test_urgent_waiters_go_first_then_the_others_each_in_arrival_order() -> None:
    slots, order = Slots(1), []
    await slots.acquire()  # the only slot is busy
    jobs = [
        asyncio.create_task(_queue(slots, order, name, urgent))
        for name, urgent in (
            ("n1", False),
            ("n2", False),
            ("u1", True),
            ("n3", False),
            ("u2", True),
        )
    ]
    await asyncio.sleep(0)
    assert slots.waiting == 5
    slots.release()
    await asyncio.gather(*jobs)
    assert order == ["u1", "u2", "n1", "n2", "n3"]
    assert slots._free == 1 and slots.waiting == 0


async def test_free_slots_are_taken_at_once_and_never_more_than_the_size() -> None:
    slots, busy, most = Slots(3), 0, 0

    async def work(urgent: bool) -> None:
        nonlocal busy, most
        async with slots.slot(urgent):
            busy += 1
            most = max(most, busy)
            await asyncio.sleep(0.001)
            busy -= 1

    await asyncio.gather(*(work(i % 4 == 0) for i in range(40)))
    assert most == 3 and slots._free == 3


async def test_a_cancelled_waiter_neither_keeps_nor_loses_a_slot() -> None:
    slots = Slots(1)
    await slots.acquire()
    waiting = asyncio.create_task(slots.acquire(urgent=True))
    await asyncio.sleep(0)
    waiting.cancel()  # cancelled while queued
    await asyncio.gather(waiting, return_exceptions=True)
    granted_then_cancelled = asyncio.create_task(slots.acquire())
    await asyncio.sleep(0)
    slots.release()  # hands the slot to the waiter...
    granted_then_cancelled.cancel()  # ...which is cancelled before it resumes: passed on
    await asyncio.gather(granted_then_cancelled, return_exceptions=True)
    assert slots._free == 1 and slots.waiting == 0
    await asyncio.wait_for(slots.acquire(), 1)  # the slot is there to take
