"""At most one execution of a job id at a time, and none after it has succeeded.

The broker delivers at least once: a job comes back after a worker dies, a batch is
submitted twice, a redelivery races a slow worker. Before any upstream call a worker
claims the job id in Redis (SET NX with an expiry); a second delivery of a job that is
running elsewhere, or that already has a successful result, makes no upstream call.
The claim expires before the broker's visibility timeout, so a job whose worker died
holding it is run again by the next delivery.

Claims are made on the worker's event loop: `client` is the loop's Redis (its
commands batched with those of every other job in flight).
"""

from __future__ import annotations

import json
import os
import socket
from dataclasses import dataclass
from typing import Any, Protocol

from worker.tokens import new_token

__all__ = ["Claim", "Claims"]


@dataclass(frozen=True)
class Claim:
    """The outcome of claiming a job id: "claimed" (token set), "done" (stored set:
    the stored result document) or "busy"."""

    state: str
    token: str | None = None
    stored: dict | None = None


# One round trip: a job whose stored result is a success needs no claim (and no call).
# A claim already holding this very token is ours: the client repeated the command
# after a dropped connection, and the first attempt took it.
_CLAIM = """
if redis.call('get', KEYS[1]) == ARGV[1] then
  return {'claimed', ARGV[1]}
end
local meta = redis.call('get', KEYS[2])
if meta then
  local ok, doc = pcall(cjson.decode, meta)
  if ok and type(doc) == 'table' and doc['status'] == 'SUCCESS' then
    return {'done', meta}
  end
end
if redis.call('set', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
  return {'claimed', ARGV[1]}
end
return {'busy', ''}
"""

_RELEASE_MINE = """
local token = redis.call('get', KEYS[1])
if token and string.sub(token, 1, string.len(ARGV[1])) == ARGV[1] then
  return redis.call('del', KEYS[1])
end
return 0
"""

_RELEASE = """
if redis.call('get', KEYS[1]) == ARGV[1] then
  return redis.call('del', KEYS[1])
end
return 0
"""


class _ScriptClient(Protocol):
    def register_script(self, script: str) -> Any: ...


class Claims:
    """Job-id claims in Redis.

    Args:
        client: the Redis the queue uses, as the event loop reaches it: an object with
            redis.asyncio's `register_script` (worker/redis_batch.py's batcher).
        ttl: seconds a claim lives if its holder never releases it.
    """

    PREFIX = "chatq:claim:"

    def __init__(self, client: _ScriptClient, *, ttl: float):
        self._client = client
        self._ttl_ms = max(1, int(ttl * 1000))
        self._release = client.register_script(_RELEASE)
        self._release_mine = client.register_script(_RELEASE_MINE)
        self._claim = client.register_script(_CLAIM)
        self._owner = f"{socket.gethostname()}:{os.getpid()}"

    async def claim(self, job_id: str, *, result_key: str) -> Claim:
        """Claim `job_id` unless its result (at `result_key`) is already a success.

        Returns:
            Claim("claimed", token) when this caller now holds the job; Claim("done",
            stored=...) with the stored result document when it already succeeded;
            Claim("busy") when another execution holds it.
        """
        token = f"{self._owner}:{new_token()}"
        state, value = await self._claim(
            keys=[self.PREFIX + job_id, result_key], args=[token, self._ttl_ms]
        )
        state = state.decode() if isinstance(state, bytes) else state
        if state == "done":
            return Claim("done", stored=json.loads(value))
        return Claim(state, token=token if state == "claimed" else None)

    async def release(self, job_id: str, token: str) -> None:
        """Give the claim up, if it is still ours."""
        await self._release(keys=[self.PREFIX + job_id], args=[token])

    async def release_mine(self, job_id: str) -> None:
        """Give the claim up if this process holds it, whatever its token."""
        await self._release_mine(keys=[self.PREFIX + job_id], args=[self._owner + ":"])
