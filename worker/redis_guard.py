"""Where Redis failures become chatq's: bounded reconnects, then `RedisUnavailable`.

A Redis restart (or a failover) drops every connection for a second or two. The
worker's client for claims and limits reconnects and repeats the command for up to
`RECONNECT_WINDOW` seconds, and results are stored with retries as long, so such a
blip costs a pause, not a job. Past that, the error (from redis-py, kombu or Celery's
result backend) is translated here into `RedisUnavailable`, naming the server with
its password redacted, instead of a traceback.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import redis
from celery.exceptions import BackendError
from kombu.exceptions import OperationalError
from redis.asyncio.retry import Retry as AsyncRetry
from redis.backoff import ExponentialBackoff
from redis.retry import Retry

from chatq.errors import RedisUnavailable
from chatq.redaction import redact

__all__ = [
    "RECONNECT_WINDOW",
    "UNREACHABLE",
    "bounded_client",
    "reconnecting",
    "reconnecting_async",
    "translated",
    "unavailable",
]

#: About how long (seconds) a client keeps reconnecting before it gives up.
RECONNECT_WINDOW = 20.0
_BACKOFF_CAP = 2.0


def reconnecting(window: float = RECONNECT_WINDOW) -> Retry:
    """A redis-py retry policy that reconnects for about `window` seconds: waits of
    0.1, 0.2, ... doubling up to 2 s, as many as it takes to cover the window."""
    return Retry(*_reconnect_waits(window))


def reconnecting_async(window: float = RECONNECT_WINDOW) -> AsyncRetry:
    """`reconnecting`, for redis-py's asyncio client (the worker's event loop)."""
    return AsyncRetry(*_reconnect_waits(window))


def _reconnect_waits(window: float) -> tuple[ExponentialBackoff, int]:
    backoff = ExponentialBackoff(cap=_BACKOFF_CAP, base=0.05)
    waits, total = 0, 0.0
    while total < window:
        waits += 1
        total += backoff.compute(waits)
    return backoff, waits


def bounded_client(url: str, *, timeout: float) -> redis.Redis:
    """A client for a producer or a command, which must never hang: a Redis that does
    not answer a command within `timeout` seconds (frozen, or unreachable) raises
    at once; a refused connection (Redis restarting, which takes a second or two) is
    tried again for about half as long.
    """
    backoff = ExponentialBackoff(cap=1.0, base=0.05)
    tries, total = 0, 0.0
    while total < timeout / 2:
        tries += 1
        total += backoff.compute(tries)
    return redis.Redis.from_url(
        url,
        socket_timeout=timeout,
        socket_connect_timeout=min(5.0, timeout),
        health_check_interval=25,
        retry=Retry(backoff, tries, supported_errors=(redis.ConnectionError,)),
    )


def unavailable(url: str, error: BaseException) -> RedisUnavailable:
    """The chatq error for a Redis at `url` that could not be reached."""
    reason = " ".join(str(error).split()) or type(error).__name__
    if isinstance(error, (redis.TimeoutError, TimeoutError)):
        return RedisUnavailable(f"Redis at {redact(url)} did not answer in time ({reason})")
    return RedisUnavailable(f"Redis at {redact(url)} is unreachable ({reason})")


#: How a Redis that cannot be reached shows itself: through redis-py, through kombu
#: (publishing) and through Celery's result backend (after its own retries).
UNREACHABLE = (
    redis.ConnectionError,
    redis.TimeoutError,
    TimeoutError,
    OperationalError,
    BackendError,
)


@contextlib.contextmanager
def translated(url: str) -> Iterator[None]:
    """Turn a Redis connection failure inside the block into `RedisUnavailable`."""
    try:
        yield
    except UNREACHABLE as exc:
        # Celery's backend errors say only "failed to get meta": the cause says why.
        cause = exc.__cause__ or exc.__context__ if isinstance(exc, BackendError) else None
        raise unavailable(url, cause or exc) from None
