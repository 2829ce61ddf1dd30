"""Per-provider counters kept in the process: calls, errors by type, latency."""

from __future__ import annotations

import threading
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Telemetry"]


@dataclass
class _Stats:
    calls: int = 0
    ok: int = 0
    errors: Counter = field(default_factory=Counter)
    latency_ms_total: float = 0.0
    latency_ms_max: float = 0.0


class Telemetry:
    """Thread-safe counters, one set per provider, readable with `snapshot()`."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._stats: dict[str, _Stats] = {}

    def record(self, provider: str, latency_ms: float, error: BaseException | None) -> None:
        """Count one upstream call of `provider`, failed with `error` when not None."""
        with self._lock:
            stats = self._stats.setdefault(provider, _Stats())
            stats.calls += 1
            stats.latency_ms_total += latency_ms
            stats.latency_ms_max = max(stats.latency_ms_max, latency_ms)
            if error is None:
                stats.ok += 1
            else:
                stats.errors[type(error).__name__] += 1

    def snapshot(self) -> dict[str, dict[str, Any]]:
        """`{provider: {calls, ok, errors: {type: n}, latency_ms_avg, latency_ms_max}}`."""
        with self._lock:
            return {
                name: {
                    "calls": s.calls,
                    "ok": s.ok,
                    "errors": dict(s.errors),
                    "latency_ms_avg": round(s.latency_ms_total / s.calls, 2) if s.calls else 0.0,
                    "latency_ms_max": round(s.latency_ms_max, 2),
                }
                for name, s in sorted(self._stats.items())
            }
