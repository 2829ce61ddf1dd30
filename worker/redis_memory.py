"""What chatq's Redis remembers across a restart, and how to tell when it forgot.

- `persistence_warning`: a Redis with neither an append-only file nor snapshots keeps
  nothing across a restart (queued jobs, results, batch records all go); chatq says so
  once, in every worker and command, instead of letting the first crash tell.
- `Marker`: chatq keeps `chatq:marker` (`{"run_id", "created"}`, expiring with the
  results, renewed by every chatq process that connects). Redis's run id changes at
  every restart; a marker whose run id is old means Redis restarted and kept its data;
  no marker, or a newer one, after one was seen on the same server means Redis came
  back empty (or everything expired): a batch that vanished is then reported as lost
  with Redis's data, not as never submitted.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass

import redis

__all__ = ["MARKER", "Marker", "MarkerState", "persistence_warning"]

MARKER = "chatq:marker"


def persistence_warning(client: redis.Redis, url: str) -> str | None:
    """A warning when the Redis at `url` (already redacted) keeps no data across a
    restart; None when it does, or when it will not say (CONFIG may be disabled)."""
    try:
        config = client.config_get("appendonly")
        config.update(client.config_get("save"))
    except redis.ResponseError:
        return None
    appendonly = _text(config.get("appendonly", "")).lower()
    save = _text(config.get("save", "")).strip()
    if appendonly == "yes" or save:
        return None
    return (
        f"Redis at {url} keeps no data across a restart (appendonly no, no snapshots): "
        "a restart loses every queued job, result and batch record; run it with "
        "--appendonly yes"
    )


@dataclass(frozen=True)
class MarkerState:
    """What one look at the marker found: Redis's run id now, and the marker's."""

    run_id: str
    created: float
    #: The marker had to be written now (there was none).
    fresh: bool


class Marker:
    """Reads and renews `chatq:marker` on one Redis.

    Args:
        client: a client of the queue's Redis.
        ttl: seconds the marker lives without renewal (CHATQ_RESULT_TTL).
    """

    def __init__(self, client: redis.Redis, *, ttl: int):
        self.client = client
        self.ttl = int(ttl)

    def touch(self) -> MarkerState:
        """Renew the marker (writing it when missing); what was found."""
        run_id = _text(self.client.info("server").get("run_id", ""))
        raw = self.client.get(MARKER)
        doc = _doc(raw)
        if doc is None:
            doc = {"run_id": run_id, "created": time.time()}
            written = self.client.set(MARKER, json.dumps(doc), ex=self.ttl, nx=True)
            if not written:  # another process wrote it first: take theirs
                doc = _doc(self.client.get(MARKER)) or doc
            return MarkerState(run_id, float(doc["created"]), fresh=bool(written))
        if doc.get("run_id") != run_id:
            doc = {**doc, "run_id": run_id}  # restarted, data kept: note the new run
            self.client.set(MARKER, json.dumps(doc), ex=self.ttl)
        else:
            self.client.expire(MARKER, self.ttl)
        return MarkerState(run_id, float(doc["created"]), fresh=False)


def _doc(raw: bytes | None) -> dict | None:
    try:
        doc = json.loads(raw) if raw is not None else None
    except ValueError:
        return None
    return doc if isinstance(doc, dict) and "created" in doc else None


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
