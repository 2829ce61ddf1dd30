"""Fleet-wide rate limits per provider: concurrency, RPM, TPM, and what 429s teach.

maths.py     the state and its two steps (acquire, release), pure, on a given clock
scripts.py   the same steps in Lua, run atomically by Redis on its own clock
backends.py  where the state lives: Redis (the fleet) or memory (tests)
limiter.py   a worker's side: wait for capacity, make the call, report the outcome
in_flight.py a worker process's own cap on calls in flight (CHATQ_IN_FLIGHT)
"""

from worker.limits.backends import LimitBackend, MemoryBackend, RedisBackend
from worker.limits.in_flight import CallSlots
from worker.limits.limiter import (
    LAST_TURN,
    Limiter,
    estimate_prompt_tokens,
    estimate_request_tokens,
)
from worker.limits.maths import Limits, Tuning

__all__ = [
    "LAST_TURN",
    "CallSlots",
    "LimitBackend",
    "Limiter",
    "Limits",
    "MemoryBackend",
    "RedisBackend",
    "Tuning",
    "estimate_prompt_tokens",
    "estimate_request_tokens",
]
