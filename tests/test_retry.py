"""The backoff maths and the loop that owns every retry, on a fake clock (nothing sleeps).

The loop is a coroutine; each test runs it to its end with `asyncio.run`."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pytest

from chatq.errors import (
    ChatqError,
    DeadlineExceeded,
    InvalidRequest,
    MalformedResponse,
    ProviderNotFound,
    RateLimited,
    RetryAfterTooLong,
    UpstreamError,
    UpstreamTimeout,
    UpstreamUnavailable,
)
from config import load_settings
from worker.retry import RetryPolicy, backoff_delay, run_with_retries

#: Room for every attempt: no test below hits the deadline unless it means to.
ROOMY = RetryPolicy(max_attempts=6, backoff_base=1.0, backoff_max=60.0, deadline=1e6)
ANSWER = "the answer"


class FakeClock:
    """Monotonic time that moves only when the code under test sleeps."""

    def __init__(self, now: float = 1000.0):
        self.now = now
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


class Upstream:
    """A `call` (async) that raises the scripted errors in turn, then answers.

    Each script item is a factory, so every call raises a fresh error; with `forever`
    the call fails that way once the script is used up.
    """

    def __init__(
        self,
        *script: Callable[[], ChatqError],
        forever: Callable[[], ChatqError] | None = None,
    ):
        self.script = list(script)
        self.forever = forever
        self.deadlines: list[float] = []
        self.raised: list[ChatqError] = []

    @property
    def calls(self) -> int:
        return len(self.deadlines)

    async def __call__(self, deadline: float) -> str:
        self.deadlines.append(deadline)
        make = self.script.pop(0) if self.script else self.forever
        if make is None:
            return ANSWER
        error = make()
        self.raised.append(error)
        raise error


def run(
    upstream: Upstream,
    policy: RetryPolicy = ROOMY,
    *,
    clock: FakeClock | None = None,
    started: float | None = None,
    rand: Callable[[], float] = lambda: 0.5,
    on_retry: Callable[[ChatqError, int, float], None] | None = None,
    paced: bool = False,
) -> tuple[str, int]:
    clock = clock or FakeClock()
    return asyncio.run(
        run_with_retries(
            upstream,
            policy,
            started=clock() if started is None else started,
            clock=clock,
            sleep=clock.sleep,
            rand=rand,
            on_retry=on_retry,
            paced=paced,
        )
    )


def timeout() -> ChatqError:
    return UpstreamTimeout("read timed out", provider="ollama")


def unavailable() -> ChatqError:
    return UpstreamUnavailable("connection refused", provider="ollama")


def server_error() -> ChatqError:
    return UpstreamError("HTTP 500", provider="openrouter", status=500)


def malformed() -> ChatqError:
    return MalformedResponse("not JSON", provider="kimi")


def rate_limited(retry_after: float | None = None) -> Callable[[], ChatqError]:
    def make() -> ChatqError:
        return RateLimited("HTTP 429", provider="openrouter", status=429, retry_after=retry_after)

    return make


# backoff_delay


@pytest.mark.parametrize(
    ("attempt", "base", "cap", "rand", "expected"),
    [
        (1, 1.0, 60.0, 0.0, 0.0),
        (1, 1.0, 60.0, 0.5, 0.5),
        (1, 1.0, 60.0, 1.0, 1.0),
        (2, 1.0, 60.0, 1.0, 2.0),
        (3, 1.0, 60.0, 0.5, 2.0),
        (3, 1.0, 60.0, 1.0, 4.0),
        (4, 0.5, 60.0, 1.0, 4.0),
        (6, 1.0, 60.0, 1.0, 32.0),
        (10, 0.0, 60.0, 1.0, 0.0),
    ],
)
def test_backoff_is_exponential_with_full_jitter(attempt, base, cap, rand, expected):
    assert backoff_delay(attempt, base=base, cap=cap, rand=lambda: rand) == expected


@pytest.mark.parametrize(
    ("attempt", "base", "cap", "rand", "expected"),
    [
        (7, 1.0, 60.0, 1.0, 60.0),
        (7, 1.0, 60.0, 0.5, 30.0),
        (3, 2.0, 5.0, 1.0, 5.0),
        (50, 1.0, 60.0, 1.0, 60.0),
        (2000, 0.001, 0.01, 1.0, 0.01),
    ],
)
def test_backoff_never_exceeds_its_cap(attempt, base, cap, rand, expected):
    assert backoff_delay(attempt, base=base, cap=cap, rand=lambda: rand) == expected


@pytest.mark.parametrize(
    ("rand", "retry_after", "expected"),
    [
        (0.5, 3.0, 3.0),  # above the jittered 2s: Retry-After wins
        (0.5, 1.0, 2.0),  # below it: the jittered wait stands
        (0.5, 0.0, 2.0),
        (0.0, 0.25, 0.25),
        (1.0, 90.0, 90.0),  # a floor, not capped by backoff_max
        (0.5, None, 2.0),
    ],
)
def test_retry_after_is_the_floor_of_the_backoff(rand, retry_after, expected):
    delay = backoff_delay(3, base=1.0, cap=60.0, retry_after=retry_after, rand=lambda: rand)
    assert delay == expected


# run_with_retries: how many calls


@pytest.mark.parametrize("max_attempts", [1, 2, 3, 6, 10])
@pytest.mark.parametrize("failure", [timeout, unavailable, server_error, rate_limited(0.5)])
def test_an_always_failing_job_makes_max_attempts_calls_and_no_more(max_attempts, failure):
    upstream = Upstream(forever=failure)
    policy = replace(ROOMY, max_attempts=max_attempts)
    with pytest.raises(ChatqError) as caught:
        run(upstream, policy, rand=lambda: 1.0)
    assert upstream.calls == max_attempts
    assert caught.value.facts["attempts"] == max_attempts


@pytest.mark.parametrize("failures", [0, 1, 2, 5])
def test_a_success_returns_the_result_and_the_calls_it_took(failures):
    upstream = Upstream(*[timeout, unavailable, server_error, rate_limited(), malformed][:failures])
    assert run(upstream) == (ANSWER, failures + 1)
    assert upstream.calls == failures + 1


def test_a_success_on_the_last_allowed_call_still_counts():
    upstream = Upstream(timeout, timeout)
    assert run(upstream, replace(ROOMY, max_attempts=3)) == (ANSWER, 3)


@pytest.mark.parametrize(
    "make",
    [
        lambda: InvalidRequest("a chat request needs a model", field="model"),
        lambda: ProviderNotFound("provider 'kimi' is not registered", provider="kimi"),
        lambda: UpstreamError("HTTP 401", provider="openrouter", status=401),
        lambda: UpstreamError("HTTP 400", provider="openrouter", status=400),
        lambda: UpstreamError("HTTP 404", provider="opencode", status=404),
        lambda: UpstreamError("HTTP 500", status=500, should_retry=False),
        lambda: RateLimited("HTTP 429", status=429, should_retry=False),
    ],
    ids=["invalid", "not-found", "401", "400", "404", "500-told-not-to", "429-told-not-to"],
)
def test_a_non_retryable_error_makes_one_call_and_is_raised_as_is(make):
    upstream = Upstream(make, forever=make)
    clock = FakeClock()
    with pytest.raises(ChatqError) as caught:
        run(upstream, clock=clock)
    assert caught.value is upstream.raised[0]
    assert caught.value.facts["attempts"] == 1
    assert upstream.calls == 1
    assert clock.sleeps == []


@pytest.mark.parametrize(
    "make",
    [
        lambda: UpstreamError("HTTP 500", status=500),
        lambda: UpstreamError("HTTP 502", status=502),
        lambda: UpstreamError("HTTP 408", status=408),
        lambda: UpstreamError("HTTP 409", status=409),
        lambda: UpstreamError("HTTP 400", status=400, should_retry=True),
        rate_limited(),
        timeout,
        unavailable,
        malformed,
    ],
    ids=["500", "502", "408", "409", "400-told-to", "429", "timeout", "unavailable", "malformed"],
)
def test_a_retryable_error_is_tried_again(make):
    upstream = Upstream(make)
    assert run(upstream) == (ANSWER, 2)


def test_a_malformed_body_is_tried_three_times_at_most():
    upstream = Upstream(forever=malformed)
    with pytest.raises(MalformedResponse, match="gave up after 3 calls"):
        run(upstream, replace(ROOMY, max_attempts=10))
    assert upstream.calls == MalformedResponse.max_calls == 3


def test_the_malformed_cap_counts_malformed_bodies_only():
    upstream = Upstream(malformed, timeout, malformed, unavailable, forever=malformed)
    with pytest.raises(MalformedResponse, match="gave up after 5 calls"):
        run(upstream, replace(ROOMY, max_attempts=10))
    assert upstream.calls == 5


def test_max_attempts_below_the_malformed_cap_wins():
    upstream = Upstream(forever=malformed)
    with pytest.raises(MalformedResponse, match="gave up after 2 calls"):
        run(upstream, replace(ROOMY, max_attempts=2))
    assert upstream.calls == 2


# run_with_retries: the error that ends a job


def test_spent_attempts_raise_the_last_failure_saying_how_many_calls_were_made():
    upstream = Upstream(timeout, unavailable, forever=server_error)
    with pytest.raises(UpstreamError) as caught:
        run(upstream, replace(ROOMY, max_attempts=3))
    error = caught.value
    assert type(error) is UpstreamError
    assert "HTTP 500" in error.message
    assert "gave up after 3 calls" in error.message
    assert (error.status, error.provider, error.facts["attempts"]) == (500, "openrouter", 3)


def test_a_single_allowed_call_says_one_call():
    with pytest.raises(UpstreamTimeout, match=r"gave up after 1 call\)"):
        run(Upstream(forever=timeout), replace(ROOMY, max_attempts=1))


# run_with_retries: waits


def test_retry_after_is_the_floor_of_every_wait():
    clock = FakeClock()
    upstream = Upstream(rate_limited(7.0), rate_limited(0.5), rate_limited(None))
    assert run(upstream, clock=clock, rand=lambda: 1.0) == (ANSWER, 4)
    # Ceilings 1, 2, 4 at rand 1.0: Retry-After 7 lifts the first; 0.5 is below the second.
    assert clock.sleeps == [7.0, 2.0, 4.0]


def test_a_paced_job_leaves_the_wait_after_a_429_to_the_fleet_limiter():
    # The limiter pauses every caller until the Retry-After has passed; a backoff on top
    # would only leave this job idle. Other failures still back off.
    clock = FakeClock()
    upstream = Upstream(rate_limited(7.0), rate_limited(None), timeout)
    assert run(upstream, clock=clock, rand=lambda: 1.0, paced=True) == (ANSWER, 4)
    assert clock.sleeps == [0.0, 0.0, 4.0]


def test_a_paced_job_still_refuses_a_retry_after_above_the_limit():
    upstream = Upstream(rate_limited(301.0))
    with pytest.raises(RetryAfterTooLong):
        run(upstream, clock=FakeClock(), paced=True)


def test_waits_follow_the_backoff_of_each_attempt():
    clock = FakeClock()
    upstream = Upstream(timeout, timeout, timeout, timeout)
    policy = replace(ROOMY, backoff_base=0.5, backoff_max=3.0)
    run(upstream, policy, clock=clock, rand=lambda: 0.5)
    assert clock.sleeps == [0.25, 0.5, 1.0, 1.5]


def test_a_retry_after_above_the_limit_fails_at_once():
    clock = FakeClock()
    upstream = Upstream(forever=rate_limited(301.0))
    with pytest.raises(RetryAfterTooLong) as caught:
        run(upstream, replace(ROOMY, retry_after_max=300.0), clock=clock)
    error = caught.value
    assert error.retry_after == 301.0
    assert "CHATQ_RETRY_AFTER_MAX" in error.message
    assert "openrouter" in error.message
    assert error.facts["attempts"] == 1
    assert upstream.calls == 1
    assert clock.sleeps == []


def test_a_retry_after_at_the_limit_is_waited_out():
    clock = FakeClock()
    upstream = Upstream(rate_limited(300.0))
    assert run(upstream, replace(ROOMY, retry_after_max=300.0), clock=clock) == (ANSWER, 2)
    assert clock.sleeps == [300.0]


# run_with_retries: the deadline


def test_the_deadline_given_to_each_call_is_the_jobs_start_plus_the_policy_deadline():
    clock = FakeClock(now=530.0)
    upstream = Upstream(timeout, timeout)
    run(upstream, replace(ROOMY, deadline=900.0), clock=clock, started=500.0)
    assert upstream.deadlines == [1400.0, 1400.0, 1400.0]


def test_the_job_starts_now_when_no_start_is_given():
    clock = FakeClock(now=42.0)
    upstream = Upstream()
    policy = replace(ROOMY, deadline=10.0)
    asyncio.run(run_with_retries(upstream, policy, clock=clock, sleep=clock.sleep))
    assert upstream.deadlines == [52.0]


def test_a_wait_that_would_cross_the_deadline_raises_deadline_exceeded_instead():
    clock = FakeClock(now=0.0)
    upstream = Upstream(forever=timeout)
    policy = replace(ROOMY, backoff_base=4.0, deadline=10.0)
    with pytest.raises(DeadlineExceeded, match="deadline of 10s") as caught:
        run(upstream, policy, clock=clock, rand=lambda: 1.0)
    # Waits of 4s then 8s: the second would end at 12s, past the 10s deadline.
    assert clock.sleeps == [4.0]
    assert upstream.calls == 2
    assert caught.value.facts["attempts"] == 2


def test_a_retry_after_past_the_deadline_raises_deadline_exceeded_without_waiting():
    clock = FakeClock()
    upstream = Upstream(forever=rate_limited(20.0))
    with pytest.raises(DeadlineExceeded, match="HTTP 429"):
        run(upstream, replace(ROOMY, deadline=10.0), clock=clock)
    assert clock.sleeps == []
    assert upstream.calls == 1


def test_a_job_whose_deadline_has_passed_makes_no_call():
    clock = FakeClock(now=2000.0)
    upstream = Upstream()
    with pytest.raises(DeadlineExceeded) as caught:
        run(upstream, replace(ROOMY, deadline=900.0), clock=clock, started=1000.0)
    assert upstream.calls == 0
    assert caught.value.facts["attempts"] == 0


@pytest.mark.parametrize("rand", [0.1, 0.5, 1.0])
@pytest.mark.parametrize("deadline", [3.0, 30.0, 300.0])
def test_no_wait_ever_ends_past_the_deadline(rand, deadline):
    clock = FakeClock(now=0.0)
    upstream = Upstream(forever=unavailable)
    policy = replace(ROOMY, max_attempts=1000, backoff_max=20.0, deadline=deadline)
    with pytest.raises(DeadlineExceeded):
        run(upstream, policy, clock=clock, rand=lambda: rand)
    assert clock.sleeps
    assert clock.now < deadline


# run_with_retries: on_retry


def test_on_retry_is_told_the_error_the_attempt_and_the_wait_before_each_wait():
    clock = FakeClock()
    told: list[tuple[ChatqError, int, float]] = []
    upstream = Upstream(timeout, rate_limited(3.0))
    run(upstream, clock=clock, rand=lambda: 0.0, on_retry=lambda *args: told.append(args))
    assert told == [(upstream.raised[0], 1, 0.0), (upstream.raised[1], 2, 3.0)]
    assert [wait for _, _, wait in told] == clock.sleeps


def test_on_retry_is_not_told_of_the_failure_that_ends_the_job():
    told: list[int] = []
    with pytest.raises(UpstreamTimeout):
        run(
            Upstream(forever=timeout),
            replace(ROOMY, max_attempts=3),
            on_retry=lambda error, attempt, wait: told.append(attempt),
        )
    assert told == [1, 2]


# RetryPolicy


def test_the_policy_is_read_from_settings(tmp_path: Path):
    settings = load_settings(
        {
            "CHATQ_MAX_ATTEMPTS": "4",
            "CHATQ_BACKOFF_BASE": "0.5",
            "CHATQ_BACKOFF_MAX": "30",
            "CHATQ_RETRY_AFTER_MAX": "120",
            "CHATQ_JOB_DEADLINE": "600",
        },
        directory=tmp_path,
    )
    assert RetryPolicy.from_settings(settings) == RetryPolicy(
        max_attempts=4, backoff_base=0.5, backoff_max=30.0, retry_after_max=120.0, deadline=600.0
    )


def test_the_default_settings_give_the_default_policy(tmp_path: Path):
    assert RetryPolicy.from_settings(load_settings({}, directory=tmp_path)) == RetryPolicy()
