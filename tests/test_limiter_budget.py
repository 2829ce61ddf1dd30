"""Pacing by a provider's rate-limit headers: an answer saying its budget is spent until
a reset pauses every caller until then, as a 429's Retry-After would, but before any 429
and without cutting the learned rate. On a fake clock, in memory and in Redis; the
coroutines run on the test's event loop (`run`)."""

from __future__ import annotations

from config import ProviderLimits
from tests import test_limiter
from tests.test_limiter import ANSWER, T0, Caller, FakeClock, _limiter, answering
from worker.chat.rate_budget import RateBudget
from worker.limits import Limits
from worker.limits.maths import OK, PAUSED, RESERVED

make_backend = test_limiter.make_backend  # the same backends: in memory, and Lua in Redis
run = test_limiter.run


def test_a_spent_budget_released_with_an_ok_pauses_every_caller_until_its_reset(make_backend, run):
    clock = FakeClock()
    backend = make_backend(clock)
    caller = Caller(backend, Limits(), run)
    granted = caller.acquire()
    caller.release(granted, 1, OK, retry_after=2.0)

    waiting = caller.acquire()
    assert waiting.status in (PAUSED, RESERVED) and waiting.wait >= 2.0 - 1e-6
    clock.now += 2.0
    assert caller.take(clock).at <= T0 + 2.0 + 1e-6
    status = backend.status("p")
    assert (status["recent_429s"], status["learned_rpm"]) == (0, None)  # no 429, no cut


def test_an_answer_saying_no_requests_remain_makes_the_next_call_wait_for_the_reset(run):
    clock = FakeClock()
    limiter = _limiter(clock, {"openrouter": ProviderLimits()})
    spent = ANSWER.model_copy(update={"budget": RateBudget(requests=0, requests_reset=2.0)})
    calls: list[float] = []
    for answer in (spent, ANSWER):
        run(limiter.call("openrouter", answering(answer, calls=calls, clock=clock),
                         tokens=1, deadline=T0 + 60))  # fmt: skip
    assert calls[1] - calls[0] >= 2.0


def test_too_few_tokens_left_for_a_call_like_this_one_waits_for_the_tokens_reset(run):
    clock = FakeClock()
    limiter = _limiter(clock, {"openrouter": ProviderLimits()})
    low = ANSWER.model_copy(update={"budget": RateBudget(tokens=200, tokens_reset=5.0)})
    run(limiter.call("openrouter", answering(low), tokens=50, deadline=T0 + 60))
    run(limiter.call("openrouter", answering(), tokens=50, deadline=T0 + 60))
    assert clock.now == T0  # 200 tokens left cover a 50-token call: no wait
    run(limiter.call("openrouter", answering(low), tokens=500, deadline=T0 + 60))
    run(limiter.call("openrouter", answering(), tokens=500, deadline=T0 + 60))
    assert clock.now >= T0 + 5.0


def test_a_budget_with_requests_left_changes_nothing(run):
    clock = FakeClock()
    limiter = _limiter(clock, {"openrouter": ProviderLimits()})
    plenty = ANSWER.model_copy(update={"budget": RateBudget(requests=9, requests_reset=60.0)})
    for _ in range(3):
        run(limiter.call("openrouter", answering(plenty), tokens=1, deadline=T0 + 60))
    assert clock.now == T0
