"""A worker process's own cap on upstream calls in flight (`CHATQ_IN_FLIGHT`).

A pool thread holds a message until every job of its chunk is stored, so with one
chunk per thread a thread's next jobs start only after its slowest call, its stores
and the next message's round trip. A worker given more jobs than it may call at once
(more threads x chunk size than `CHATQ_IN_FLIGHT`) keeps the rest claimed and waiting
here: a call that ends hands its slot to the next waiting job at once, so the upstream
sees a steady number of calls rather than waves with gaps between them.

A slot is taken after the job's turn at the provider (the fleet's limits decide
whether a call may start; this only decides whether this process has room for it),
in the order the jobs asked, and waiting for it counts against the job's deadline
like any wait for capacity.
"""

from __future__ import annotations

import asyncio
import collections

from chatq.errors import DeadlineExceeded

__all__ = ["CallSlots"]


class CallSlots:
    """At most `size` calls at once, handed out first come, first served (no cap when
    `size` is None). Use on one event loop."""

    def __init__(self, size: int | None):
        self.size = size
        self.busy = 0
        self._waiters: collections.deque[asyncio.Future[None]] = collections.deque()

    async def take(self, left: float, provider: str | None = None) -> None:
        """Take a slot, waiting at most `left` seconds; `give_back` it after the call.

        Raises:
            DeadlineExceeded: no slot freed within `left` seconds (no call was made).
        """
        if self.size is None:
            return
        if self.busy < self.size:  # then nobody waits (a freed slot goes to a waiter)
            self.busy += 1
            return
        if left <= 0:
            raise self._late(left, provider)
        loop = asyncio.get_running_loop()
        slot: asyncio.Future[None] = loop.create_future()
        self._waiters.append(slot)
        timer = loop.call_later(left, _expire, slot)
        try:
            await slot
        except TimeoutError:
            raise self._late(left, provider) from None
        except asyncio.CancelledError:
            # Handed a slot just as the wait was cancelled: it goes to the next waiter.
            if slot.done() and not slot.cancelled() and slot.exception() is None:
                self.give_back()
            raise
        finally:
            timer.cancel()
            self._prune()

    def give_back(self) -> None:
        """Free a slot taken by `take`: it goes to the longest waiting caller, if any."""
        if self.size is None:
            return
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)  # the slot passes on: `busy` is unchanged
                return
        self.busy -= 1

    def _prune(self) -> None:
        while self._waiters and self._waiters[0].done():
            self._waiters.popleft()

    def _late(self, waited: float, provider: str | None) -> DeadlineExceeded:
        return DeadlineExceeded(
            f"no free call slot in this worker before the job's deadline (CHATQ_IN_FLIGHT="
            f"{self.size} calls at once; waited {max(0.0, waited):.1f}s); raise "
            "CHATQ_IN_FLIGHT, the worker's concurrency or the deadline",
            provider=provider,
        )


def _expire(slot: asyncio.Future[None]) -> None:
    if not slot.done():
        slot.set_exception(TimeoutError())
