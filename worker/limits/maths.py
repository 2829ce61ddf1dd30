"""The limiter's maths: one provider's shared state and the two steps that change it.

Pure Python on a `State` and an explicit `now`, so it is tested with a fake clock. The
Redis backend runs the same steps in Lua (`worker/limits/scripts.py`), line for line;
the tests run one table of scenarios against both.

How a call is admitted (`acquire`):

0. While the provider's quota is spent (a call was answered QuotaExhausted, and the
   limiter paused the provider fleet-wide), nothing is admitted and no ticket is taken:
   the answer is QUOTA, with the seconds left and why. That pause is not part of the
   `State` (in Redis it is a key of its own, expiring with the pause), so the backends
   read it before this step: `quota` below.
1. While the provider is paused (a 429 said Retry-After, or an answer said its
   budget is spent until a reset), nothing is admitted.
2. Rate: when a rate is known (the configured RPM, or the rate learned from 429s, the
   lower of the two), calls are spaced evenly. A caller takes a numbered ticket;
   ticket k is due at `base_time + (k - base_ticket) / rate`, so waiters queue in
   order instead of all polling at once. When the rate changes the schedule is
   re-based at that instant, which re-times every waiting ticket at once; a pause
   moves the base past its end. An unused past gives no credit: no bursts.
3. Concurrency: at most N leases in flight; a lease expires on its own after `lease`
   seconds, so a worker killed while holding one does not leak it.
4. Tokens: a TPM budget is charged with the request's estimated size (up to
   `token_burst` seconds of it at once), and corrected by the answer's real usage.

How outcomes teach the fleet (`release`), AIMD-style:

- an answer whose headers say the provider's budget is spent (no requests, or too
  few tokens, left) pauses every caller until the budget resets, as a 429 would,
  but before any 429 and without cutting the rate;
- a 429 pauses every caller until its Retry-After has passed, and cuts the rate to
  `decrease` x the rate calls were spaced at, once per burst: a 429 for a call admitted
  before the last cut was sent at the old rate and teaches nothing new;
- each success raises the rate back quickly towards the rate that drew the last 429
  (time constant `recover`), then slowly beyond it (`probe`, a fraction per second),
  never above the configured ceiling.

With no limit configured the rate is unknown until the first 429, and a fresh
provider is approached with a slow start (`start` calls a second, doubling every
`doubling` seconds: no limit at all within seconds) so that a cold fleet of a hundred
threads does not open with a hundred calls in the same millisecond. The first 429
takes the rate from the calls admitted over the last `window` seconds. A caller whose
ticket is due later than the next doubling is told to come back at that doubling, where
the faster schedule re-times its ticket: otherwise the waiting callers would come back
late, behind a schedule that has doubled since, and together, in a burst.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

__all__ = [
    "BUSY",
    "GRANTED",
    "LATE",
    "LIMITED",
    "OK",
    "PAUSED",
    "QUOTA",
    "RESERVED",
    "TOKENS",
    "Decision",
    "Limits",
    "State",
    "Tuning",
    "acquire",
    "measured_rate",
    "quota",
    "release",
]

#: Decision statuses.
GRANTED, RESERVED, PAUSED, BUSY, TOKENS, LATE, QUOTA = (
    "granted",
    "reserved",
    "paused",
    "busy",
    "tokens",
    "late",
    "quota",
)
#: Outcomes of a call, as `release` is told them.
OK, LIMITED, FAILED = "ok", "limited", "failed"

#: A reservation this close to now is taken at once (clock granularity, rounding).
_EPSILON = 0.001


@dataclass(frozen=True)
class Tuning:
    """How the learned rate moves.

    The defaults were tuned against an upstream allowing 50 calls a second, with a
    hundred callers: a gentle cut (x0.9) suffices because every 429 also pauses the
    fleet until its Retry-After, and a deeper one costs throughput for seconds after.
    """

    decrease: float = 0.9  # x the rate that drew a 429
    recover: float = 0.5  # s: time constant of the climb back to that rate
    probe: float = 0.05  # per s: climb beyond it, as a fraction of it
    floor: float = 1 / 60  # calls a second: the learned rate never goes below one a minute
    window: float = 1.0  # s: admitted calls are counted over this window
    token_burst: float = 10.0  # s of a TPM budget that may be spent at once
    start: float = 400.0  # calls a second at the start of a slow start (0: none)
    doubling: float = 0.05  # s: the slow start doubles the rate this often


@dataclass(frozen=True)
class Limits:
    """One provider's configured limits in the units the maths uses (None: no limit)."""

    concurrency: int | None = None
    rate: float | None = None  # requests per second (RPM / 60)
    tpm: float | None = None

    @classmethod
    def from_config(cls, limits: object) -> Limits:
        """From a `config.ProviderLimits` (concurrency, rpm, tpm)."""
        rpm = getattr(limits, "rpm", None)
        return cls(
            concurrency=getattr(limits, "concurrency", None),
            rate=rpm / 60.0 if rpm else None,
            tpm=getattr(limits, "tpm", None),
        )


@dataclass
class State:
    """One provider's shared state (all times in seconds on the shared clock)."""

    rate: float = 0.0  # learned requests per second; 0: not learned yet
    last_max: float = 0.0  # the rate that drew the last 429
    born: float = 0.0  # when the state was first used (the slow start's origin)
    sched_rate: float = 0.0  # the rate the ticket schedule runs at; 0: none
    base_time: float = 0.0
    base_ticket: float = 0.0
    next_ticket: int = 0
    ttat: float = 0.0  # GCRA: the instant the token budget is paid off
    pause_until: float = 0.0
    cut_at: float = 0.0
    win_start: float = 0.0
    win_count: float = 0.0
    win_prev: float = 0.0
    slots: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class Decision:
    """What `acquire` decided: `status`, the seconds to wait, the ticket a caller holds,
    when it was granted (`at`), and, for QUOTA, why the provider is paused."""

    status: str
    wait: float = 0.0
    ticket: int | None = None
    at: float = 0.0
    reason: str | None = None


def effective_rate(state: State, limits: Limits, now: float, tuning: Tuning) -> float | None:
    """The rate calls are spaced at: the lower of the learned and configured ones.

    With neither, the slow start: `start` calls a second, doubling every `doubling`
    seconds from the state's birth, and no limit once that is past 2**20 x `start`.
    """
    if state.rate:
        return min(state.rate, limits.rate) if limits.rate else state.rate
    if limits.rate:
        return limits.rate
    if not tuning.start:
        return None
    doublings = math.floor((now - state.born) / tuning.doubling)
    return None if doublings > 20 else tuning.start * 2.0**doublings


def _doubles_in(state: State, now: float, limits: Limits, tuning: Tuning) -> float:
    """Seconds until the slow start doubles the rate (inf when none is running)."""
    if state.rate or limits.rate or not tuning.start:
        return math.inf
    return tuning.doubling - (now - state.born) % tuning.doubling


def measured_rate(state: State, now: float, tuning: Tuning) -> float:
    """Calls admitted per second over the last window (sliding estimate)."""
    _roll(state, now, tuning)
    weight = max(0.0, 1.0 - (now - state.win_start) / tuning.window)
    return (state.win_prev * weight + state.win_count) / tuning.window


def quota(until: float, reason: str, now: float) -> Decision | None:
    """QUOTA while a quota pause ending at `until` still holds at `now`, else None."""
    return Decision(QUOTA, until - now, reason=reason) if until > now else None


def acquire(
    state: State,
    now: float,
    limits: Limits,
    tuning: Tuning,
    *,
    token: str,
    tokens: float,
    lease: float,
    max_wait: float,
    ticket: int | None = None,
) -> Decision:
    """Admit one call now, or say how long to wait (and which ticket to come back with).

    Args:
        token: the lease's id (unique per call).
        tokens: the call's estimated size, charged to a TPM budget.
        lease: seconds the concurrency lease lives unless released.
        max_wait: a ticket due further ahead than this is given up (status LATE).
        ticket: the ticket the caller holds, if any.
    """
    if not state.born:
        state.born = now
    rate = _schedule(state, now, limits, tuning)
    if rate:
        if ticket is None or ticket >= state.next_ticket:
            if _due(state, state.next_ticket) < now:  # idle until now: no credit for it
                state.base_ticket, state.base_time = state.next_ticket, now
            ticket = state.next_ticket
            due = _due(state, ticket)
            if due - now > max_wait:
                return Decision(LATE, due - now)
            state.next_ticket += 1
        due = _due(state, ticket)
        if due - now > max_wait:
            return Decision(LATE, due - now)
        if due - now > _EPSILON:
            wait = min(due - now, _doubles_in(state, now, limits, tuning))
            return Decision(RESERVED, wait, ticket)
    else:
        ticket = None
    if now < state.pause_until:
        return Decision(PAUSED, state.pause_until - now, ticket)
    for key in [k for k, expiry in state.slots.items() if expiry <= now]:
        del state.slots[key]
    if limits.concurrency and len(state.slots) >= limits.concurrency:
        return Decision(BUSY, min(state.slots.values()) - now, ticket)
    if limits.tpm:
        ahead = state.ttat - now - tuning.token_burst
        if ahead > 0:
            if ahead > max_wait:
                return Decision(LATE, ahead)
            return Decision(TOKENS, ahead, ticket)
        state.ttat = max(state.ttat, now) + tokens * 60.0 / limits.tpm
    state.slots[token] = now + lease
    _roll(state, now, tuning)
    state.win_count += 1
    return Decision(GRANTED, 0.0, ticket, now)


def release(
    state: State,
    now: float,
    limits: Limits,
    tuning: Tuning,
    *,
    token: str,
    outcome: str,
    granted_at: float,
    estimated: float = 0.0,
    actual: float | None = None,
    retry_after: float | None = None,
) -> None:
    """Give the lease back and learn from the call's outcome (OK, LIMITED or FAILED).

    `retry_after`: seconds the upstream asked every caller to wait, whatever the
    outcome: a 429's Retry-After, or the reset of a budget an answer's headers say is
    spent (then no 429 has happened, and the rate is not cut).
    """
    state.slots.pop(token, None)
    if outcome == OK:
        if limits.tpm and actual is not None:
            base = max(state.ttat, now)
            state.ttat = max(now, base + (actual - estimated) * 60.0 / limits.tpm)
        if state.rate:
            gain = max(0.0, state.last_max - state.rate) / tuning.recover
            gain += tuning.probe * state.last_max
            state.rate += gain / state.rate
            if limits.rate:
                state.rate = min(state.rate, limits.rate)
    elif outcome == LIMITED and granted_at > state.cut_at:
        basis = effective_rate(state, limits, now, tuning)
        if not state.rate and not limits.rate:  # nothing learned yet: what was sent
            basis = min(basis or math.inf, measured_rate(state, now, tuning))
        state.last_max = max(basis, tuning.floor)
        state.rate = max(tuning.floor, tuning.decrease * basis)
        state.cut_at = now
    if retry_after:  # a 429's Retry-After, or an answer saying its budget is spent
        state.pause_until = max(state.pause_until, now + retry_after)
    _schedule(state, now, limits, tuning)
    if state.sched_rate and state.pause_until > state.base_time:
        _advance(state, now)
        state.base_time = max(state.base_time, state.pause_until)


def _due(state: State, ticket: float) -> float:
    return state.base_time + (ticket - state.base_ticket) / state.sched_rate


def _advance(state: State, now: float) -> None:
    """Move the schedule's base to `now` at the rate it runs at."""
    if now > state.base_time:
        state.base_ticket += (now - state.base_time) * state.sched_rate
        state.base_time = now


def _schedule(state: State, now: float, limits: Limits, tuning: Tuning) -> float | None:
    """Re-base the ticket schedule at `now` if the rate changed; the rate (None: none)."""
    rate = effective_rate(state, limits, now, tuning) or 0.0
    if rate != state.sched_rate:
        if state.sched_rate:
            _advance(state, now)
        else:
            state.base_ticket = state.next_ticket
            state.base_time = max(now, state.pause_until)
        state.sched_rate = rate
    return rate or None


def _roll(state: State, now: float, tuning: Tuning) -> None:
    """Move the admission-count window forward to the one holding `now`."""
    elapsed = now - state.win_start
    if elapsed < tuning.window:
        return
    windows = math.floor(elapsed / tuning.window)
    state.win_prev = state.win_count if windows == 1 else 0.0
    state.win_count = 0.0
    state.win_start += windows * tuning.window
