"""kombu's Redis broker transport, hardened and made cheaper per message.

- A queue entry that is not a kombu message (garbage pushed straight onto a list) is
  logged and dropped instead of stopping the worker with "Unrecoverable error".
- A channel whose broker connection was already closed (a Redis restart makes Celery
  close its connection twice: once when it fails, once when it reconnects) has no
  connection details left; kombu still tried to open a pool through it to restore the
  messages it held, and died with "'NoneType' object has no attribute 'hostname'",
  taking the worker down. It now fails with a connection error, which Celery ignores
  while it reconnects; those messages stay in Redis's unacknowledged set, and the
  fleet's sweeper sends their jobs again.
- kombu builds a new `redis.Redis` object for every command it sends outside its
  polling loop (each event, each acknowledgement, each publish), and redis-py 8 fills a
  table of several hundred response callbacks for each one: a sixth of a worker's CPU
  on short jobs. A client is only a handle on the channel's connection pool and safe to
  share between threads, so the channel keeps one per pool.
- kombu names a connection's transport in its URL (`as_uri()`) by the class path it was
  given, so monitoring saw `worker.broker:Transport://...` and Flower's Broker page and
  queue lengths refused it ("'redis' broker is not supported"). `Connection` names it
  by its URL scheme, as kombu names its own Redis transport.
"""

from __future__ import annotations

import logging
from typing import Any

import kombu
import redis
from kombu.transport import redis as kombu_redis

__all__ = ["TRANSPORT", "Connection", "Transport"]

#: How Celery's configuration names this transport (`broker_transport`).
TRANSPORT = "worker.broker:Transport"

log = logging.getLogger(__name__)


class Channel(kombu_redis.Channel):
    def _brpop_read(self, **options: object) -> bool:
        try:
            return super()._brpop_read(**options)
        except (ValueError, TypeError, KeyError) as exc:  # json/str decoding of the entry
            log.error("dropped a queue entry that is not a task message (%s)", type(exc).__name__)
            return False

    def _get_pool(self, asynchronous: bool = False) -> Any:
        transport = self.connection
        if transport is None or transport.client is None:
            raise redis.ConnectionError("the broker connection is already closed")
        return super()._get_pool(asynchronous=asynchronous)

    def _create_client(self, asynchronous: bool = False) -> Any:
        if asynchronous:  # the polling loop's own client, on its own pool
            return super()._create_client(asynchronous=True)
        pool = self.pool
        client = self.__dict__.get("_shared_client")
        if client is None or client.connection_pool is not pool:  # first, or pool renewed
            client = super()._create_client()
            self._shared_client = client
        return client


class Transport(kombu_redis.Transport):
    """kombu's Redis transport with the hardened channel."""

    Channel = Channel


class Connection(kombu.Connection):
    """A kombu connection whose URL names chatq's transport as `redis` (or `rediss`)."""

    def info(self) -> dict[str, Any]:
        info = super().info()
        if info.get("transport") in (TRANSPORT, Transport):
            info["transport"] = "rediss" if self.ssl else "redis"
        return info
