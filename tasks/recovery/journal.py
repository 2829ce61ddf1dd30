"""The journal: what every published message carries, kept in Redis until its jobs end.

A producer writes one entry per message before publishing it (its queue, its task,
its `[task_id, request]` pairs, the batch and line positions they belong to, and the
Redis server's time); the worker that takes the message marks it received; the
sweeper (tasks/recovery/sweeper.py) deletes it once every job has a result, and
publishes again the jobs of a message that was lost. So a message that vanished with a
crashed Redis connection, or with a killed worker, is found and sent again by the
fleet itself, with nobody following the batch.

    chatq:journal:<id>            hash: q (queue), t (published, server time), k (task),
                                  j (JSON jobs), b (batch id), p (JSON positions),
                                  r (receiver host:pid), rt (received, server time)
    chatq:journal:queued:<queue>  sorted set: ids not yet received, by publish time
    chatq:journal:running         sorted set: ids received, by receive time
    chatq:journal:front           hash: queue -> the publish time of the newest
                                  message received from it (queues are FIFO: an
                                  entry published well before it and never received
                                  was lost)

Every key expires with the results (CHATQ_RESULT_TTL).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import redis

__all__ = ["Entry", "Journal", "Receipts", "server_time"]

PREFIX = "chatq:journal:"
RUNNING = PREFIX + "running"
FRONT = PREFIX + "front"

# One round trip for the worker: mark the entry received, move it from its queue's
# waiting set to the running set, and advance the queue's front.
_RECEIVED = """
local q = redis.call('HGET', KEYS[1], 'q')
if not q then return 0 end
local t = tonumber(redis.call('HGET', KEYS[1], 't')) or 0
local now = redis.call('TIME')
local at = tonumber(now[1]) + tonumber(now[2]) / 1e6
redis.call('HSET', KEYS[1], 'r', ARGV[1], 'rt', string.format('%.6f', at))
redis.call('ZREM', ARGV[2] .. q, ARGV[3])
redis.call('ZADD', KEYS[2], string.format('%.6f', at), ARGV[3])
redis.call('EXPIRE', KEYS[2], ARGV[4])
local front = tonumber(redis.call('HGET', KEYS[3], q)) or 0
if t > front then redis.call('HSET', KEYS[3], q, string.format('%.6f', t)) end
redis.call('EXPIRE', KEYS[3], ARGV[4])
return 1
"""


class Receipts:
    """The worker's side of the journal, on its event loop: mark the entry of a message
    it took as received (`Journal.received`, its commands batched with the jobs')."""

    def __init__(self, client: Any, *, ttl: int):
        self.ttl = ttl
        self._received = client.register_script(_RECEIVED)

    async def received(self, entry_id: str, holder: str) -> bool:
        """As `Journal.received`."""
        return bool(await self._received(**_receipt(entry_id, holder, self.ttl)))


def _receipt(entry_id: str, holder: str, ttl: int) -> dict[str, list]:
    """The keys and arguments of the receipt script for one entry."""
    return {
        "keys": [PREFIX + entry_id, RUNNING, FRONT],
        "args": [holder, PREFIX + "queued:", entry_id, ttl],
    }


def server_time(client: redis.Redis) -> float:
    """The Redis server's clock (every journal time is on it, whatever host writes)."""
    sec, usec = client.time()
    return sec + usec / 1e6


@dataclass
class Entry:
    """One journal entry as read back: a published message and its jobs."""

    id: str
    queue: str
    task: str
    published: float
    jobs: list[list[Any]]
    batch: str | None = None
    positions: list[int] | None = None
    receiver: str | None = None
    received: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def job_ids(self) -> list[str]:
        return [job[0] for job in self.jobs]


class Journal:
    """Journal entries in the queue's Redis.

    Args:
        client: a client of the queue's Redis (bytes responses).
        ttl: seconds an entry lives at most (CHATQ_RESULT_TTL).
    """

    def __init__(self, client: redis.Redis, *, ttl: int):
        self.client = client
        self.ttl = int(ttl)
        self._received = client.register_script(_RECEIVED)

    @staticmethod
    def key(entry_id: str) -> str:
        return PREFIX + entry_id

    @staticmethod
    def queued_key(queue: str) -> str:
        return PREFIX + "queued:" + queue

    # -- producers -----------------------------------------------------------------------
    def record(
        self,
        pipe: Any,
        entry_id: str,
        *,
        queue: str,
        task: str,
        jobs: Sequence[Sequence[Any]],
        at: float,
        batch: str | None = None,
        positions: Sequence[int] | None = None,
    ) -> None:
        """Add one entry to `pipe` (a Redis pipeline the caller executes before it
        publishes the message). An entry of the same id (a single job sent again)
        starts over: not received, waiting in its queue."""
        fields: dict[str, str] = {
            "q": queue,
            "k": task,
            "t": f"{at:.6f}",
            "j": json.dumps(jobs, separators=(",", ":"), ensure_ascii=False),
        }
        if batch is not None:
            fields["b"] = batch
            fields["p"] = json.dumps(list(positions or []), separators=(",", ":"))
        key = self.key(entry_id)
        pipe.hdel(key, "r", "rt")
        pipe.zrem(RUNNING, entry_id)
        pipe.hset(key, mapping=fields)
        pipe.expire(key, self.ttl)
        pipe.zadd(self.queued_key(queue), {entry_id: at})
        pipe.expire(self.queued_key(queue), self.ttl)

    # -- workers -------------------------------------------------------------------------
    def received(self, entry_id: str, holder: str) -> bool:
        """Mark the entry of a message this worker (`host:pid`) just took; whether it
        had one (messages published by other clients have none)."""
        return bool(self._received(**_receipt(entry_id, holder, self.ttl)))

    # -- the sweeper ---------------------------------------------------------------------
    def running(self, *, limit: int = 1000) -> list[str]:
        """Ids of received entries, oldest first."""
        return [_text(m) for m in self.client.zrange(RUNNING, 0, limit - 1)]

    def waiting_before(self, queue: str, before: float, *, limit: int = 1000) -> list[str]:
        """Ids of entries of `queue` never received and published before `before`."""
        found = self.client.zrangebyscore(
            self.queued_key(queue), "-inf", f"({before!r}", start=0, num=limit
        )
        return [_text(m) for m in found]

    def front(self, queue: str) -> float | None:
        """The publish time of the newest message received from `queue`, if any."""
        value = self.client.hget(FRONT, queue)
        return float(value) if value is not None else None

    def entries(self, ids: Sequence[str]) -> list[Entry | None]:
        """The entries of `ids` (None where one is gone), in one round trip."""
        if not ids:
            return []
        pipe = self.client.pipeline(transaction=False)
        for entry_id in ids:
            pipe.hgetall(self.key(entry_id))
        return [_entry(i, raw) for i, raw in zip(ids, pipe.execute(), strict=True)]

    def forget(self, entries: Iterable[Entry]) -> None:
        """Delete entries whose jobs have all ended (or that were sent again)."""
        pipe = self.client.pipeline(transaction=False)
        count = 0
        for entry in entries:
            pipe.delete(self.key(entry.id))
            pipe.zrem(RUNNING, entry.id)
            pipe.zrem(self.queued_key(entry.queue), entry.id)
            count += 1
        if count:
            pipe.execute()

    def drop_ids(self, queue: str | None, ids: Iterable[str]) -> None:
        """Remove index members whose entry hash is gone (expired or forgotten)."""
        ids = list(ids)
        if not ids:
            return
        pipe = self.client.pipeline(transaction=False)
        pipe.zrem(RUNNING, *ids)
        if queue is not None:
            pipe.zrem(self.queued_key(queue), *ids)
        pipe.execute()


def _entry(entry_id: str, raw: dict[bytes, bytes]) -> Entry | None:
    if not raw:
        return None
    data = {_text(k): _text(v) for k, v in raw.items()}
    try:
        return Entry(
            id=entry_id,
            queue=data["q"],
            task=data["k"],
            published=float(data["t"]),
            jobs=json.loads(data["j"]),
            batch=data.get("b"),
            positions=json.loads(data["p"]) if "p" in data else None,
            receiver=data.get("r"),
            received=float(data["rt"]) if "rt" in data else None,
        )
    except (KeyError, ValueError):
        return None


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
