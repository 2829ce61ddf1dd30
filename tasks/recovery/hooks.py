"""Where recovery joins a worker's life: Celery signals, connected when a worker loads
chatq's tasks (worker/app.py includes this module).

- A worker process starts: its heartbeat starts beating (and, in the process that
  consumes messages, the sweeper starts, sweeping whenever it holds the lease).
- A chatq task starts: its message's journal entry is marked received by this process
  (from its event loop, batched with the jobs' commands).
- The worker shuts down (after its in-flight jobs): both stop, the heartbeat key goes.
"""

from __future__ import annotations

import logging
from typing import Any

import redis
from celery import signals

from chatq.redaction import redact
from tasks.recovery.journal import Receipts
from tasks.recovery.sweeper import Sweeper
from worker.aio import process_loop
from worker.app import CHAT_MANY_TASK, CHAT_TASK, app, current_settings, loop_redis
from worker.heartbeat import Heartbeat, this_process
from worker.redis_memory import persistence_warning

__all__: list[str] = []

log = logging.getLogger(__name__)


class _Running:
    """What this process started (a worker process has one of each at most)."""

    heartbeat: Heartbeat | None = None
    sweeper: Sweeper | None = None
    receipts: Receipts | None = None


def _client() -> redis.Redis:
    """A client of its own for heartbeats and sweeps: short timeouts, so that a Redis
    restart costs a missed beat, not a thread stuck for the reconnect window."""
    settings = current_settings()
    return redis.Redis.from_url(
        app.conf.broker_url,
        socket_connect_timeout=min(5.0, settings.redis_timeout),
        socket_timeout=settings.redis_timeout,
        health_check_interval=10,
    )


def _start_heartbeat() -> None:
    if _Running.heartbeat is None:
        settings = current_settings()
        _Running.heartbeat = Heartbeat(
            _client(), interval=settings.sweep_interval, ttl=settings.heartbeat_ttl
        ).start()


@signals.worker_ready.connect
def _worker_ready(sender: Any = None, **kw: Any) -> None:
    _start_heartbeat()
    if _Running.sweeper is None:
        client = _client()
        try:
            warning = persistence_warning(client, redact(app.conf.broker_url))
        except redis.RedisError:
            warning = None
        if warning:
            log.warning("%s", warning)
        _Running.sweeper = Sweeper(client, app, current_settings()).start()


@signals.worker_process_init.connect
def _child_started(**kw: Any) -> None:
    # A prefork child runs jobs and holds their claims: it beats for itself.
    _Running.heartbeat = None
    _start_heartbeat()


@signals.worker_shutdown.connect
def _worker_stopping(**kw: Any) -> None:
    sweeper, _Running.sweeper = _Running.sweeper, None
    if sweeper is not None:
        sweeper.stop()
    heartbeat, _Running.heartbeat = _Running.heartbeat, None
    if heartbeat is not None:
        heartbeat.stop()


@signals.task_prerun.connect
def _message_taken(sender: Any = None, task_id: str | None = None, **kw: Any) -> None:
    if getattr(sender, "name", None) not in (CHAT_TASK, CHAT_MANY_TASK) or not task_id:
        return
    # On the loop, with the jobs' own claims: the pool thread does not wait for it.
    process_loop().submit(_mark_received(task_id, this_process()))


async def _mark_received(task_id: str, holder: str) -> None:
    try:
        if _Running.receipts is None:
            _Running.receipts = Receipts(loop_redis(), ttl=current_settings().result_ttl)
        await _Running.receipts.received(task_id, holder)
    except redis.RedisError as exc:  # the sweeper finds the message by its jobs instead
        log.warning("message %s: not marked received (%s)", task_id, type(exc).__name__)
