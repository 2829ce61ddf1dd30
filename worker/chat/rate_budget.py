"""What an upstream's rate-limit headers say is left of its budget, and until when.

The one place those headers are read. OpenAI and the APIs that copy it send
`x-ratelimit-remaining-requests`/`-tokens` with `x-ratelimit-reset-requests`/`-tokens`
as durations (`120ms`, `2m59.5s`, `1h`); OpenRouter sends `x-ratelimit-remaining` with
`x-ratelimit-reset` as a Unix time in milliseconds. The limiter pauses a provider
fleet-wide when an answer says its budget is spent, so that no call draws a 429.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass

__all__ = ["RateBudget", "parse_reset", "read_budget"]

_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ms|h|m|s)")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
#: A bare number this large is a Unix time in milliseconds, in seconds past the other.
_EPOCH_MS, _EPOCH_S = 1e12, 1e9


@dataclass(frozen=True)
class RateBudget:
    """What is left of a provider's budget (None: not said) and seconds until it resets."""

    requests: float | None = None
    tokens: float | None = None
    requests_reset: float | None = None
    tokens_reset: float | None = None

    def wait(self, tokens: float = 0.0) -> float | None:
        """Seconds every caller should wait before the next call: until the requests
        reset when none remain, until the tokens reset when fewer than `tokens` (a
        call's estimated size, at least one) remain; None when there is no need."""
        waits = []
        if self.requests is not None and self.requests < 1 and self.requests_reset:
            waits.append(self.requests_reset)
        if self.tokens is not None and self.tokens < max(1.0, tokens) and self.tokens_reset:
            waits.append(self.tokens_reset)
        return max(waits) if waits else None


def read_budget(headers: Mapping[str, str], *, now: float | None = None) -> RateBudget | None:
    """The budget `headers` announce, or None when they announce none (resets measured
    from `now`, default the clock). Unreadable values count as absent."""
    lowered = {k.lower(): v for k, v in headers.items() if k[:12].lower() == "x-ratelimit-"}
    if not lowered:  # most answers: read on every call, so the common case is cheap
        return None
    now = time.time() if now is None else now

    def pick(*names: str) -> str | None:
        return next((lowered[n] for n in names if n in lowered), None)

    budget = RateBudget(
        requests=_count(pick("x-ratelimit-remaining-requests", "x-ratelimit-remaining")),
        tokens=_count(pick("x-ratelimit-remaining-tokens")),
        requests_reset=parse_reset(
            pick("x-ratelimit-reset-requests", "x-ratelimit-reset"), now=now
        ),
        tokens_reset=parse_reset(pick("x-ratelimit-reset-tokens"), now=now),
    )
    return None if budget == RateBudget() else budget


def parse_reset(raw: str | None, *, now: float) -> float | None:
    """Seconds until a reset given as a duration (`120ms`, `2m59.5s`, `1h`, `7` seconds)
    or a Unix time (milliseconds or seconds); a time in the past means 0."""
    if raw is None:
        return None
    text = raw.strip().lower()
    try:
        value = float(text)
    except ValueError:
        parts = _PART.findall(text)
        if not parts or "".join(n + u for n, u in parts) != text:
            return None
        return sum(float(n) * _UNITS[u] for n, u in parts)
    if not math.isfinite(value) or value < 0:
        return None
    if value >= _EPOCH_MS:
        return max(0.0, value / 1000.0 - now)
    if value >= _EPOCH_S:
        return max(0.0, value - now)
    return value


def _count(raw: str | None) -> float | None:
    try:
        value = float(raw) if raw is not None else None
    except ValueError:
        return None
    return value if value is not None and math.isfinite(value) and value >= 0 else None
