"""A worker process's own cap on calls in flight (CHATQ_IN_FLIGHT): at most that many at
once, handed on first come first served, a wait bounded by the job's deadline, and a
cancelled waiter that neither keeps nor loses a slot."""

from __future__ import annotations

import asyncio

import pytest

from chatq.errors import DeadlineExceeded
from worker.limits import CallSlots


async def _call(slots: CallSlots, seen: list, name: str, hold: float, left: float = 5.0):
    await slots.take(left)
    try:
        seen.append(("start", name, slots.busy))
        await asyncio.sleep(hold)
    finally:
        slots.give_back()


def test_no_more_calls_than_slots_run_at_once_and_waiters_go_in_order():
    async def main() -> list:
        slots, seen = CallSlots(3), []
        await asyncio.gather(*(_call(slots, seen, f"c{i}", 0.02 * (1 + i % 3)) for i in range(12)))
        assert slots.busy == 0
        return seen

    seen = asyncio.run(main())
    assert [name for _, name, _ in seen] == [f"c{i}" for i in range(12)]  # first come first
    assert max(busy for *_, busy in seen) == 3
    assert all(busy <= 3 for *_, busy in seen)


def test_a_freed_slot_goes_to_a_waiter_at_once_not_after_the_others_end():
    async def main() -> float:
        slots = CallSlots(2)
        loop = asyncio.get_running_loop()
        await slots.take(1)
        await slots.take(1)  # both slots busy: one short call, one long
        began = loop.time()

        async def free_soon() -> None:
            await asyncio.sleep(0.05)
            slots.give_back()

        freeing = asyncio.ensure_future(free_soon())
        await slots.take(1)  # waits for the short call only
        await freeing
        return loop.time() - began

    assert asyncio.run(main()) < 0.5


def test_no_slot_before_the_deadline_fails_the_call_naming_the_setting():
    async def main() -> CallSlots:
        slots = CallSlots(1)
        await slots.take(1)
        with pytest.raises(DeadlineExceeded) as late:
            await slots.take(0.05, "openrouter")
        assert "CHATQ_IN_FLIGHT=1" in late.value.message
        assert late.value.provider == "openrouter"
        with pytest.raises(DeadlineExceeded):
            await slots.take(0.0)  # nothing left: refused without waiting
        slots.give_back()
        await slots.take(0.05)  # the timed-out waiters did not keep the slot
        return slots

    assert asyncio.run(main()).busy == 1


def test_a_cancelled_waiter_leaves_its_place_and_a_slot_handed_to_it_goes_on():
    async def main() -> int:
        slots = CallSlots(1)
        await slots.take(1)
        cancelled = asyncio.ensure_future(slots.take(5))
        after = asyncio.ensure_future(slots.take(5))
        await asyncio.sleep(0.01)
        slots.give_back()  # handed to `cancelled`, which is cancelled before it runs
        cancelled.cancel()
        with pytest.raises(asyncio.CancelledError):
            await cancelled
        await asyncio.wait_for(after, 1)  # the slot went on to the next waiter
        slots.give_back()
        return slots.busy

    assert asyncio.run(main()) == 0


def test_without_a_cap_nothing_is_counted_or_waited_for():
    async def main() -> int:
        slots = CallSlots(None)
        for _ in range(1000):
            await slots.take(0.0)
        slots.give_back()
        return slots.busy

    assert asyncio.run(main()) == 0
