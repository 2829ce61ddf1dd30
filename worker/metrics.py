"""Fleet-wide metrics in Prometheus's format, counted in Redis.

Celery workers are separate processes on separate machines, so no process's memory holds
the fleet's totals. Each counter is a Redis hash (`chatq:metrics:<name>`, one field per
label set). A worker adds up its jobs' numbers in memory and writes them once a second
(`MetricsBuffer`, from its event loop); `MetricsRecorder` writes one job's at once, in
one pipelined round trip. `FleetCollector` reads the hashes back (and measures the
gauges: calls in flight from the fleet limiter's leases, queue depths by LLEN), so every
process that can reach Redis exposes the same numbers: a worker's optional endpoint
(`CHATQ_METRICS_PORT`), the HTTP gateway, or `chatq metrics`.

Metrics (all prefixed `chatq_`): `jobs_total{provider,outcome}`,
`upstream_calls_total{provider}`, `errors_total{provider,error,status}`,
`retries_total{provider,reason}`, `rate_limited_total{provider}`,
`limiter_wait_seconds_total{provider}`, `slot_wait_seconds_total{provider}`,
`tokens_total{provider,direction}`,
`cost_dollars_total{provider}` (where a cost is known), `calls_in_flight{provider}`,
`queue_depth{queue}`.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
import weakref
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import redis
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from chatq.errors import ChatqError, RateLimited
from config import PROVIDERS, spec
from worker.limits.backends import keys_of

__all__ = [
    "COUNTERS",
    "KEY_PREFIX",
    "FleetCollector",
    "JobStats",
    "MetricsBuffer",
    "MetricsRecorder",
    "exposition",
    "registry_for",
]

log = logging.getLogger(__name__)

KEY_PREFIX = "chatq:metrics:"
#: When this process last renewed each counter hash's TTL, by Redis client.
_RENEWED: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
#: Separates label values in a hash field (no provider, class or queue name holds it).
_SEP = "|"


@dataclass(frozen=True)
class _Counter:
    doc: str
    labels: tuple[str, ...]


#: Every counter: its name (without `chatq_` and `_total`), help text and labels.
COUNTERS = {
    "jobs": _Counter("Chat jobs ended, by outcome (succeeded, failed).", ("provider", "outcome")),
    "upstream_calls": _Counter("Calls made to the provider (a job's attempts).", ("provider",)),
    "errors": _Counter(
        "Jobs that failed, by error class and upstream status.", ("provider", "error", "status")
    ),
    "retries": _Counter(
        "Upstream calls retried, by the failed call's error class and status.",
        ("provider", "reason"),
    ),
    "rate_limited": _Counter("429 answers from the provider.", ("provider",)),
    "limiter_wait_seconds": _Counter(
        "Seconds jobs waited for a turn at the provider (fleet-wide limits).", ("provider",)
    ),
    "slot_wait_seconds": _Counter(
        "Seconds calls waited for a call slot in their worker process (CHATQ_IN_FLIGHT).",
        ("provider",),
    ),
    "tokens": _Counter("Tokens of answered jobs, in and out.", ("provider", "direction")),
    "cost_dollars": _Counter(
        "US dollars answered jobs cost, where known (reported, or from CHATQ_PRICES).",
        ("provider",),
    ),
}


@dataclass
class JobStats:
    """What one job did, filled in while it runs and recorded once when it ends."""

    provider: str | None = None
    calls: int = 0
    #: Seconds waited for turns at the provider, and then for a slot in the worker.
    waited: float = 0.0
    slot_waited: float = 0.0
    rate_limited: int = 0
    retries: Counter[str] = field(default_factory=Counter)

    def note_retry(self, error: ChatqError) -> None:
        """A call failed with `error` and will be retried."""
        self.retries[error.label] += 1
        self.rate_limited += isinstance(error, RateLimited)


class MetricsRecorder:
    """Adds one job's numbers to the fleet's counters (one pipelined round trip). Each
    counter's hash lives `ttl` seconds past its last write (default a week, as results
    do): a fleet that stops leaves nothing in Redis for ever, and Prometheus reads a
    counter that comes back at zero as a reset."""

    def __init__(self, client: redis.Redis, *, ttl: int = 7 * 24 * 3600):
        self.client = client
        self.ttl = ttl

    def job_ended(
        self, stats: JobStats, *, response: dict | None = None, error: ChatqError | None = None
    ) -> None:
        """Count a job that ended with `response` (a ChatResponse dict) or `error`.

        Raises:
            redis.RedisError: the counters could not be written (callers log and go on).
        """
        pipe = self.client.pipeline(transaction=False)
        for command in _commands(_increments(stats, response, error), self.client, self.ttl):
            pipe.execute_command(*command)
        pipe.execute()


class MetricsBuffer:
    """A worker process's counts, added up in memory and written to the fleet's
    counters every `interval` seconds (and when the worker stops), from its event loop.

    Thousands of jobs a second each writing a handful of counters would cost Redis and
    the worker more than the jobs' own claims and results; added up first, a second's
    jobs cost one write per counter. A process killed outright loses at most the last
    second's counts (metrics, never outcomes).

    Args:
        client: the loop's Redis (worker/redis_batch.py), with `execute_command`.
        ttl: as for MetricsRecorder.
        interval: seconds between writes.
    """

    def __init__(self, client: Any, *, ttl: int = 7 * 24 * 3600, interval: float = 1.0):
        self.client = client
        self.ttl = ttl
        self.interval = interval
        self._counts: Counter[tuple[str, tuple[str, ...]]] = Counter()
        self._writer: asyncio.Task | None = None

    def job_ended(
        self, stats: JobStats, *, response: dict | None = None, error: ChatqError | None = None
    ) -> None:
        """Add one ended job's numbers; call it on the loop."""
        for name, labels, amount in _increments(stats, response, error):
            self._counts[(name, labels)] += amount
        if self._writer is None or self._writer.done():
            self._writer = asyncio.get_running_loop().create_task(self._write_every())

    async def flush(self) -> None:
        """Write what was added up so far; kept for the next write if Redis fails."""
        counts, self._counts = self._counts, Counter()
        adds = [(name, labels, amount) for (name, labels), amount in counts.items()]
        commands = _commands(adds, self.client, self.ttl)
        try:
            await asyncio.gather(*(self.client.execute_command(*c) for c in commands))
        except redis.RedisError as exc:
            log.info("metrics not written yet (%s): kept for the next write", type(exc).__name__)
            self._counts.update(counts)

    async def _write_every(self) -> None:
        while self._counts:
            await asyncio.sleep(self.interval)
            await self.flush()


_Increment = tuple[str, tuple[str, ...], float]


def _increments(
    stats: JobStats, response: dict | None, error: ChatqError | None
) -> list[_Increment]:
    """What one ended job adds to each counter (name, label values, amount)."""
    provider = stats.provider or "unknown"
    adds: list[_Increment] = [
        ("jobs", (provider, "failed" if error is not None else "succeeded"), 1),
        ("upstream_calls", (provider,), stats.calls),
        ("rate_limited", (provider,), stats.rate_limited + isinstance(error, RateLimited)),
        ("limiter_wait_seconds", (provider,), round(stats.waited, 6)),
        ("slot_wait_seconds", (provider,), round(stats.slot_waited, 6)),
    ]
    adds += [("retries", (provider, reason), n) for reason, n in stats.retries.items()]
    if error is not None:
        adds.append(("errors", (provider, type(error).__name__, str(error.status or "")), 1))
    if response is not None:
        adds.append(("tokens", (provider, "in"), int(response.get("input_tokens") or 0)))
        adds.append(("tokens", (provider, "out"), int(response.get("output_tokens") or 0)))
        cost = response.get("cost")
        if cost and not response.get("cached"):
            adds.append(("cost_dollars", (provider,), float(cost)))
    return adds


def _commands(adds: Iterable[_Increment], client: Any, ttl: int) -> list[tuple[Any, ...]]:
    """The Redis commands adding `adds` to the counters' hashes, and renewing their TTL."""
    commands: list[tuple[Any, ...]] = []
    written = set()
    for name, labels, amount in adds:
        if not amount:
            continue
        key, fieldname = KEY_PREFIX + name, _SEP.join(labels)
        if isinstance(amount, float):
            commands.append(("HINCRBYFLOAT", key, fieldname, repr(amount)))
        else:
            commands.append(("HINCRBY", key, fieldname, int(amount)))
        written.add(key)
    # A job's numbers go to a handful of hashes; renewing their TTL on every write
    # would double the commands, so each process renews a hash now and then.
    now = time.monotonic()
    renewed = _RENEWED.setdefault(client, {})
    for key in sorted(written):
        if now - renewed.get(key, -math.inf) >= min(60.0, ttl / 10):
            commands.append(("EXPIRE", key, ttl))
            renewed[key] = now
    return commands


class FleetCollector(Collector):
    """Reads the fleet's counters from Redis and measures its gauges at each scrape.

    Args:
        client: a client of the queue's Redis.
        queues: the queues whose depth is shown.
        providers: the providers whose calls in flight are shown (their fleet limiter's
            unexpired leases; a provider with no limits, the mock, holds none).
    """

    def __init__(self, client: redis.Redis, *, queues: Sequence[str], providers=PROVIDERS):
        self.client = client
        self.queues = list(queues)
        self.providers = [p for p in providers if not spec(p).offline]

    def collect(self) -> Iterator[Metric]:
        pipe = self.client.pipeline(transaction=False)
        for name in COUNTERS:
            pipe.hgetall(KEY_PREFIX + name)
        for queue in self.queues:
            pipe.llen(queue)
        pipe.time()
        *answers, (sec, usec) = pipe.execute()
        counters, depths = answers[: len(COUNTERS)], answers[len(COUNTERS) :]
        for (name, counter), values in zip(COUNTERS.items(), counters, strict=True):
            family = CounterMetricFamily(f"chatq_{name}", counter.doc, labels=counter.labels)
            for labels, value in sorted(_decoded(values)):
                family.add_metric(labels.split(_SEP), value)
            yield family
        depth = GaugeMetricFamily("chatq_queue_depth", "Messages waiting.", labels=("queue",))
        for queue, length in zip(self.queues, depths, strict=True):
            depth.add_metric([queue], int(length))
        yield depth
        yield self._in_flight(float(sec) + float(usec) / 1e6)

    def _in_flight(self, now: float) -> Metric:
        pipe = self.client.pipeline(transaction=False)
        for provider in self.providers:
            pipe.zcount(keys_of(provider)[1], f"({now!r}", "+inf")
        family = GaugeMetricFamily(
            "chatq_calls_in_flight", "Calls to the provider under way now.", labels=("provider",)
        )
        for provider, count in zip(self.providers, pipe.execute(), strict=True):
            family.add_metric([provider], int(count))
        return family


def _decoded(values: dict) -> Iterable[tuple[str, float]]:
    for key, value in values.items():
        key = key.decode() if isinstance(key, bytes) else str(key)
        yield key, float(value)


def registry_for(client: redis.Redis, *, queues: Sequence[str]) -> CollectorRegistry:
    """A registry holding only the fleet's metrics, for an HTTP endpoint to serve."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(FleetCollector(client, queues=queues))
    return registry


def exposition(client: redis.Redis, *, queues: Sequence[str]) -> str:
    """The fleet's metrics in Prometheus's text format."""
    return generate_latest(registry_for(client, queues=queues)).decode()
