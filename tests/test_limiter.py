"""The limiter's maths on a fake clock, run alike in memory and by the Lua scripts in Redis.

The backends' steps and the limiter are coroutines: each test runs them on an event loop
of its own (the `run` fixture), as the worker runs them on its process's loop.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import pytest
import redis
import redis.asyncio

from chatq.errors import DeadlineExceeded, QuotaExhausted, RateLimited, UpstreamTimeout
from config import ProviderLimits, load_settings
from worker.chat.types import ChatRequest, ChatResponse
from worker.limits import Limiter, Limits, MemoryBackend, RedisBackend, estimate_request_tokens
from worker.limits.maths import (
    BUSY,
    GRANTED,
    LATE,
    LIMITED,
    OK,
    PAUSED,
    QUOTA,
    RESERVED,
    TOKENS,
    Tuning,
)

T0 = 1_700_000_000.0
NO_SLOW_START = Tuning(start=0.0)


class FakeClock:
    """Shared time that moves only when told to (or when the code under test sleeps)."""

    def __init__(self, now: float = T0):
        self.now = now
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds
        await asyncio.sleep(0)  # other coroutines run meanwhile, as in a real sleep


Run = Callable[[Awaitable[Any]], Any]


@pytest.fixture
def run() -> Iterator[Run]:
    """Runs a coroutine to its end on this test's one event loop (closed after it)."""
    loop = asyncio.new_event_loop()
    yield loop.run_until_complete
    loop.close()


@pytest.fixture(params=["memory", "redis"])
def make_backend(request, redis_url, run):
    """A factory of backends on a fake clock: in memory, or the Lua scripts in Redis
    (reached through `redis.asyncio`, on the test's loop)."""
    clients = []

    def make(clock: FakeClock, tuning: Tuning = NO_SLOW_START):
        if request.param == "memory":
            return MemoryBackend(clock=clock, tuning=tuning)
        client, aclient = redis.Redis.from_url(redis_url), redis.asyncio.Redis.from_url(redis_url)
        clients.append((client, aclient))
        return RedisBackend(client, aclient, tuning=tuning, clock=clock)

    yield make
    for client, aclient in clients:
        client.close()
        run(aclient.aclose())


class Caller:
    """Drives one backend directly: acquire and release with sensible defaults, each
    run to its end by `run`."""

    def __init__(self, backend, limits: Limits, run: Run):
        self.backend = backend
        self.limits = limits
        self.run = run
        self.n = 0

    def acquire(self, ticket=None, tokens=1.0, max_wait=1e6, lease=60.0):
        self.n += 1
        return self.run(self.backend.acquire(
            "p", self.limits, token=f"t{self.n}", tokens=tokens, lease=lease,
            max_wait=max_wait, ticket=ticket,
        ))  # fmt: skip

    def take(self, clock: FakeClock):
        """Wait on the fake clock until a call is admitted; the grant."""
        d = self.acquire()
        while d.status != GRANTED:
            clock.now += d.wait
            d = self.acquire(ticket=d.ticket)
        return d

    def release(self, decision, n, outcome=OK, **kw):
        self.run(self.backend.release(
            "p", self.limits, token=f"t{n}", outcome=outcome, granted_at=decision.at, **kw
        ))  # fmt: skip

    def pause(self, seconds: float, reason: str) -> None:
        self.run(self.backend.pause("p", seconds, reason))


def test_a_configured_rpm_spaces_calls_evenly_in_ticket_order(make_backend, run):
    clock = FakeClock()
    caller = Caller(make_backend(clock), Limits(rate=10.0), run)
    decisions = [caller.acquire() for _ in range(4)]
    assert [d.status for d in decisions] == [GRANTED, RESERVED, RESERVED, RESERVED]
    assert [round(d.wait, 6) for d in decisions] == [0.0, 0.1, 0.2, 0.3]
    clock.now += 0.1
    assert caller.acquire(ticket=decisions[1].ticket).status == GRANTED
    assert caller.acquire(ticket=decisions[3].ticket).status == RESERVED


def test_idle_time_gives_no_credit_for_a_burst(make_backend, run):
    clock = FakeClock()
    caller = Caller(make_backend(clock), Limits(rate=10.0), run)
    caller.acquire()
    clock.now += 60
    assert [d.status for d in (caller.acquire(), caller.acquire())] == [GRANTED, RESERVED]


def test_a_turn_further_than_max_wait_is_refused_and_reserves_nothing(make_backend, run):
    clock = FakeClock()
    caller = Caller(make_backend(clock), Limits(rate=1.0), run)
    caller.acquire()
    late = caller.acquire(max_wait=0.5)
    assert (late.status, round(late.wait, 6)) == (LATE, 1.0)
    assert round(caller.acquire().wait, 6) == 1.0  # the refused turn was not taken


def test_concurrency_admits_n_calls_then_waits_for_a_release(make_backend, run):
    clock = FakeClock()
    caller = Caller(make_backend(clock), Limits(concurrency=2), run)
    first, _ = caller.acquire(), caller.acquire()
    busy = caller.acquire(lease=60)
    assert (busy.status, busy.wait) == (BUSY, 60.0)
    caller.release(first, 1)
    assert caller.acquire().status == GRANTED


def test_a_lease_never_released_expires_after_its_lease(make_backend, run):
    clock = FakeClock()
    caller = Caller(make_backend(clock), Limits(concurrency=1), run)
    assert caller.acquire(lease=5).status == GRANTED
    clock.now += 4.9
    assert caller.acquire().status == BUSY
    clock.now += 0.2
    assert caller.acquire().status == GRANTED


def test_a_429_with_retry_after_pauses_every_caller_until_it_has_passed(make_backend, run):
    clock = FakeClock()
    caller = Caller(make_backend(clock), Limits(), run)
    granted = caller.acquire()
    caller.release(granted, 1, LIMITED, retry_after=2.0)
    waiting = caller.acquire()
    assert waiting.status in (PAUSED, RESERVED)
    assert waiting.wait >= 2.0


@pytest.mark.parametrize(
    ("ceiling", "calls_in_window", "learned"),
    [
        (10.0, 10, 9.0),  # a configured rate: cut to 0.9 x it
        (10.0, 4, 9.0),  # however much of it was used
        (None, 30, 27.0),  # no limit: learned from what was sent over the last second
    ],
)
def test_a_429_cuts_the_rate_it_was_sent_at(make_backend, run, ceiling, calls_in_window, learned):
    clock = FakeClock()
    backend = make_backend(clock)
    caller = Caller(backend, Limits(rate=ceiling), run)
    first = caller.acquire()
    for _ in range(calls_in_window - 1):
        clock.now += 0.001
        caller.take(clock)
    caller.release(first, 1, LIMITED)
    assert _learned(backend) == pytest.approx(learned, rel=1e-6)


def test_a_second_429_of_the_same_burst_does_not_cut_again(make_backend, run):
    clock = FakeClock()
    backend = make_backend(clock)
    caller = Caller(backend, Limits(rate=10.0), run)
    a = caller.acquire()
    b_ticket = caller.acquire().ticket
    clock.now += 0.1
    b = caller.acquire(ticket=b_ticket)
    caller.release(a, 1, LIMITED)
    cut = _learned(backend)
    caller.release(b, 3, LIMITED)
    assert _learned(backend) == cut


def test_successes_raise_the_rate_back_but_never_above_the_ceiling(make_backend, run):
    clock = FakeClock()
    backend = make_backend(clock)
    caller = Caller(backend, Limits(rate=10.0), run)
    grants = [caller.take(clock) for _ in range(10)]
    caller.release(grants[0], 1, LIMITED)
    after_cut = _learned(backend)
    assert after_cut == pytest.approx(9.0)
    rates = []
    for _ in range(100):
        d = caller.take(clock)
        caller.release(d, caller.n, OK)
        rates.append(_learned(backend))
    assert rates[0] > after_cut
    assert rates == sorted(rates)
    assert max(rates) == pytest.approx(10.0)


def test_a_cut_retimes_the_turns_already_waiting(make_backend, run):
    clock = FakeClock()
    caller = Caller(make_backend(clock), Limits(rate=10.0), run)
    first = caller.acquire()
    waiting = [caller.acquire() for _ in range(3)]
    caller.release(first, 1, LIMITED)
    again = caller.acquire(ticket=waiting[2].ticket)
    assert again.status == RESERVED
    assert again.wait > waiting[2].wait


def test_tokens_are_charged_by_estimate_and_corrected_by_real_usage(make_backend, run):
    clock = FakeClock()
    caller = Caller(make_backend(clock), Limits(tpm=6000.0), run)  # 100 a second, 1000 at once
    big = caller.acquire(tokens=1000)
    assert caller.acquire(tokens=10).status == GRANTED  # the burst was not yet spent
    over = caller.acquire(tokens=10)
    assert (over.status, round(over.wait, 6)) == (TOKENS, 0.1)
    caller.release(big, 1, OK, estimated=1000, actual=500)
    assert caller.acquire(tokens=10).status == GRANTED


def test_a_fresh_provider_with_no_limit_is_approached_with_a_slow_start(make_backend, run):
    clock = FakeClock()
    caller = Caller(make_backend(clock, Tuning(start=20.0, doubling=0.5)), Limits(), run)
    assert [round(caller.acquire().wait, 6) for _ in range(3)] == [0.0, 0.05, 0.1]
    clock.now += 10.0  # 20 doublings: no limit at all
    assert {caller.acquire().status for _ in range(50)} == {GRANTED}


def test_a_caller_waiting_in_the_slow_start_is_re_timed_when_the_rate_doubles(make_backend, run):
    clock = FakeClock()
    caller = Caller(make_backend(clock, Tuning(start=20.0, doubling=0.5)), Limits(), run)
    last = [caller.acquire() for _ in range(30)][-1]
    # Ticket 29 is due at 1.45 s at 20 a second; its caller comes back when the rate
    # doubles, and is re-timed: 19 tickets past the schedule's base at 40 a second.
    assert (last.status, round(last.wait, 6)) == (RESERVED, 0.5)
    clock.now += last.wait
    again = caller.acquire(ticket=last.ticket)
    assert (again.status, round(again.wait, 6)) == (RESERVED, 0.475)
    clock.now += again.wait
    assert caller.acquire(ticket=last.ticket).status == GRANTED


def test_a_configured_rate_is_no_slow_start_and_keeps_its_long_waits(make_backend, run):
    clock = FakeClock()
    caller = Caller(make_backend(clock, Tuning(start=20.0, doubling=0.5)), Limits(rate=20), run)
    assert round([caller.acquire() for _ in range(30)][-1].wait, 6) == 1.45


def test_status_shows_the_learned_rate_the_calls_in_flight_and_recent_429s(make_backend, run):
    clock = FakeClock()
    backend = make_backend(clock)
    caller = Caller(backend, Limits(rate=10.0), run)
    first = caller.acquire()
    caller.release(first, 1, LIMITED, retry_after=3.0)
    clock.now += 3.0
    caller.take(clock)
    status = backend.status("p", minutes=5)
    assert status["learned_rpm"] == pytest.approx(60 * 9.0, rel=1e-3)
    assert (status["in_flight"], status["recent_429s"]) == (1, 1)
    assert backend.status("other")["learned_rpm"] is None


def test_a_quota_pause_is_shared_shown_with_its_reason_and_ends(make_backend, run):
    clock = FakeClock()
    backend = make_backend(clock)
    assert backend.paused("p") is None

    run(backend.pause("p", 60.0, "kimi answered 429: quota spent"))

    left, why = backend.paused("p")
    assert 0 < left <= 60.0 and why == "kimi answered 429: quota spent"
    status = backend.status("p")
    assert status["paused_because"] == why and 0 < status["quota_paused_for"] <= 60.0
    assert backend.paused("other") is None
    run(backend.pause("p", 0.001, "short"))
    if isinstance(backend, MemoryBackend):
        clock.now += 1.0
    else:
        time.sleep(0.05)  # Redis expires the pause on its own clock
    assert backend.paused("p") is None


def test_while_a_quota_pause_lasts_acquire_answers_quota_and_takes_no_ticket(make_backend, run):
    clock = FakeClock()
    backend = make_backend(clock)
    caller = Caller(backend, Limits(rate=10.0), run)
    assert caller.acquire().status == GRANTED
    caller.pause(60.0, "kimi answered 429: quota spent")

    refused = caller.acquire()

    assert (refused.status, refused.ticket, refused.reason) == (
        QUOTA,
        None,
        "kimi answered 429: quota spent",
    )
    assert 0 < refused.wait <= 60.0
    assert caller.acquire(ticket=7).status == QUOTA  # a ticket held changes nothing
    caller.pause(0.001, "short")
    if isinstance(backend, MemoryBackend):
        clock.now += 0.01
    else:
        time.sleep(0.05)  # Redis expires the pause on its own clock
    after = caller.acquire()
    assert after.status == RESERVED  # the refusals took no turn: this is the next one
    assert round(after.wait, 6) == round(0.1 - (clock.now - T0), 6)


def _learned(backend) -> float:
    if isinstance(backend, MemoryBackend):
        return backend.states["p"].rate
    return backend.state("p").rate


# -- the limiter: waiting, calling once, reporting --------------------------------------

ANSWER = ChatResponse(model="m", content="ok", provider="openrouter", input_tokens=3)


def _limiter(clock: FakeClock, limits: dict[str, ProviderLimits], backend=None, **kw) -> Limiter:
    backend = backend or MemoryBackend(clock=clock, tuning=NO_SLOW_START)
    return Limiter(backend, lambda p: limits.get(p), lease=30, clock=clock, sleep=clock.sleep, **kw)


def answering(
    answer: object = ANSWER, *, calls: list | None = None, clock: FakeClock | None = None
) -> Callable[[], Awaitable[object]]:
    """An upstream call (async) that answers `answer`, noting in `calls` when it was made."""

    async def call() -> object:
        if calls is not None:
            calls.append(clock.now if clock is not None else None)
        return answer

    return call


def raising(
    make: Callable[[], Exception], *, calls: list | None = None, clock: FakeClock | None = None
) -> Callable[[], Awaitable[object]]:
    """An upstream call (async) that raises `make()`, noting in `calls` when it was made."""

    async def call() -> object:
        if calls is not None:
            calls.append(clock.now if clock is not None else None)
        raise make()

    return call


def test_waiting_for_a_turn_sleeps_then_makes_exactly_one_call(run):
    clock = FakeClock()
    limiter = _limiter(clock, {"openrouter": ProviderLimits(rpm=60)})
    calls: list[float] = []
    for _ in range(3):
        run(limiter.call("openrouter", answering(calls=calls, clock=clock), tokens=1,
                         deadline=T0 + 60))  # fmt: skip
    assert [round(t - T0, 6) for t in calls] == [0.0, 1.0, 2.0]


def test_no_capacity_before_the_deadline_fails_saying_so_without_a_call_or_oversleeping(run):
    clock = FakeClock()
    limiter = _limiter(clock, {"openrouter": ProviderLimits(concurrency=1)})
    run(limiter.acquire("openrouter", tokens=1, deadline=T0 + 100))  # held, never released
    calls: list[float] = []
    with pytest.raises(DeadlineExceeded, match="could not get capacity for openrouter") as caught:
        run(limiter.call("openrouter", answering(calls=calls, clock=clock), tokens=1,
                         deadline=T0 + 5))  # fmt: skip
    assert calls == []
    assert clock.now <= T0 + 5
    assert caught.value.provider == "openrouter"
    assert not caught.value.retryable


def test_a_turn_known_to_come_after_the_deadline_fails_at_once(run):
    clock = FakeClock()
    limiter = _limiter(clock, {"openrouter": ProviderLimits(rpm=1)})
    run(limiter.call("openrouter", answering(), tokens=1, deadline=T0 + 600))
    with pytest.raises(DeadlineExceeded, match=r"next turn is 60\.0s away"):
        run(limiter.call("openrouter", answering(), tokens=1, deadline=T0 + 10))
    assert clock.sleeps == []


def test_a_429_reported_by_one_caller_pauses_the_next_callers_turn(run):
    clock = FakeClock()
    limiter = _limiter(clock, {"openrouter": ProviderLimits()})

    def limited() -> RateLimited:
        return RateLimited("429", provider="openrouter", status=429, retry_after=4.0)

    with pytest.raises(RateLimited):
        run(limiter.call("openrouter", raising(limited), tokens=1, deadline=T0 + 60))
    run(limiter.call("openrouter", answering(), tokens=1, deadline=T0 + 60))
    assert clock.now >= T0 + 4.0
    assert limiter.backend.status("openrouter")["recent_429s"] == 1


def spent() -> QuotaExhausted:
    return QuotaExhausted("kimi answered 429: quota spent", provider="kimi", status=429)


def test_a_spent_quota_pauses_the_provider_so_the_next_jobs_fail_without_a_call(run):
    clock = FakeClock()
    limiter = _limiter(clock, {"kimi": ProviderLimits(concurrency=1)}, quota_pause=600)
    calls: list[float] = []

    with pytest.raises(QuotaExhausted):
        run(limiter.call("kimi", raising(spent, calls=calls, clock=clock), tokens=1,
                         deadline=T0 + 60))  # fmt: skip
    with pytest.raises(QuotaExhausted, match="paused fleet-wide for 600s more") as caught:
        run(limiter.call("kimi", answering(calls=calls, clock=clock), tokens=1,
                         deadline=T0 + 60))  # fmt: skip
    assert "quota spent" in caught.value.message and not caught.value.retryable
    assert "no call was made" in caught.value.message
    assert limiter.backend.paused("kimi")[1] == "kimi answered 429: quota spent"
    assert len(calls) == 1
    clock.now += 601  # the pause has passed; the first call's lease was given back
    assert run(limiter.call("kimi", answering(), tokens=1, deadline=clock.now + 1)) is ANSWER


def test_a_spent_quota_is_paused_before_its_lease_frees_so_no_waiter_slips_in(run):
    # A caller waiting for the one lease polls; if its poll lands as the lease frees,
    # it must already find the pause, not call an account known to be empty.
    clock = FakeClock()
    seen = []

    class Polled(MemoryBackend):
        async def release(self, provider, limits, **kw):
            await super().release(provider, limits, **kw)
            polled = await self.acquire(provider, limits, token="waiter", tokens=1, lease=30,
                                        max_wait=60, ticket=None)  # fmt: skip
            seen.append(polled.status)

    backend = Polled(clock=clock, tuning=NO_SLOW_START)
    limiter = _limiter(clock, {"kimi": ProviderLimits(concurrency=1)}, backend, quota_pause=600)
    with pytest.raises(QuotaExhausted):
        run(limiter.call("kimi", raising(spent), tokens=1, deadline=T0 + 60))
    assert seen == [QUOTA]


def test_a_failed_call_gives_its_lease_back(run):
    clock = FakeClock()
    limiter = _limiter(clock, {"openrouter": ProviderLimits(concurrency=1)})

    def times_out() -> UpstreamTimeout:
        return UpstreamTimeout("slow", provider="openrouter")

    with pytest.raises(UpstreamTimeout):
        run(limiter.call("openrouter", raising(times_out), tokens=1, deadline=T0 + 60))
    assert run(limiter.call("openrouter", answering(), tokens=1, deadline=T0 + 60)) is ANSWER
    assert clock.sleeps == []


def test_the_mock_provider_is_not_limited_unless_limits_are_configured(tmp_path):
    settings = load_settings({"CHATQ_OPENROUTER_RPM": "60"}, directory=tmp_path)
    limiter = Limiter.from_settings(settings, MemoryBackend())
    assert (limiter.guards("mock"), limiter.guards("openrouter"), limiter.guards("kimi")) == (
        False,
        True,
        True,
    )
    configured = load_settings({"CHATQ_MOCK_CONCURRENCY": "2"}, directory=tmp_path)
    assert Limiter.from_settings(configured, MemoryBackend()).guards("mock")


def test_a_lease_ends_by_the_jobs_deadline_when_that_comes_first(run):
    clock = FakeClock()
    limiter = _limiter(clock, {"ollama": ProviderLimits(concurrency=1)})
    run(limiter.acquire("ollama", tokens=1, deadline=T0 + 5))  # its worker dies holding it
    clock.now += 5 + 2
    assert run(limiter.call("ollama", answering(), tokens=1, deadline=T0 + 60)) is ANSWER


def test_the_lease_comes_from_settings(tmp_path):
    settings = load_settings({"CHATQ_TIMEOUT": "20"}, directory=tmp_path)
    assert Limiter.from_settings(settings, MemoryBackend()).lease == 50
    short = load_settings({"CHATQ_LIMIT_LEASE": "3"}, directory=tmp_path)
    assert Limiter.from_settings(short, MemoryBackend()).lease == 3


def test_waiting_for_capacity_never_holds_a_job_past_the_visibility_timeout(tmp_path, run):
    """Waits end by the job's deadline, and the broker only redelivers after deadline +
    one read timeout + a margin: a waiting job is never handed to a second worker."""
    settings = load_settings({"CHATQ_JOB_DEADLINE": "30"}, directory=tmp_path)
    clock = FakeClock()
    limiter = _limiter(clock, {"ollama": ProviderLimits(concurrency=1)})
    run(limiter.acquire("ollama", tokens=1, deadline=T0 + 1e6))
    with pytest.raises(DeadlineExceeded):
        run(limiter.call("ollama", answering(), tokens=1, deadline=T0 + settings.job_deadline))
    held = clock.now - T0
    assert held <= settings.job_deadline < settings.visibility_timeout - settings.timeout


@pytest.mark.parametrize(
    ("messages", "max_tokens", "expected"),
    [
        (["hi"], None, 1 + 4),
        (["a" * 400], 100, 100 + 4 + 100),
        (["a" * 40, "b" * 40], None, 2 * (10 + 4)),
    ],
)
def test_a_requests_estimated_size_counts_its_messages_and_the_answer_it_allows(
    messages, max_tokens, expected
):
    request = ChatRequest.parse(
        {
            "model": "m",
            "messages": [{"role": "user", "content": m} for m in messages],
            **({"max_tokens": max_tokens} if max_tokens else {}),
        }
    )
    assert estimate_request_tokens(request) == expected
