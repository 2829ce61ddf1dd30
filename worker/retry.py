"""Retrying one chat job: the backoff maths (pure) and the loop that owns every retry.

A job makes at most `max_attempts` upstream calls (CHATQ_MAX_ATTEMPTS, default 6),
fewer for errors that cap themselves (a malformed body: 3), and never runs past its
deadline (CHATQ_JOB_DEADLINE). Waits happen inside the task, so a job's message stays
with the worker that runs it, and the broker's visibility timeout is set above the
deadline: the broker never hands a job that is still waiting to a second worker.

The loop is a coroutine: jobs' calls run on the worker process's event loop
(`worker/aio.py`), and a wait between attempts is an awaited sleep, not a thread asleep.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from chatq.errors import (
    ChatqError,
    DeadlineExceeded,
    RateLimited,
    RetryAfterTooLong,
)
from config import Settings

__all__ = ["RetryPolicy", "backoff_delay", "run_with_retries"]

log = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass(frozen=True)
class RetryPolicy:
    """How a job retries (all in seconds but `max_attempts`)."""

    max_attempts: int = 6
    backoff_base: float = 1.0
    backoff_max: float = 60.0
    retry_after_max: float = 300.0
    deadline: float = 900.0

    @classmethod
    def from_settings(cls, settings: Settings) -> RetryPolicy:
        return cls(
            max_attempts=settings.max_attempts,
            backoff_base=settings.backoff_base,
            backoff_max=settings.backoff_max,
            retry_after_max=settings.retry_after_max,
            deadline=settings.job_deadline,
        )


def backoff_delay(
    attempt: int,
    *,
    base: float,
    cap: float,
    retry_after: float | None = None,
    rand: Callable[[], float] = random.random,
) -> float:
    """Seconds to wait after failed call number `attempt` (1-based).

    Exponential with full jitter: uniform in [0, min(cap, base * 2**(attempt-1))].
    The provider's Retry-After, when given, is the floor of the wait.
    """
    try:
        ceiling = min(cap, base * 2.0 ** max(0, attempt - 1))
    except OverflowError:  # past ~1000 attempts 2**n leaves floats: far above any cap
        ceiling = cap
    delay = ceiling * rand()
    if retry_after is not None:
        delay = max(delay, retry_after)
    return delay


async def run_with_retries(
    call: Callable[[float], Awaitable[T]],
    policy: RetryPolicy,
    *,
    started: float | None = None,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    rand: Callable[[], float] = random.random,
    on_retry: Callable[[ChatqError, int, float], None] | None = None,
    paced: bool = False,
) -> tuple[T, int]:
    """Await `call(deadline)` until it succeeds; return (its result, the calls made).

    Args:
        call: makes one upstream call (a coroutine function); gets the monotonic
            deadline it must not outlast.
        policy: attempts, backoff and deadline.
        started: when the job started (monotonic); default now.
        clock, sleep, rand: the monotonic clock, the (async) sleep, the randomness.
        on_retry: told (error, attempt, wait) before each wait.
        paced: a fleet-wide limiter admits each call (worker/limits): after a 429 the
            next call is not delayed here, since the limiter pauses every caller
            until the Retry-After has passed and spaces the calls after it; a backoff
            on top would only leave the job idle while the fleet goes on.

    Raises:
        The last error, when it is not retryable or the attempts are spent (its message
        then says how many calls were made); RetryAfterTooLong when the provider asks
        for a longer pause than `retry_after_max`; DeadlineExceeded when the next wait
        would end past the deadline.
    """
    start = clock() if started is None else started
    deadline = start + policy.deadline
    by_type: Counter[type] = Counter()
    attempt = 0
    while True:
        if clock() >= deadline:
            raise DeadlineExceeded(
                f"the job's deadline of {policy.deadline:g}s passed after {attempt} call(s)",
                attempts=attempt,
            )
        attempt += 1
        try:
            return await call(deadline), attempt
        except ChatqError as exc:
            error = exc
        by_type[type(error)] += 1
        if not error.retryable:
            error.facts.setdefault("attempts", attempt)
            raise error
        cap = error.max_calls
        if attempt >= policy.max_attempts or (cap is not None and by_type[type(error)] >= cap):
            raise _gave_up(error, attempt)
        retry_after = error.facts.get("retry_after") if isinstance(error, RateLimited) else None
        if retry_after is not None and retry_after > policy.retry_after_max:
            raise RetryAfterTooLong(
                f"{error.provider or 'the provider'} asked us to wait {retry_after:g}s, "
                f"more than CHATQ_RETRY_AFTER_MAX ({policy.retry_after_max:g}s); "
                "try again later or raise the limit",
                provider=error.provider,
                model=error.model,
                retry_after=retry_after,
                status=error.status,
                attempts=attempt,
            )
        if paced and isinstance(error, RateLimited):
            wait = 0.0
        else:
            wait = backoff_delay(
                attempt,
                base=policy.backoff_base,
                cap=policy.backoff_max,
                retry_after=retry_after,
                rand=rand,
            )
        if clock() + wait >= deadline:
            raise DeadlineExceeded(
                f"gave up after {attempt} call(s): the next try, in {wait:.1f}s, would pass "
                f"the job's deadline of {policy.deadline:g}s (last error: {error.message})",
                provider=error.provider,
                model=error.model,
                attempts=attempt,
            )
        if on_retry is not None:
            on_retry(error, attempt, wait)
        await sleep(wait)


def _gave_up(error: ChatqError, attempts: int) -> ChatqError:
    """The same kind of error, saying that retrying has stopped."""
    facts = {**error.facts, "attempts": attempts}
    calls = "1 call" if attempts == 1 else f"{attempts} calls"
    return type(error)(f"{error.message} (gave up after {calls})", facts)
