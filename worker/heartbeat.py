"""Worker liveness any host can read: one short-lived key per worker process.

Every worker process renews `chatq:worker:<host>:<pid>` (expiring after
`Settings.heartbeat_ttl`) every sweep interval. A job claim's token starts with the
same `host:pid` (worker/claims.py), so whoever finds a claim can tell from Redis alone
whether its holder still runs, whatever machine it is on.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
import time
from collections.abc import Iterable

import redis

__all__ = ["PREFIX", "Heartbeat", "alive", "holder_of", "this_process"]

log = logging.getLogger(__name__)

PREFIX = "chatq:worker:"


def this_process() -> str:
    """`host:pid` of this process, as claim tokens and heartbeat keys name it."""
    return f"{socket.gethostname()}:{os.getpid()}"


def holder_of(token: bytes | str) -> str | None:
    """`host:pid` of a claim token `host:pid:nonce`, or None when it is not one."""
    text = token.decode() if isinstance(token, bytes) else token
    parts = text.rsplit(":", 2)
    if len(parts) != 3 or not parts[1].isdigit():
        return None
    return f"{parts[0]}:{parts[1]}"


def alive(client: redis.Redis, holders: Iterable[str]) -> dict[str, bool]:
    """For each `host:pid`, whether its heartbeat is current (one round trip)."""
    names = sorted(set(holders))
    if not names:
        return {}
    pipe = client.pipeline(transaction=False)
    for name in names:
        pipe.exists(PREFIX + name)
    return {name: bool(found) for name, found in zip(names, pipe.execute(), strict=True)}


class Heartbeat:
    """Renews this process's heartbeat from a daemon thread until stopped.

    A failed renewal (Redis restarting) is logged at DEBUG and tried again at the next
    beat: the key outlives two missed beats, so a short outage reads as no death.

    Args:
        client: a client of the queue's Redis.
        interval: seconds between renewals.
        ttl: seconds the key lives without renewal.
    """

    def __init__(self, client: redis.Redis, *, interval: float, ttl: float):
        self._client = client
        self.interval = interval
        self.ttl_ms = max(1, int(ttl * 1000))
        self.name = this_process()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def beat(self) -> bool:
        """Renew the key now; whether Redis took it."""
        try:
            self._client.set(PREFIX + self.name, str(time.time()), px=self.ttl_ms)
            return True
        except redis.RedisError as exc:
            log.debug("heartbeat not renewed (%s)", type(exc).__name__)
            return False

    def start(self) -> Heartbeat:
        self.beat()
        self._thread = threading.Thread(target=self._run, name="chatq-heartbeat", daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.beat()

    def stop(self) -> None:
        """Stop renewing and remove the key (a clean exit is no death to recover from)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2)
        with contextlib.suppress(redis.RedisError):  # else the key expires on its own
            self._client.delete(PREFIX + self.name)
