"""The Redis broker transport, hardened: a queue entry that is not a kombu message
(garbage pushed straight onto a list) is logged and dropped instead of stopping the
worker with "Unrecoverable error"."""

from __future__ import annotations

import logging

from kombu.transport import redis as kombu_redis

__all__ = ["Transport"]

log = logging.getLogger(__name__)


class Channel(kombu_redis.Channel):
    def _brpop_read(self, **options: object) -> bool:
        try:
            return super()._brpop_read(**options)
        except (ValueError, TypeError, KeyError) as exc:  # json/str decoding of the entry
            log.error("dropped a queue entry that is not a task message (%s)", type(exc).__name__)
            return False


class Transport(kombu_redis.Transport):
    """kombu's Redis transport with the hardened channel."""

    Channel = Channel
