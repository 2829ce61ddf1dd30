"""At most one execution of a job id at a time, and none after it has succeeded.

The broker delivers at least once: a job comes back after a worker dies, a batch is
submitted twice, a redelivery races a slow worker. Before any upstream call a worker
claims the job id in Redis (SET NX with an expiry); a second delivery of a job that is
running elsewhere, or that already has a successful result, makes no upstream call.
The claim expires before the broker's visibility timeout, so a job whose worker died
holding it is run again by the next delivery.
"""

from __future__ import annotations

import os
import socket
import uuid

import redis

__all__ = ["Claims"]

_RELEASE = """
if redis.call('get', KEYS[1]) == ARGV[1] then
  return redis.call('del', KEYS[1])
end
return 0
"""


class Claims:
    """Job-id claims in Redis.

    Args:
        client: the Redis the queue uses.
        ttl: seconds a claim lives if its holder never releases it.
    """

    PREFIX = "chatq:claim:"

    def __init__(self, client: redis.Redis, *, ttl: float):
        self._client = client
        self._ttl_ms = max(1, int(ttl * 1000))
        self._release = client.register_script(_RELEASE)
        self._owner = f"{socket.gethostname()}:{os.getpid()}"

    def claim(self, job_id: str) -> str | None:
        """A token when this caller now holds `job_id`; None when someone else does."""
        token = f"{self._owner}:{uuid.uuid4().hex[:8]}"
        ok = self._client.set(self.PREFIX + job_id, token, nx=True, px=self._ttl_ms)
        return token if ok else None

    def release(self, job_id: str, token: str) -> None:
        """Give the claim up, if it is still ours."""
        self._release(keys=[self.PREFIX + job_id], args=[token])
