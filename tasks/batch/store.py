"""A batch as Redis holds it: its record, its per-line index, and its lines' outcomes.

    chatq:batch:<id>          hash: id, kind, source, digest, model, state, lines, ...
    chatq:batch:<id>:lines    list: one compact entry per input line, in input order
    chatq:batch:<id>:queued   bitmap: lines published in the current epoch
    chatq:batch:<id>:done     bitmap: lines whose job has ended (set by the fleet's
                              sweeper and at submit), so the batch is known done
                              without anyone reading every line
    chatq:batch:<id>:cids     set: custom_ids seen while indexing (then dropped)
    chatq:batch:<id>:follower a heartbeat while some process follows the batch
    chatq:batches             sorted set: batch ids by creation time

Every key lives as long as the results do (CHATQ_RESULT_TTL). A line's outcome is its
job's Celery result (`celery-task-meta-<task id>`), read back in input order in chunks
with MGET, so no process ever holds a whole batch in memory.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

import redis

__all__ = [
    "CHUNK",
    "BatchRecord",
    "BatchStore",
    "Outcome",
    "done_at",
    "outcome_of",
]

#: Lines read or written per Redis round trip.
CHUNK = 1000
META_PREFIX = "celery-task-meta-"
CLAIM_PREFIX = "chatq:claim:"
_INDEX = "chatq:batches"

# Line states, as one byte each in a follower's memory.
PENDING, SUCCEEDED, FAILED, CANCELLED, INVALID = 0, 1, 2, 3, 4


@dataclass(frozen=True)
class BatchRecord:
    """A batch's record (what `chatq batch status` and `list` show)."""

    id: str
    kind: str = "batch"
    source: str = ""
    digest: str = ""
    model: str = ""
    state: str = "submitting"
    lines: int = 0
    invalid: int = 0
    epoch: int = 0
    created: float = 0.0
    finished: float | None = None
    options: dict[str, Any] = field(default_factory=dict)
    progress: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_hash(cls, data: dict[bytes, bytes]) -> BatchRecord:
        text = {k.decode(): v.decode() for k, v in data.items()}
        return cls(
            id=text["id"],
            kind=text.get("kind", "batch"),
            source=text.get("source", ""),
            digest=text.get("digest", ""),
            model=text.get("model", ""),
            state=text.get("state", "submitting"),
            lines=int(text.get("lines", 0)),
            invalid=int(text.get("invalid", 0)),
            epoch=int(text.get("epoch", 0)),
            created=float(text.get("created", 0)),
            finished=float(text["finished"]) if text.get("finished") else None,
            options=json.loads(text.get("options", "{}")),
            progress=json.loads(text.get("progress", "{}")),
        )


@dataclass(frozen=True)
class Outcome:
    """A line's outcome: state (a module constant), its response or its error, and
    when its result was stored (epoch seconds)."""

    state: int
    response: dict[str, Any] | None = None
    error: dict[str, Any] | None = None
    at: float | None = None


_PENDING = Outcome(PENDING)


def outcome_of(meta: bytes | None) -> Outcome:
    """A line's outcome from its job's stored Celery result (None: no result yet)."""
    if meta is None:
        return _PENDING
    try:
        doc = json.loads(meta)
    except ValueError:
        return _PENDING
    status = doc.get("status")
    if status == "SUCCESS":
        return Outcome(SUCCEEDED, response=doc.get("result"), at=done_at(doc))
    if status == "FAILURE":
        return Outcome(FAILED, error=_failure(doc.get("result")), at=done_at(doc))
    if status == "REVOKED":
        return Outcome(CANCELLED, error=CANCELLED_ERROR, at=done_at(doc))
    return _PENDING


def done_at(doc: dict[str, Any] | None) -> float | None:
    """A stored result's `date_done` as epoch seconds (Celery writes ISO times in UTC)."""
    raw = (doc or {}).get("date_done")
    if not isinstance(raw, str):
        return None
    try:
        when = datetime.fromisoformat(raw)
    except ValueError:
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return when.timestamp()


CANCELLED_ERROR = {"type": "Cancelled", "message": "the batch was cancelled before this line ran"}


def _failure(result: Any) -> dict[str, Any]:
    """`{"type", "message"}` of a stored Celery failure (chatq errors keep their facts)."""
    if not isinstance(result, dict):
        return {"type": "JobFailed", "message": str(result)}
    args = result.get("exc_message")
    message = args[0] if isinstance(args, list) and args else args
    error = {"type": result.get("exc_type") or "JobFailed", "message": str(message or "")}
    if isinstance(args, list) and len(args) > 1 and isinstance(args[1], dict):
        error.update({k: v for k, v in args[1].items() if k in ("status", "provider")})
    return error


class BatchStore:
    """Batch records and indexes in Redis.

    Args:
        client: a client of the queue's Redis (bytes responses).
        ttl: seconds every batch key lives (CHATQ_RESULT_TTL).
    """

    def __init__(self, client: redis.Redis, *, ttl: int):
        self.client = client
        self.ttl = int(ttl)

    # -- keys ----------------------------------------------------------------------------
    @staticmethod
    def key(batch_id: str, part: str = "") -> str:
        return f"chatq:batch:{batch_id}" + (f":{part}" if part else "")

    def _keys(self, batch_id: str) -> list[str]:
        parts = ("lines", "queued", "cids", "done")
        return [self.key(batch_id)] + [self.key(batch_id, p) for p in parts]

    # -- the record ----------------------------------------------------------------------
    def record(self, batch_id: str) -> BatchRecord | None:
        """The batch's record, or None when there is none (never made, or expired)."""
        data = self.client.hgetall(self.key(batch_id))
        return BatchRecord.from_hash(data) if data else None

    def save(self, batch_id: str, **fields: Any) -> None:
        """Set record fields (dicts as JSON) and renew every key's TTL."""
        values = {
            k: json.dumps(v) if isinstance(v, (dict, list)) else ("" if v is None else str(v))
            for k, v in fields.items()
        }
        pipe = self.client.pipeline(transaction=False)
        pipe.hset(self.key(batch_id), mapping={"id": batch_id, **values})
        for key in self._keys(batch_id):
            pipe.expire(key, self.ttl)
        if "created" in fields:
            pipe.zadd(_INDEX, {batch_id: float(fields["created"])})
        pipe.expire(_INDEX, self.ttl)  # outlives the newest batch; stale ids are pruned
        pipe.execute()

    def batch_ids(self) -> list[str]:
        """Every batch id still on record, oldest first (expired ones are forgotten)."""
        ids = [m.decode() for m in self.client.zrange(_INDEX, 0, -1)]
        pipe = self.client.pipeline(transaction=False)
        for batch_id in ids:
            pipe.exists(self.key(batch_id))
        alive = pipe.execute() if ids else []
        gone = [b for b, ok in zip(ids, alive, strict=True) if not ok]
        if gone:
            self.client.zrem(_INDEX, *gone)
        return [b for b, ok in zip(ids, alive, strict=True) if ok]

    # -- the index -----------------------------------------------------------------------
    def begin_index(self, batch_id: str) -> None:
        """Forget the old index (it is rebuilt from the file) and the custom_ids seen."""
        self.client.delete(self.key(batch_id, "lines"), self.key(batch_id, "cids"))

    def end_index(self, batch_id: str) -> None:
        self.client.delete(self.key(batch_id, "cids"))

    def first_uses(self, batch_id: str, custom_ids: Sequence[str]) -> list[bool]:
        """For each custom_id, in order: whether it is the first line to use it."""
        if not custom_ids:
            return []
        pipe = self.client.pipeline(transaction=False)
        key = self.key(batch_id, "cids")
        for custom_id in custom_ids:
            pipe.sadd(key, custom_id)
        pipe.expire(key, self.ttl)
        return [bool(added) for added in pipe.execute()[:-1]]

    def append(self, batch_id: str, entries: Sequence[dict[str, Any]]) -> None:
        """Add index entries (compact dicts) at the end of the batch's index."""
        if entries:
            key = self.key(batch_id, "lines")
            pipe = self.client.pipeline(transaction=False)
            pipe.rpush(key, *(json.dumps(e, separators=(",", ":")) for e in entries))
            pipe.expire(key, self.ttl)
            pipe.execute()

    def entries(self, batch_id: str, start: int, stop: int) -> list[dict[str, Any]]:
        """Index entries of lines [start, stop) (0-based positions)."""
        raw = self.client.lrange(self.key(batch_id, "lines"), start, stop - 1)
        return [json.loads(r) for r in raw]

    def iter_entries(self, batch_id: str, *, chunk: int = CHUNK) -> Iterator[list[dict]]:
        """The whole index in chunks, in input order."""
        start = 0
        while True:
            entries = self.entries(batch_id, start, start + chunk)
            if not entries:
                return
            yield entries
            start += len(entries)

    # -- outcomes, claims, queued bits ---------------------------------------------------
    def metas(self, task_ids: Sequence[str | None]) -> list[bytes | None]:
        """The stored Celery result of each task id (None for no id, or no result)."""
        keys = [META_PREFIX + t for t in task_ids if t]
        found = iter(self.client.mget(keys) if keys else [])
        return [next(found) if t else None for t in task_ids]

    def claims(self, task_ids: Sequence[str]) -> list[bytes | None]:
        """Each job's claim token (`host:pid:nonce`) while some worker holds it."""
        return self.client.mget([CLAIM_PREFIX + t for t in task_ids]) if task_ids else []

    def drop_claim(self, task_id: str, token: bytes) -> bool:
        """Delete a claim if it still holds `token` (a dead worker's); whether it did."""
        script = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end return 0"  # noqa: E501
        return bool(self.client.eval(script, 1, CLAIM_PREFIX + task_id, token))

    def forget_results(self, task_ids: Iterable[str]) -> None:
        """Delete stored results (a failure about to be retried)."""
        keys = [META_PREFIX + t for t in task_ids]
        if keys:
            self.client.delete(*keys)

    def queued(self, batch_id: str, positions: Sequence[int]) -> list[bool]:
        """Whether each line (0-based position) was published in the current epoch."""
        if not positions:
            return []
        pipe = self.client.pipeline(transaction=False)
        key = self.key(batch_id, "queued")
        for pos in positions:
            pipe.getbit(key, pos)
        return [bool(b) for b in pipe.execute()]

    def mark_queued(self, batch_id: str, positions: Iterable[int]) -> None:
        pipe = self.client.pipeline(transaction=False)
        key = self.key(batch_id, "queued")
        for pos in positions:
            pipe.setbit(key, pos, 1)
        pipe.expire(key, self.ttl)
        pipe.execute()

    def clear_queued(self, batch_id: str) -> None:
        self.client.delete(self.key(batch_id, "queued"))

    def put_metas(self, items: Sequence[tuple[str, dict[str, Any]]]) -> int:
        """Store SUCCESS results for task ids that have none (cached or kept answers);
        how many were stored."""
        if not items:
            return 0
        pipe = self.client.pipeline(transaction=False)
        now = time.strftime("%Y-%m-%dT%H:%M:%S.000000", time.gmtime())
        for task_id, result in items:
            doc = {"status": "SUCCESS", "result": result, "traceback": None,
                   "children": [], "date_done": now, "task_id": task_id}  # fmt: skip
            pipe.set(META_PREFIX + task_id, json.dumps(doc), ex=self.ttl, nx=True)
        return sum(1 for stored in pipe.execute() if stored)

    # -- lines known ended ---------------------------------------------------------------
    def mark_done(self, batch_id: str, positions: Iterable[int], *, ended: bool = True) -> None:
        """Set (or, with `ended` False, clear) the done bit of these lines."""
        positions = list(positions)
        if not positions:
            return
        pipe = self.client.pipeline(transaction=False)
        key = self.key(batch_id, "done")
        for pos in positions:
            pipe.setbit(key, pos, 1 if ended else 0)
        pipe.expire(key, self.ttl)
        pipe.execute()

    def finish_if_complete(self, batch_id: str, *, last_result: float | None) -> bool:
        """Mark a running batch done when every valid line has ended; whether it did.

        `last_result` (epoch seconds) is the latest result seen for it; the batch's
        `finished` is the latest of those, so its elapsed time ends at its last result.
        """
        key = self.key(batch_id)
        record = self.record(batch_id)
        if record is None:
            return False
        latest = float(self.client.hget(key, "last_result") or 0)
        if last_result is not None and last_result > latest:
            latest = last_result
            self.client.hset(key, "last_result", repr(latest))
        if record.state != "running":
            return False
        ended = self.client.bitcount(self.key(batch_id, "done"))
        if ended < record.lines - record.invalid:
            return False
        self.save(batch_id, state="done", finished=latest or time.time())
        return True

    # -- followers -----------------------------------------------------------------------
    def beat(self, batch_id: str, *, seconds: float = 15) -> None:
        """Say some process follows the batch (for `seconds`)."""
        self.client.set(self.key(batch_id, "follower"), str(time.time()), ex=int(seconds))

    def followed(self, batch_id: str) -> bool:
        return bool(self.client.exists(self.key(batch_id, "follower")))
