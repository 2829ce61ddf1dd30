"""A worker's side of the fleet-wide limits: wait for capacity, call, report the outcome.

Waiting for capacity is not a failure and not an attempt: `Limiter.call` waits (in
steps of at most `step` seconds, so a rate that rises is noticed at once) until the
provider admits the call, then makes it exactly once. A job whose deadline comes
before capacity does fails with DeadlineExceeded, saying so.

The wait happens inside the task, bounded by the job's deadline, so it never holds a
prefetched message past the broker's visibility timeout: that timeout is the deadline
plus one call's read timeout plus a margin (`Settings.visibility_timeout`).

Calls run as coroutines on the worker process's event loop (`worker/aio.py`), where
thousands may wait at once, so waiting is an awaited sleep and each step one round
trip: a call admitted at once costs two (acquire, release). The fleet-wide quota pause
is read by the acquire step itself, atomically with the admission.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

import redis

from chatq.errors import DeadlineExceeded, QuotaExhausted, RateLimited
from config import ProviderLimits, Settings, spec
from worker.chat.mock import estimate_tokens
from worker.chat.types import ChatRequest
from worker.limits import maths
from worker.limits.backends import LimitBackend
from worker.limits.maths import Limits
from worker.tokens import new_token

__all__ = ["LAST_TURN", "Limiter", "Permit", "estimate_prompt_tokens", "estimate_request_tokens"]

log = logging.getLogger(__name__)
T = TypeVar("T")

#: A call never outlasts its job's deadline (its read timeout is clipped to it), so its
#: lease need not either: a slot held by a killed worker frees by then, plus this slack,
#: well before the broker hands the job to another worker.
_LEASE_SLACK = 2.0
#: Seconds before its job's deadline after which a call is not begun: no provider
#: answers in less, and the call would be paid for all the same (or cut off unanswered).
LAST_TURN = 0.25


def estimate_prompt_tokens(request: ChatRequest) -> int:
    """A request's messages in tokens, estimated: about four characters a token, plus a
    few per message."""
    return sum(estimate_tokens(m.text) + 4 for m in request.messages)


def estimate_request_tokens(request: ChatRequest) -> int:
    """A request's size charged to a TPM budget before its answer's usage is known:
    its messages and the answer it allows (`max_tokens`, when set). The answer's real
    usage corrects it."""
    return estimate_prompt_tokens(request) + (request.max_tokens or 0)


@dataclass(frozen=True)
class Permit:
    """One admitted call: the lease to give back and what was charged for it."""

    provider: str
    limits: Limits
    token: str
    tokens: float
    granted_at: float


class Limiter:
    """Fleet-wide limits of each provider, as one worker process applies them.

    Args:
        backend: the shared state (RedisBackend for a fleet).
        limits_for: a provider's configured limits; None: the provider is not limited.
        lease: seconds a call's concurrency lease lives at most if its worker dies
            holding it (a lease also ends by the job's deadline, plus two seconds).
        quota_pause: seconds a provider is paused fleet-wide once a call finds its quota
            spent (QuotaExhausted); 0: never.
        step: the longest single sleep while waiting for a turn.
        clock, sleep, rand: the worker's monotonic clock, its (async) sleep and
            randomness.
    """

    def __init__(
        self,
        backend: LimitBackend,
        limits_for: Callable[[str], ProviderLimits | None],
        *,
        lease: float,
        quota_pause: float = 0.0,
        step: float = 0.25,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        rand: Callable[[], float] = random.random,
    ):
        self.backend = backend
        self._limits_for = limits_for
        #: Each provider's limits, read once (settings do not change while a process runs).
        self._limits: dict[str, Limits | None] = {}
        self.lease = lease
        self.quota_pause = quota_pause
        self.step = step
        self._clock = clock
        self._sleep = sleep
        self._behind_tasks: set[asyncio.Task] = set()
        self._rand = rand

    @classmethod
    def from_settings(cls, settings: Settings, backend: LimitBackend, **kw: object) -> Limiter:
        """A limiter with `settings`' limits and lease (offline providers unlimited)."""

        def limits_for(provider: str) -> ProviderLimits | None:
            if spec(provider).offline:  # no network call: limited only when configured
                return settings.limits.get(provider)
            return settings.limits_for(provider)

        return cls(backend, limits_for, lease=settings.lease_seconds,  # type: ignore[arg-type]
                   quota_pause=settings.quota_pause, **kw)  # fmt: skip

    def guards(self, provider: str) -> bool:
        """Whether calls to `provider` go through the limiter."""
        return self._limits_of(provider) is not None

    def _limits_of(self, provider: str) -> Limits | None:
        if provider not in self._limits:
            configured = self._limits_for(provider)
            self._limits[provider] = None if configured is None else Limits.from_config(configured)
        return self._limits[provider]

    async def call(
        self,
        provider: str,
        fn: Callable[[], Awaitable[T]],
        *,
        tokens: float,
        deadline: float,
        early: asyncio.Future[Permit] | None = None,
    ) -> T:
        """Wait for a turn at `provider`, make the call `await fn()` once, report how it went.

        Args:
            tokens: the request's estimated size (see `estimate_request_tokens`).
            deadline: the monotonic instant the job gives up.
            early: a turn asked for already (`ask_early`), used instead of a new one.

        Raises:
            DeadlineExceeded: no capacity before `deadline` (no call was made).
            QuotaExhausted: `provider` is paused fleet-wide, its quota spent (no call was
                made); or the call found it spent (the pause then begins).
            Whatever `fn` raises.
        """
        if not self.guards(provider):
            return await fn()
        if early is not None:
            permit = await early
        else:
            permit = await self.acquire(provider, tokens=tokens, deadline=deadline)
        try:
            result = await fn()
        except RateLimited as exc:
            await self._release(permit, maths.LIMITED, retry_after=exc.retry_after)
            raise
        except QuotaExhausted as exc:
            # Paused before the lease frees: a caller waiting for it must find the
            # pause, not make one more call to an account known to be empty.
            await self._pause_for_quota(provider, exc)
            await self._release(permit, maths.FAILED)
            raise
        except BaseException:  # a cancelled call too: its lease goes back at once
            await self._release(permit, maths.FAILED)
            raise
        pause = _budget_spent(result, permit.tokens)
        if pause:
            log.info("%s: its rate budget is spent, pausing it fleet-wide for %.2fs (the "
                     "headers' reset)", provider, pause)  # fmt: skip
        # Not awaited: the answer is the job's, whatever the bookkeeping's round trip
        # does, and the release then shares a pipeline with the job's stored result.
        self._behind(self._release(permit, maths.OK, actual=_usage(result), retry_after=pause))
        return result

    def ask_early(
        self, provider: str, *, tokens: float, deadline: float
    ) -> asyncio.Future[Permit] | None:
        """Start waiting for a turn at `provider` now, beside other work (a job's claim:
        the two commands then share one round trip to Redis); the task to hand to the
        first `call`, or to `forgo`. None when the limiter does not guard `provider`."""
        if not self.guards(provider):
            return None
        return asyncio.ensure_future(self.acquire(provider, tokens=tokens, deadline=deadline))

    async def forgo(self, early: asyncio.Future[Permit] | None) -> None:
        """Give back a turn asked for early and not used (the job will not be called):
        its lease frees at once, or as soon as a wait still under way is granted. (Not
        cancelled: its grant may be in the reply just read, and would be lost with it.)"""
        if early is None:
            return
        if not early.done():
            early.add_done_callback(self._give_back)
            return
        if early.cancelled() or early.exception() is not None:
            return  # no turn was taken
        await self._release(early.result(), maths.FAILED)

    def _give_back(self, early: asyncio.Future[Permit]) -> None:
        if early.cancelled() or early.exception() is not None:
            return
        self._behind(self._release(early.result(), maths.FAILED))

    def _behind(self, release: Awaitable[None]) -> None:
        """Run a release in the background, beside what the job does next (its command
        goes out with the next pipeline all the same); `drain` waits for it."""
        task = asyncio.ensure_future(release)
        self._behind_tasks.add(task)  # held until it ends (the loop keeps weak references)
        task.add_done_callback(self._behind_tasks.discard)

    async def drain(self) -> None:
        """Wait for the releases still running in the background (a stopping worker;
        a test reading the shared state)."""
        while self._behind_tasks:
            await asyncio.gather(*self._behind_tasks, return_exceptions=True)

    async def acquire(self, provider: str, *, tokens: float, deadline: float) -> Permit:
        """Wait until `provider` admits one call; the permit to release after it.

        Raises:
            DeadlineExceeded: the turn would come after `deadline`, or leave less than
                `LAST_TURN` seconds before it.
            QuotaExhausted: `provider` is paused fleet-wide for a spent quota (checked by
                every acquire step, the granting one included).
        """
        limits = self._limits_of(provider)
        assert limits is not None  # acquire is for guarded providers only
        token = new_token()
        ticket: int | None = None
        poll = 0.01
        began = self._clock()
        while True:
            left = deadline - self._clock()
            if left <= LAST_TURN:
                raise self._no_capacity(provider, began, "still waiting at the deadline")
            decision = await self.backend.acquire(
                provider, limits, token=token, tokens=tokens,
                lease=min(self.lease, left + _LEASE_SLACK), max_wait=left - LAST_TURN,
                ticket=ticket,
            )  # fmt: skip
            if decision.status == maths.GRANTED:
                return Permit(provider, limits, token, tokens, decision.at)
            if decision.status == maths.QUOTA:
                raise _quota_paused(provider, decision)
            if decision.status == maths.LATE:
                raise self._no_capacity(
                    provider, began, f"the next turn is {decision.wait:.1f}s away"
                )
            ticket = decision.ticket
            if decision.status == maths.BUSY:  # a lease frees when its call ends: poll
                wait = min(decision.wait, poll) * (0.5 + self._rand())
                poll = min(poll * 2, self.step)
            elif decision.status == maths.PAUSED:
                wait = decision.wait
            else:  # a turn is reserved: wake to re-check, the rate may rise meanwhile
                wait = min(decision.wait, self.step)
            await self._sleep(max(0.0, min(wait, left)))

    async def _pause_for_quota(self, provider: str, exc: QuotaExhausted) -> None:
        if not self.quota_pause:
            return
        log.warning("%s: quota spent, pausing it fleet-wide for %gs", provider, self.quota_pause)
        try:
            await self.backend.pause(provider, self.quota_pause, exc.message)
        except redis.RedisError as err:
            log.warning("could not pause %s: %s", provider, err)

    async def _release(self, permit: Permit, outcome: str, **facts: float | None) -> None:
        try:
            await self.backend.release(
                permit.provider, permit.limits, token=permit.token, outcome=outcome,
                granted_at=permit.granted_at, estimated=permit.tokens, **facts,
            )  # fmt: skip
        except redis.RedisError as exc:  # the lease expires on its own; the answer matters more
            log.warning("could not release a %s lease: %s", permit.provider, exc)

    def _no_capacity(self, provider: str, began: float, why: str) -> DeadlineExceeded:
        waited = self._clock() - began
        return DeadlineExceeded(
            f"could not get capacity for {provider} before the job's deadline "
            f"({why}; waited {waited:.1f}s); raise its limits or the deadline",
            provider=provider,
        )


def _quota_paused(provider: str, decision: maths.Decision) -> QuotaExhausted:
    """A provider whose quota ran out is not called again, by any worker, until the
    pause has passed: the job fails at once, as the first one did."""
    return QuotaExhausted(
        f"{provider} is paused fleet-wide for {decision.wait:.0f}s more: its quota ran out "
        f"({decision.reason}); no call was made",
        provider=provider,
    )


def _usage(result: object) -> float | None:
    """The tokens an answer really used, when it says."""
    used = (getattr(result, "input_tokens", 0) or 0) + (getattr(result, "output_tokens", 0) or 0)
    return float(used) if used else None


def _budget_spent(result: object, tokens: float) -> float | None:
    """Seconds until the provider's rate budget resets, when the answer's headers say
    it is spent: no requests left, or fewer tokens than a call like this one needs."""
    budget = getattr(result, "budget", None)
    return budget.wait(tokens) if budget is not None else None
