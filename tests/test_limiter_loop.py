"""The limiter on the worker's event loop: what a call costs in round trips, a quota
pause seen while a call waits, a cancelled call, and a thousand callers at once."""

from __future__ import annotations

import asyncio
import time
from collections import Counter

import pytest
import redis
import redis.asyncio

from chatq.errors import DeadlineExceeded, QuotaExhausted
from config import ProviderLimits
from tests import test_limiter
from tests.test_limiter import ANSWER, NO_SLOW_START, T0, FakeClock, _limiter, answering
from worker.chat.types import ChatResponse
from worker.limits import Limiter, MemoryBackend, RedisBackend

make_backend = test_limiter.make_backend  # the same backends: in memory, and Lua in Redis
run = test_limiter.run


def test_a_quota_pause_set_while_a_call_waits_for_its_turn_refuses_it_without_a_call(
    make_backend, run
):
    clock = FakeClock()
    limiter = _limiter(clock, {"kimi": ProviderLimits(concurrency=1)}, make_backend(clock))
    run(limiter.acquire("kimi", tokens=1, deadline=T0 + 100))  # held: the next call waits
    calls: list[float] = []

    async def pause_once_the_call_waits() -> None:
        while not clock.sleeps:
            await asyncio.sleep(0)
        await limiter.backend.pause("kimi", 600, "kimi answered 429: quota spent")

    async def both() -> list:
        waiting = limiter.call("kimi", answering(calls=calls, clock=clock), tokens=1,
                               deadline=T0 + 60)  # fmt: skip
        return await asyncio.gather(waiting, pause_once_the_call_waits(), return_exceptions=True)

    refused, _ = run(both())

    assert isinstance(refused, QuotaExhausted), refused
    assert "its quota ran out (kimi answered 429: quota spent); no call was made" in str(refused)
    assert calls == []
    assert clock.sleeps  # it was refused while waiting, not before


def test_a_cancelled_call_gives_its_lease_back(run):
    clock = FakeClock()
    limiter = _limiter(clock, {"openrouter": ProviderLimits(concurrency=1)})

    async def hangs() -> object:
        await asyncio.Event().wait()

    async def cancel_while_calling() -> None:
        task = asyncio.ensure_future(limiter.call("openrouter", hangs, tokens=1, deadline=T0 + 60))
        await asyncio.sleep(0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    run(cancel_while_calling())
    assert limiter.backend.status("openrouter")["in_flight"] == 0
    assert run(limiter.call("openrouter", answering(), tokens=1, deadline=T0 + 60)) is ANSWER


class Counting:
    """A backend that counts the steps asked of it, then does them (each a round trip
    to Redis in a fleet)."""

    def __init__(self, backend):
        self.backend = backend
        self.tuning = backend.tuning
        self.steps: Counter[str] = Counter()

    async def acquire(self, *args, **kw):
        self.steps["acquire"] += 1
        return await self.backend.acquire(*args, **kw)

    async def release(self, *args, **kw):
        self.steps["release"] += 1
        return await self.backend.release(*args, **kw)

    async def pause(self, *args, **kw):
        self.steps["pause"] += 1
        return await self.backend.pause(*args, **kw)

    def paused(self, *args, **kw):
        self.steps["paused"] += 1
        return self.backend.paused(*args, **kw)

    def status(self, *args, **kw):
        self.steps["status"] += 1
        return self.backend.status(*args, **kw)


def test_a_call_admitted_at_once_costs_the_backend_one_acquire_and_one_release(make_backend, run):
    clock = FakeClock()
    backend = Counting(make_backend(clock))
    limiter = _limiter(clock, {"openrouter": ProviderLimits(concurrency=4, rpm=600)}, backend)

    assert run(limiter.call("openrouter", answering(), tokens=1, deadline=T0 + 60)) is ANSWER

    assert backend.steps == {"acquire": 1, "release": 1}


def test_a_thousand_callers_waiting_on_a_concurrency_of_10_all_finish_never_above_10(redis_url):
    """The worker's way: many coroutines on one loop, one Redis between them (real time)."""
    in_flight, peak, answered = 0, 0, 0

    async def upstream() -> ChatResponse:
        nonlocal in_flight, peak, answered
        in_flight += 1
        peak = max(peak, in_flight)
        await asyncio.sleep(0.002)
        in_flight -= 1
        answered += 1
        return ANSWER

    async def thousand(backend: RedisBackend) -> list:
        limits = {"openrouter": ProviderLimits(concurrency=10)}
        limiter = Limiter(backend, limits.get, lease=30)
        deadline = time.monotonic() + 60
        calls = (limiter.call("openrouter", upstream, tokens=1, deadline=deadline)
                 for _ in range(1000))  # fmt: skip
        return await asyncio.gather(*calls)

    async def scenario() -> list:
        pool = redis.asyncio.BlockingConnectionPool.from_url(redis_url, max_connections=16)
        aclient = redis.asyncio.Redis(connection_pool=pool)
        try:
            return await thousand(RedisBackend(client, aclient, tuning=NO_SLOW_START))
        finally:
            await aclient.aclose()
            await pool.aclose()

    client = redis.Redis.from_url(redis_url)
    try:
        answers = asyncio.run(scenario())
        status = RedisBackend(client).status("openrouter")
    finally:
        client.close()
    assert len(answers) == answered == 1000
    assert 1 < peak <= 10  # the calls overlapped, never more than ten at once
    assert status["in_flight"] == 0  # every lease given back


def test_an_unlimited_provider_is_called_without_the_backend(run):
    clock = FakeClock()
    backend = Counting(MemoryBackend(clock=clock))
    limiter = _limiter(clock, {}, backend)
    assert run(limiter.call("mock", answering(), tokens=1, deadline=T0 + 60)) is ANSWER
    assert backend.steps == {}


def test_a_turn_asked_for_early_is_the_one_the_first_call_uses(make_backend, run):
    """A job asks for its first turn beside its claim: the call then costs no second
    acquire, and its lease goes back when it ends."""
    clock = FakeClock()
    backend = Counting(make_backend(clock))
    limiter = _limiter(clock, {"openrouter": ProviderLimits(concurrency=1)}, backend)

    async def early_then_call() -> object:
        early = limiter.ask_early("openrouter", tokens=1, deadline=T0 + 60)
        await asyncio.sleep(0)  # the claim's round trip, in the job
        answer = await limiter.call("openrouter", answering(), tokens=1, deadline=T0 + 60,
                                    early=early)  # fmt: skip
        await limiter.drain()  # the release runs behind the answer
        return answer

    assert run(early_then_call()) is ANSWER
    assert backend.steps == {"acquire": 1, "release": 1}
    assert backend.backend.status("openrouter")["in_flight"] == 0


def test_a_success_is_answered_without_waiting_for_its_release(make_backend, run):
    """The answer goes on to be stored while the lease goes back (both commands then
    share a pipeline); `drain` waits for the release, which frees the lease."""
    clock = FakeClock()
    backend = Counting(make_backend(clock))
    limiter = _limiter(clock, {"openrouter": ProviderLimits(concurrency=1)}, backend)
    unblock = asyncio.Event()
    release = backend.release

    async def slow_release(*args, **kw):
        await unblock.wait()
        return await release(*args, **kw)

    backend.release = slow_release

    async def call_then_drain() -> tuple:
        # Bounded: a call that awaited its release would wait here for good.
        answer = await asyncio.wait_for(
            limiter.call("openrouter", answering(), tokens=1, deadline=T0 + 60), 5
        )
        held = backend.backend.status("openrouter")["in_flight"]
        unblock.set()
        await limiter.drain()
        return answer, held, backend.backend.status("openrouter")["in_flight"]

    assert run(call_then_drain()) == (ANSWER, 1, 0)


def test_no_call_is_begun_in_the_last_moments_before_the_deadline(run):
    """A lease that frees a moment before a waiting job's deadline is not taken: the
    call could not be answered in time and would be paid for all the same."""
    clock = FakeClock()
    limiter = _limiter(clock, {"kimi": ProviderLimits(concurrency=1)})
    held = run(limiter.acquire("kimi", tokens=1, deadline=T0 + 100))
    calls: list[float] = []

    async def both() -> list:
        waiting = asyncio.ensure_future(limiter.call(
            "kimi", answering(calls=calls, clock=clock), tokens=1, deadline=T0 + 1
        ))  # fmt: skip
        # The lease frees within the last quarter second of the waiting job's deadline.
        while clock.now < T0 + 0.75 and not waiting.done():
            await asyncio.sleep(0)
        await limiter._release(held, "ok")
        return await asyncio.gather(waiting, return_exceptions=True)

    (refused,) = run(both())
    assert isinstance(refused, DeadlineExceeded), refused
    assert "could not get capacity for kimi" in str(refused)
    assert calls == []


def test_a_turn_asked_for_early_and_not_used_is_given_back(make_backend, run):
    """The claim said the job already succeeded, or runs elsewhere: its turn frees at
    once for the next job, even at a concurrency of one."""
    clock = FakeClock()
    limiter = _limiter(clock, {"openrouter": ProviderLimits(concurrency=1)}, make_backend(clock))

    async def early_then_forgo() -> None:
        early = limiter.ask_early("openrouter", tokens=1, deadline=T0 + 60)
        await early  # granted
        assert limiter.backend.status("openrouter")["in_flight"] == 1
        await limiter.forgo(early)

    run(early_then_forgo())
    assert limiter.backend.status("openrouter")["in_flight"] == 0
    assert run(limiter.call("openrouter", answering(), tokens=1, deadline=T0 + 60)) is ANSWER


def test_a_turn_still_waited_for_when_forgone_is_given_back_once_granted(make_backend, run):
    """Not cancelled: its grant may be in the reply just read. No lease is left held."""
    clock = FakeClock()
    limiter = _limiter(clock, {"openrouter": ProviderLimits(concurrency=1)}, make_backend(clock))
    held = run(limiter.acquire("openrouter", tokens=1, deadline=T0 + 100))  # the only lease

    async def forgo_while_waiting() -> None:
        early = limiter.ask_early("openrouter", tokens=1, deadline=T0 + 60)
        while not clock.sleeps:  # it found no free lease and waits
            await asyncio.sleep(0)
        await limiter.forgo(early)
        await limiter._release(held, "ok")  # the lease frees: the early wait is granted
        await early
        for _ in range(10):  # and gives it back at once
            await asyncio.sleep(0)

    run(forgo_while_waiting())
    assert limiter.backend.status("openrouter")["in_flight"] == 0


def test_an_unguarded_provider_asks_for_no_early_turn(run):
    clock = FakeClock()
    limiter = _limiter(clock, {}, Counting(MemoryBackend(clock=clock)))
    assert limiter.ask_early("mock", tokens=1, deadline=T0 + 60) is None
    run(limiter.forgo(None))
