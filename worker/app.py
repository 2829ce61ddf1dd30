"""The Celery application: the one place chatq configures Celery.

`celery -A worker worker` finds `app` here. Its configuration is computed lazily from
`Settings` the first time Celery needs it, so importing this module reads nothing;
producers call `configure()` with their settings and Redis URL before first use.

Choices that matter (see README, "How jobs run"):
- JSON only, both ways; a pickled message is refused and logged, never run.
- acks_late with reject_on_worker_lost and a prefetch of 1: a job whose worker dies is
  delivered again, not lost.
- Retries wait inside the task (worker/retry.py), never through a countdown, and the
  Redis visibility timeout is `Settings.visibility_timeout` (job deadline + one read
  timeout + a minute): no job is handed to a second worker while the first still has it.
- The broker connection pool grows with the worker's concurrency: a threads
  pool with kombu's default 10 connections loses acknowledgements at high concurrency.
"""

from __future__ import annotations

import functools
import logging
import os
import threading
from typing import Any
from urllib.parse import parse_qs, urlsplit, urlunsplit

import redis
import redis.asyncio as aredis
from celery import Celery, signals
from celery.app.amqp import AMQP
from celery.backends.redis import RedisBackend
from kombu import Queue

from chatq.errors import InvalidRequest
from config import PROVIDERS, Settings, load_settings
from worker.broker import TRANSPORT, Connection
from worker.chat.registry import route
from worker.embedded_redis import running_url
from worker.redis_batch import RedisBatcher
from worker.redis_guard import RECONNECT_WINDOW, reconnecting, reconnecting_async

__all__ = [
    "CHAT_MANY_TASK",
    "CHAT_TASK",
    "DEFAULT_QUEUE",
    "QUEUES",
    "app",
    "celery_config",
    "chunk_summary",
    "configure",
    "current_settings",
    "loop_redis",
    "queue_for",
    "request_summary",
    "route_chat",
    "tls_url",
    "worker_redis",
]

log = logging.getLogger(__name__)

#: The stable task name other services send by name.
CHAT_TASK = "chatq.chat"
#: A chunk of one provider's jobs in one message (bulk producers).
CHAT_MANY_TASK = "chatq.chat_many"
#: Where a job goes when its model cannot be routed (a plain worker consumes it too).
DEFAULT_QUEUE = "celery"


def queue_for(provider: str) -> str:
    """The queue of `provider`'s jobs: `chat.<provider>`."""
    return f"chat.{provider}"


#: Every queue chatq declares: the default one, then one per provider.
QUEUES = (DEFAULT_QUEUE, *(queue_for(p) for p in PROVIDERS))


def request_summary(args: Any, kwargs: Any) -> str:
    """`model=... msgs=N chars=M` for a chat task's arguments: never the prompt itself."""
    data = args[0] if isinstance(args, (list, tuple)) and args else None
    if data is None and isinstance(kwargs, dict):
        data = kwargs.get("request")
    if not isinstance(data, dict):
        return f"<{type(data).__name__}>"
    messages = data.get("messages")
    count = len(messages) if isinstance(messages, list) else 0
    chars = 0
    if isinstance(messages, list):
        chars = sum(
            len(m.get("content") or "")
            for m in messages
            if isinstance(m, dict) and isinstance(m.get("content"), str)
        )
    model = data.get("model")
    model = model[:120] if isinstance(model, str) else "?"
    return f"model={model} msgs={count} chars={chars}"


def chunk_summary(args: Any) -> str:
    """`jobs=N model=... chars=M` for a chunk's arguments: never a prompt."""
    jobs = args[0] if isinstance(args, (list, tuple)) and args else None
    if not isinstance(jobs, list):
        return f"<{type(jobs).__name__}>"
    models, chars = set(), 0
    for item in jobs:
        request = item[1] if isinstance(item, (list, tuple)) and len(item) == 2 else None
        if isinstance(request, dict):
            models.add(str(request.get("model"))[:120])
            for message in request.get("messages") or []:
                if isinstance(message, dict) and isinstance(message.get("content"), str):
                    chars += len(message["content"])
    model = ",".join(sorted(models)[:3]) + ("…" if len(models) > 3 else "")
    return f"jobs={len(jobs)} model={model} chars={chars}"


def route_chat(name: str, args: Any, kwargs: Any, options: Any, task: Any = None, **kw: Any):
    """Celery router: a chat job goes to the queue of the provider its model names."""
    if name != CHAT_TASK:
        return None
    data = args[0] if isinstance(args, (list, tuple)) and args else None
    if data is None and isinstance(kwargs, dict):
        data = kwargs.get("request")
    model = data.get("model") if isinstance(data, dict) else None
    if not isinstance(model, str):
        return None
    try:
        return {"queue": queue_for(route(model).provider)}
    except InvalidRequest:
        return None


def tls_url(url: str) -> str:
    """`url`, with `ssl_cert_reqs=required` added to a `rediss://` URL that names none.

    Celery's result backend refuses a TLS URL without that parameter, and the broker
    would otherwise connect without checking the server's certificate.
    """
    parts = urlsplit(url)
    if parts.scheme != "rediss" or "ssl_cert_reqs" in parse_qs(parts.query):
        return url
    query = "&".join(q for q in (parts.query, "ssl_cert_reqs=required") if q)
    return urlunsplit(parts._replace(query=query))


def celery_config(settings: Settings, redis_url: str) -> dict[str, Any]:
    """Celery's settings for chatq, from chatq's."""
    redis_url = tls_url(redis_url)
    pool_limit = settings.concurrency + 8
    # Pool threads (single jobs' results, events) share this many Redis connections,
    # blocking when all are busy; the jobs' own commands go through the event loop's.
    redis_connections = settings.concurrency + 16
    vt = settings.visibility_timeout
    transport = {
        "visibility_timeout": vt,
        # Look for jobs of dead workers to hand out again every few seconds, so a job
        # comes back soon after its visibility timeout rather than minutes later.
        "unacked_restore_interval": max(1, min(10, vt // 4)),
        "unacked_restore_throttle": 1,
        "max_connections": redis_connections,
        "socket_connect_timeout": 5,
        # A frozen Redis must be noticed (and reconnected to), never waited on forever.
        "socket_timeout": settings.redis_timeout,
        "socket_keepalive": True,
        "health_check_interval": 25,
        # An idle worker's BRPOP returns this often (kombu: 1 s): a worker told to stop
        # leaves within a quarter of a second, rolling restarts go faster, and an idle
        # fleet's polling stays a few commands a second per worker.
        "polling_interval": 0.25,
    }
    return {
        "broker_url": redis_url,
        # kombu's Redis transport, except that garbage on a queue cannot stop a worker.
        "broker_transport": TRANSPORT,
        "result_backend": redis_url,
        "task_serializer": "json",
        "result_serializer": "json",
        "event_serializer": "json",
        "accept_content": ["json"],
        "result_accept_content": ["json"],
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "worker_prefetch_multiplier": 1,
        "task_track_started": True,
        "task_send_sent_event": True,
        "worker_send_task_events": True,
        "result_expires": settings.result_ttl,
        "result_backend_always_retry": True,
        # Full-jitter waits from 0.2 s doubling to 3 s, 20 of them: about 25 s in all,
        # longer than a Redis restart takes (Celery's defaults gave up after 2-5 s).
        "result_backend_max_retries": 20,
        "result_backend_base_sleep_between_retries_ms": 200,
        "result_backend_max_sleep_between_retries_ms": 3000,
        # Storing a result keeps trying through a Redis restart: a job paid for must not
        # lose its answer to a dropped connection.
        "result_backend_transport_options": {"retry_policy": {"timeout": RECONNECT_WINDOW}},
        "redis_max_connections": redis_connections,
        "redis_socket_connect_timeout": 5,
        "redis_socket_timeout": settings.redis_timeout,
        "redis_retry_on_timeout": True,
        "broker_transport_options": transport,
        "broker_pool_limit": pool_limit,
        "broker_connection_retry_on_startup": True,
        "broker_connection_timeout": 5,
        "worker_concurrency": settings.concurrency,
        "worker_pool": settings.pool,
        "worker_cancel_long_running_tasks_on_connection_loss": False,
        "task_default_queue": DEFAULT_QUEUE,
        "task_queues": [Queue(name) for name in QUEUES],
        "task_create_missing_queues": True,
        "task_routes": (route_chat,),
        "worker_hijack_root_logger": False,
        "worker_redirect_stdouts": False,
    }


class _State:
    settings: Settings | None = None


def current_settings() -> Settings:
    """The settings this process runs with: those given to `configure()`, else read once."""
    if _State.settings is None:
        _State.settings = load_settings()
    return _State.settings


def configure(settings: Settings, redis_url: str) -> Celery:
    """Configure `app` for this process before it connects anywhere; return it."""
    _State.settings = settings
    app.conf.update(celery_config(settings, redis_url))
    # Connections made under an earlier configuration must not be reused.
    app._pool = None
    app._backend_cache = None
    app._local.__dict__.pop("backend", None)
    amqp = app.__dict__.get("amqp")
    if amqp is not None:
        amqp._producer_pool = None
    global _redis_client, _loop_redis
    _redis_client = _loop_redis = None
    return app


#: The worker's own Redis clients: a frozen Redis is noticed (30 s), a dropped
#: connection is made again, and a Redis restart costs a claim, a limit or a result a
#: pause, not the job (each client's retry policy covers RECONNECT_WINDOW).
_POOL_OPTIONS: dict[str, Any] = {
    "socket_connect_timeout": 5,
    "socket_timeout": 30,
    "health_check_interval": 25,
    "retry_on_error": [redis.ConnectionError, redis.TimeoutError],
    "timeout": 60,
}

_redis_lock = threading.Lock()
_redis_client: redis.Redis | None = None


def worker_redis() -> redis.Redis:
    """A Redis client for the broker's server (claims, limits), shared in the process."""
    global _redis_client
    with _redis_lock:
        if _redis_client is None:
            pool = redis.BlockingConnectionPool.from_url(
                app.conf.broker_url,
                retry=reconnecting(),
                max_connections=app.conf.redis_max_connections,
                **_POOL_OPTIONS,
            )
            _redis_client = redis.Redis(connection_pool=pool)
        return _redis_client


_loop_redis: RedisBatcher | None = None
_loop_redis_pid = 0


def loop_redis() -> RedisBatcher:
    """The Redis of the process's event loop (worker/aio.py): claims, limits, results
    and metrics of every job in flight, batched into one pipeline per loop pass.

    Call it on the loop only; the client is made there, on first use.
    """
    global _loop_redis, _loop_redis_pid
    if _loop_redis is None or _loop_redis_pid != os.getpid():  # a forked child: its own
        pool = aredis.BlockingConnectionPool.from_url(
            app.conf.broker_url,
            retry=reconnecting_async(),
            # Batches, not jobs, hold connections: a few carry thousands of jobs.
            max_connections=16,
            **_POOL_OPTIONS,
        )
        _loop_redis, _loop_redis_pid = RedisBatcher(aredis.Redis(connection_pool=pool)), os.getpid()
    return _loop_redis


def _lazy_config() -> dict[str, Any]:
    settings = current_settings()
    url = settings.redis_url or running_url(settings.home)
    if url is None:
        raise RuntimeError(
            "REDIS_URL is not set and no embedded chatq Redis is running under "
            f"{settings.home}: set REDIS_URL to the Redis the producers use"
        )
    return celery_config(settings, url)


class _ResultBackend(RedisBackend):
    """Celery's Redis result backend without a pub/sub subscription per published job:
    producers publish tens of thousands of jobs and poll or read results in bulk."""

    def on_task_call(self, producer: Any, task_id: str) -> dict:
        return {}


class _AMQP(AMQP):
    Connection = Connection  # so that Flower sees a redis:// broker URL


class _App(Celery):
    amqp_cls = _AMQP

    def _get_backend(self) -> RedisBackend:
        # A blocking pool: the pool's threads share a few connections and should wait
        # for one rather than fail with "Too many connections".
        pool = functools.partial(redis.BlockingConnectionPool, timeout=60)
        return _ResultBackend(app=self, url=self.conf.result_backend, connection_pool=pool)


app = _App(
    "chatq",
    include=[
        "tasks.chat",
        "tasks.chat_many",
        "tasks.recovery.hooks",
        "worker.heap",
        "worker.metrics_server",
    ],
)
app.add_defaults(_lazy_config)


class _NoAnswersInLogs(logging.Filter):
    """Celery logs every task's return value; a chat answer can quote its prompt."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, dict) and args.get("name") == CHAT_TASK and "return_value" in args:
            record.args = {**args, "return_value": "<ChatResponse>"}
        return True


logging.getLogger("celery.app.trace").addFilter(_NoAnswersInLogs())


@signals.celeryd_init.connect
def _match_pool_to_concurrency(
    sender: Any = None, instance: Any = None, conf: Any = None, options: Any = None, **kw: Any
) -> None:
    """Size the broker and backend pools to the concurrency the worker really runs."""
    # At this signal the worker has not yet read its --concurrency into `instance`.
    given = (options or {}).get("concurrency") or getattr(instance, "concurrency", None)
    concurrency = int(given or conf.worker_concurrency)
    connections = concurrency + 16
    conf.worker_concurrency = concurrency  # what `inspect conf` and Flower's Config tab say
    conf.broker_pool_limit = concurrency + 8
    conf.redis_max_connections = connections
    conf.broker_transport_options = {
        **conf.broker_transport_options,
        "max_connections": connections,
    }


@signals.before_task_publish.connect
def _private_reprs(sender: Any = None, headers: Any = None, body: Any = None, **kw: Any) -> None:
    """Whatever publishes a chat job through this app, monitoring sees no prompt."""
    if sender not in (CHAT_TASK, CHAT_MANY_TASK) or not isinstance(headers, dict):
        return
    args, kwargs = (
        (body[0], body[1]) if isinstance(body, (list, tuple)) and len(body) >= 2 else ((), {})
    )
    if sender == CHAT_TASK:
        headers["argsrepr"] = request_summary(args, kwargs)
    else:
        headers["argsrepr"] = chunk_summary(args)
    headers["kwargsrepr"] = "{}"
