"""Responses kept for identical deterministic requests, so scoring again costs nothing.

Only a request asking for temperature 0 is cacheable: its key is a hash of the model,
the messages and every parameter that shapes the answer (max_tokens, format, think).
Entries live in Redis as long as results do. A cached answer is marked `cached: true`.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from typing import Any

import redis

from worker.chat.types import ChatRequest

__all__ = ["ResponseCache", "cache_key"]

PREFIX = "chatq:cache:"


def cache_key(request: ChatRequest) -> str | None:
    """The request's cache key, or None when it is not deterministic (temperature not 0)."""
    if request.temperature != 0:
        return None
    canonical = json.dumps(
        request.model_dump(mode="json", exclude={"timeout"}),
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
    )
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:40]


class ResponseCache:
    """Cached ChatResponses (as dicts) by cache key.

    Args:
        client: the queue's Redis.
        ttl: seconds an entry lives (CHATQ_RESULT_TTL).
    """

    def __init__(self, client: redis.Redis, *, ttl: int):
        self.client = client
        self.ttl = int(ttl)

    def get_many(self, keys: Sequence[str]) -> list[dict[str, Any] | None]:
        """The cached response of each key (None: not cached), marked `cached: true`."""
        if not keys:
            return []
        found = []
        for raw in self.client.mget([PREFIX + k for k in keys]):
            found.append(None if raw is None else {**json.loads(raw), "cached": True})
        return found

    def put_many(self, items: Sequence[tuple[str, dict[str, Any]]]) -> None:
        """Keep these responses (an existing entry is left as it is)."""
        if not items:
            return
        pipe = self.client.pipeline(transaction=False)
        for key, response in items:
            if response.get("cached"):
                continue
            pipe.set(PREFIX + key, json.dumps(response), ex=self.ttl, nx=True)
        pipe.execute()
