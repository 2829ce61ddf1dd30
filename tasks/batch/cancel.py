"""Cancelling a batch: its waiting jobs never run, its running jobs finish.

Three steps, each covering what the one before cannot reach: the batch record says
"cancelled" (followers stop waiting for lines no worker holds, and report them
cancelled); the jobs still in the broker's queues are removed from them; and the task
ids are revoked, so a worker that already took a message skips the job. The record's
epoch moves on, so running the batch again later gives its unfinished lines new task
ids that no worker remembers as revoked.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import redis

from config import PROVIDERS
from tasks.batch.store import CHUNK, BatchStore, outcome_of
from tasks.recovery.messages import job_ids_of_raw
from worker.app import DEFAULT_QUEUE, queue_for

__all__ = ["CancelReport", "cancel_batch", "purge_jobs"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CancelReport:
    batch_id: str
    revoked: int
    removed_messages: int
    running: int


def cancel_batch(store: BatchStore, app: Any, batch_id: str) -> CancelReport:
    """Cancel `batch_id` (see the module's docstring); what was done."""
    record = store.record(batch_id)
    store.save(batch_id, state="cancelled", epoch=(record.epoch if record else 0) + 1)
    store.clear_queued(batch_id)
    pending: list[str] = []
    for entries in store.iter_entries(batch_id):
        ids = [e.get("t") for e in entries]
        for tid, meta in zip(ids, store.metas(ids), strict=True):
            if tid and outcome_of(meta).response is None and outcome_of(meta).error is None:
                pending.append(tid)
    removed = purge_jobs(store.client, set(pending))
    for start in range(0, len(pending), CHUNK):
        app.control.revoke(pending[start : start + CHUNK])
    running = sum(1 for token in store.claims(pending) if token is not None) if pending else 0
    log.info("batch %s cancelled: %d job(s) revoked", batch_id, len(pending))
    return CancelReport(batch_id, len(pending), removed, running)


def purge_jobs(client: redis.Redis, ids: set[str], queues: Iterable[str] | None = None) -> int:
    """Remove from the broker's queues every message whose jobs are all in `ids`.

    Returns:
        How many messages were removed.
    """
    if not ids:
        return 0
    removed = 0
    for queue in queues or [DEFAULT_QUEUE] + [queue_for(p) for p in PROVIDERS]:
        for raw in client.lrange(queue, 0, -1):
            jobs = job_ids_of_raw(raw)
            if jobs and all(j in ids for j in jobs):
                removed += client.lrem(queue, 1, raw)
    return removed
