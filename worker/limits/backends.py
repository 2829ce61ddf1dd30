"""Where the limiter's state lives: Redis for a fleet, memory for one process and tests.

Both run the steps of `worker/limits/maths.py`; the Redis one runs them as Lua scripts
(`worker/limits/scripts.py`) on the server's clock, atomically, for every worker on
every machine.

The hot path (`acquire`, `release`, `pause`) is async: it runs on the worker process's
event loop (`worker/aio.py`), one round trip each. What `chatq limits` and the tests
read (`status`, `paused`, `state`) stays synchronous.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

import redis

from worker.limits import maths
from worker.limits.maths import Decision, Limits, State, Tuning
from worker.limits.scripts import ACQUIRE, RELEASE

__all__ = ["PREFIX", "AsyncRedis", "LimitBackend", "MemoryBackend", "RedisBackend", "keys_of"]

PREFIX = "chatq:limit:"
#: State untouched this long is forgotten (a provider's limits may have changed).
_TTL = 24 * 3600
#: 429s are remembered this long, for `chatq limits`.
_KEEP_429S = 3600
_DEFAULT_TUNING = Tuning()


def keys_of(provider: str) -> tuple[str, str, str]:
    """The Redis keys of `provider`: its state hash, its leases, its recent 429s."""
    base = f"{PREFIX}{provider}:"
    return base + "state", base + "slots", base + "429s"


class AsyncRedis(Protocol):
    """What the hot path needs of an async Redis client: `redis.asyncio.Redis` has it,
    and so may a wrapper that batches commands."""

    def register_script(self, script: str) -> Callable[..., Awaitable[Any]]:
        """A script object, called as `await script(keys=[...], args=[...])`, that loads
        itself when the server does not know it (NOSCRIPT)."""

    async def set(self, name: str, value: str, *, px: int) -> Any: ...


class LimitBackend(Protocol):
    """Shared limiter state: admit calls, learn from their outcomes, report."""

    tuning: Tuning

    async def acquire(
        self,
        provider: str,
        limits: Limits,
        *,
        token: str,
        tokens: float,
        lease: float,
        max_wait: float,
        ticket: int | None,
    ) -> Decision:
        """Admit one call now, or say how long to wait (maths.acquire); QUOTA, before
        anything else, while `provider` is paused for a spent quota (see `pause`)."""

    async def release(
        self,
        provider: str,
        limits: Limits,
        *,
        token: str,
        outcome: str,
        granted_at: float,
        estimated: float = 0.0,
        actual: float | None = None,
        retry_after: float | None = None,
    ) -> None:
        """Give the lease back and learn from the call's outcome (maths.release)."""

    def status(self, provider: str, *, minutes: float = 5.0) -> dict[str, Any]: ...

    async def pause(self, provider: str, seconds: float, reason: str) -> None:
        """Pause `provider` for every caller for `seconds`, saying why (a spent quota):
        `acquire` answers QUOTA until it has passed."""

    def paused(self, provider: str) -> tuple[float, str] | None:
        """(seconds left, why) while `provider` is paused so, else None."""


class MemoryBackend:
    """The limiter's state in this process (tests, and one-process tools).

    Args:
        clock: the shared clock; default `time.time`.
        tuning: how the learned rate moves.
    """

    def __init__(self, *, clock: Callable[[], float] = time.time, tuning: Tuning = _DEFAULT_TUNING):
        self.clock = clock
        self.tuning = tuning
        self._lock = threading.Lock()
        self.states: dict[str, State] = {}
        self._429s: dict[str, list[float]] = {}
        self._pauses: dict[str, tuple[float, str]] = {}

    async def pause(self, provider: str, seconds: float, reason: str) -> None:
        with self._lock:
            self._pauses[provider] = (self.clock() + seconds, reason)

    def paused(self, provider: str) -> tuple[float, str] | None:
        with self._lock:
            until, reason = self._pauses.get(provider, (0.0, ""))
            left = until - self.clock()
            return (left, reason) if left > 0 else None

    async def acquire(self, provider: str, limits: Limits, **kw: Any) -> Decision:
        with self._lock:
            now = self.clock()
            spent = maths.quota(*self._pauses.get(provider, (0.0, "")), now)
            if spent is not None:
                return spent
            state = self.states.setdefault(provider, State())
            return maths.acquire(state, now, limits, self.tuning, **kw)

    async def release(self, provider: str, limits: Limits, **kw: Any) -> None:
        with self._lock:
            state = self.states.setdefault(provider, State())
            now = self.clock()
            if kw.get("outcome") == maths.LIMITED:
                self._429s.setdefault(provider, []).append(now)
            maths.release(state, now, limits, self.tuning, **kw)

    def status(self, provider: str, *, minutes: float = 5.0) -> dict[str, Any]:
        with self._lock:
            now = self.clock()
            state = self.states.get(provider, State())
            fields = {k: v for k, v in vars(state).items() if k != "slots"}
            in_flight = sum(1 for expiry in state.slots.values() if expiry > now)
            recent = sum(1 for t in self._429s.get(provider, []) if t > now - minutes * 60)
        return {**_status(fields, now, in_flight, recent), **_pause_status(self.paused(provider))}


class RedisBackend:
    """The limiter's state in Redis, shared by the fleet.

    Args:
        client: the Redis the queue uses (synchronous), for what `chatq limits` and the
            tests read: `status`, `paused`, `state`.
        aclient: the same Redis, asynchronous, for the hot path (`acquire`, `release`,
            `pause`): a `redis.asyncio.Redis`, or anything with its `register_script` and
            `set` (see `AsyncRedis`). Without one the backend only reports.
        tuning: how the learned rate moves.
        clock: for tests only: a fake shared clock; default the Redis server's TIME.
    """

    def __init__(
        self,
        client: redis.Redis,
        aclient: AsyncRedis | None = None,
        *,
        tuning: Tuning = _DEFAULT_TUNING,
        clock: Callable[[], float] | None = None,
    ):
        self._client = client
        self._aclient = aclient
        self.tuning = tuning
        self._clock = clock
        if aclient is not None:
            self._acquire = aclient.register_script(ACQUIRE)
            self._release = aclient.register_script(RELEASE)

    def _now(self) -> str:
        return "" if self._clock is None else repr(float(self._clock()))

    def _hot(self) -> AsyncRedis:
        if self._aclient is None:
            raise TypeError("this RedisBackend has no async client (aclient): it only reports")
        return self._aclient

    async def acquire(
        self,
        provider: str,
        limits: Limits,
        *,
        token: str,
        tokens: float,
        lease: float,
        max_wait: float,
        ticket: int | None = None,
    ) -> Decision:
        self._hot()
        t = self.tuning
        state, slots, _ = keys_of(provider)
        reply = await self._acquire(
            keys=[state, slots, _pause_key(provider)],
            args=[
                self._now(), limits.concurrency or 0, limits.rate or 0, limits.tpm or 0,
                tokens, lease, token, max_wait, -1 if ticket is None else ticket,
                t.window, t.token_burst, t.start, t.doubling, _TTL,
            ],
        )  # fmt: skip
        status, wait, held, at = reply[:4]
        held = int(held)
        reason = _text(reply[4]) if len(reply) > 4 else None
        return Decision(_text(status), float(wait), None if held < 0 else held, float(at), reason)

    async def release(
        self,
        provider: str,
        limits: Limits,
        *,
        token: str,
        outcome: str,
        granted_at: float,
        estimated: float = 0.0,
        actual: float | None = None,
        retry_after: float | None = None,
    ) -> None:
        self._hot()
        t = self.tuning
        await self._release(
            keys=list(keys_of(provider)),
            args=[
                self._now(), token, outcome, repr(float(granted_at)), estimated,
                -1 if actual is None else actual, retry_after or 0,
                limits.rate or 0, limits.tpm or 0, t.decrease, t.recover, t.probe,
                t.floor, t.window, t.start, t.doubling, _KEEP_429S, _TTL,
            ],
        )  # fmt: skip

    def state(self, provider: str) -> State:
        """The provider's state as stored (leases included), for tests and reports."""
        state_key, slots, _ = keys_of(provider)
        raw = {_text(k): float(v) for k, v in self._client.hgetall(state_key).items()}
        state = State(**{k: v for k, v in raw.items() if k in State.__dataclass_fields__})
        state.next_ticket = int(state.next_ticket)
        state.slots = {_text(m): s for m, s in self._client.zrange(slots, 0, -1, withscores=True)}
        return state

    def status(self, provider: str, *, minutes: float = 5.0) -> dict[str, Any]:
        _, slots, log = keys_of(provider)
        if self._clock is None:
            sec, usec = self._client.time()
            now = sec + usec / 1e6
        else:
            now = float(self._clock())
        fields = {k: v for k, v in vars(self.state(provider)).items() if k != "slots"}
        pipe = self._client.pipeline(transaction=False)
        pipe.zcount(slots, f"({now!r}", "+inf")
        pipe.zcount(log, f"({now - minutes * 60!r}", "+inf")
        in_flight, recent = pipe.execute()
        status = _status(fields, now, int(in_flight), int(recent))
        return {**status, **_pause_status(self.paused(provider))}

    async def pause(self, provider: str, seconds: float, reason: str) -> None:
        # Its own key, expiring with the pause on the server's clock: ACQUIRE reads it
        # before anything else, so every worker's next call is refused at once.
        await self._hot().set(_pause_key(provider), reason, px=max(1, int(seconds * 1000)))

    def paused(self, provider: str) -> tuple[float, str] | None:
        pipe = self._client.pipeline(transaction=False)
        pipe.get(_pause_key(provider))
        pipe.pttl(_pause_key(provider))
        reason, left_ms = pipe.execute()
        if reason is None or left_ms is None or left_ms <= 0:
            return None
        return left_ms / 1000.0, _text(reason)


def _pause_key(provider: str) -> str:
    return f"{PREFIX}{provider}:quota"


def _pause_status(pause: tuple[float, str] | None) -> dict[str, Any]:
    """A quota pause as `chatq limits` shows it: seconds left, and why."""
    if pause is None:
        return {"quota_paused_for": 0.0, "paused_because": None}
    return {"quota_paused_for": round(pause[0], 2), "paused_because": pause[1]}


def _status(fields: dict[str, Any], now: float, in_flight: int, recent: int) -> dict[str, Any]:
    """What `chatq limits` shows of one provider's state."""
    rate = fields.get("rate") or 0.0
    pause = max(0.0, (fields.get("pause_until") or 0.0) - now)
    return {
        "learned_rpm": round(rate * 60.0, 1) if rate else None,
        "in_flight": in_flight,
        "paused_for": round(pause, 2),
        "recent_429s": recent,
    }


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
