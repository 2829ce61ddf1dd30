"""A batch session: the batch services on this process's runtime, for any front door.

The command line opens one per command; each gives the Batches service, whose
staleness test knows which workers this run started, and `follow` to wait for a
batch's end.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from config import Settings
from tasks.batch.claims import only_holders, stale
from tasks.batch.follow import Follower
from tasks.batch.service import Batches, Source
from tasks.batch.snapshot import Snapshot
from tasks.batch.spool import Spool

__all__ = ["follow", "owns_fresh_redis", "restore_answers", "runtime_batches"]


@contextmanager
def runtime_batches(settings: Settings, *, workers: bool) -> Iterator[Batches]:
    """Batches on this process's runtime (local workers started when `workers`)."""
    from tasks.producer import Producer
    from tasks.runtime import open_runtime

    with open_runtime(settings, start_workers=workers) as runtime:
        yield Batches(Producer(runtime), is_stale=_staleness(runtime))


def _staleness(runtime: Any):
    """On a private Redis this process just started, only its own workers' claims are
    live: a killed run's workers may linger, but can never store a result here. (With
    a prefork pool claims are held by child processes: fall back to the default.)"""
    embedded, workers = runtime.embedded, runtime.workers
    if embedded is None or not embedded.owned or workers is None:
        return stale
    if runtime.settings.pool not in ("threads", "solo"):
        return stale
    return only_holders({proc.pid for proc in workers.procs})


def owns_fresh_redis(batches: Batches) -> bool:
    """Whether this process just started the embedded Redis: nothing queued before it
    can still be in any worker's hands, so unanswered lines are queued again."""
    embedded = batches.producer.runtime.embedded
    return embedded is not None and embedded.owned


def follow(
    batches: Batches, batch_id: str, source: Source | None, *, progress: Any = None
) -> Snapshot:
    """Follow a batch to its end, showing `progress` (a Progress) as it goes.

    With `source` (the batch's input, unchanged), lines whose jobs were lost are
    queued again; without it they are only reported.
    """
    republish = None
    if source is not None:
        republish = lambda positions: batches.republish(batch_id, source, positions)  # noqa: E731
    follower = Follower(batches.store, batches.cache, batch_id, republish=republish,
                        is_stale=batches.is_stale, spool=_spool(batches, batch_id))  # fmt: skip
    return follower.run(progress=progress)


def restore_answers(batches: Batches, batch_id: str) -> int:
    """Put back, as results, the answers this machine kept for the batch where Redis
    lost them (a restart with no persistence); how many. Old spools are pruned."""
    settings = batches.producer.runtime.settings
    Spool.prune(settings.home, ttl=settings.result_ttl)
    return _spool(batches, batch_id).restore(batches.store)


def _spool(batches: Batches, batch_id: str) -> Spool:
    return Spool(batches.producer.runtime.settings.home, batch_id)
