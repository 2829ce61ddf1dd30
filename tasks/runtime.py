"""What a producing process runs against: the Redis to use, and, on the embedded
default, the local workers it starts for its run.

With REDIS_URL set, chatq only uses that server and starts nothing. Without it, chatq
starts (or joins) the private Redis of CHATQ_HOME and, since no other worker can reach
a private Redis, starts local workers for as long as the command runs.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import redis
from celery import Celery

from config import PROVIDERS, Settings
from tasks.redis_watch import watch
from worker.app import configure
from worker.chat.builder import build_registry
from worker.chat.registry import Registry
from worker.embedded_redis import EmbeddedRedis
from worker.limits.backends import keys_of
from worker.redis_guard import bounded_client, translated

__all__ = ["LocalWorkers", "Runtime", "open_runtime"]

log = logging.getLogger(__name__)


class LocalWorkers:
    """Celery worker processes started for this run, stopped with it.

    Args:
        redis_url: the broker and backend they use.
        count: how many processes.
        concurrency: threads per process.
        pool: Celery pool kind.
        extra_env: added to their environment (after REDIS_URL).
        queues: the queues they consume; default all of chatq's.
    """

    def __init__(
        self,
        redis_url: str,
        *,
        count: int = 1,
        concurrency: int = 32,
        pool: str = "threads",
        extra_env: dict[str, str] | None = None,
        queues: list[str] | None = None,
        log_dir: Path | None = None,
        loglevel: str = "WARNING",
        name: str | None = None,
    ):
        self.redis_url = redis_url
        self.count = count
        self.concurrency = concurrency
        self.pool = pool
        self.extra_env = dict(extra_env or {})
        self.queues = queues
        self.log_dir = log_dir
        self.loglevel = loglevel
        self.name = name or f"chatq-local-{os.getpid()}"
        self.procs: list[subprocess.Popen] = []
        self._logs: list = []

    def command(self, index: int) -> list[str]:
        """The command line of worker number `index`."""
        cmd = [
            sys.executable, "-m", "celery", "-A", "worker", "worker",
            "--pool", self.pool, "--concurrency", str(self.concurrency),
            "--hostname", f"{self.name}-{index}@%h",
            "--loglevel", self.loglevel, "--without-gossip", "--without-mingle",
            "--events",
        ]  # fmt: skip
        if self.queues:
            cmd += ["--queues", ",".join(self.queues)]
        return cmd

    def start(self) -> LocalWorkers:
        env = {**os.environ, "REDIS_URL": self.redis_url, **self.extra_env}
        for index in range(self.count):
            out = subprocess.DEVNULL
            if self.log_dir is not None:
                self.log_dir.mkdir(parents=True, exist_ok=True)
                out = open(self.log_dir / f"worker-{index}.log", "ab")  # noqa: SIM115
                self._logs.append(out)
            self.procs.append(
                subprocess.Popen(
                    self.command(index),
                    env=env,
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=out,
                    preexec_fn=_killed_with_parent,
                )
            )
        log.info("started %d local worker(s) for this run", self.count)
        return self

    def stop(self, *, timeout: float = 15.0) -> None:
        """Warm shutdown (jobs in flight finish or go back to the queue), then kill."""
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        end = time.monotonic() + timeout
        for proc in self.procs:
            try:
                proc.wait(max(0.1, end - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self.procs.clear()
        for handle in self._logs:
            handle.close()
        self._logs.clear()


class Runtime:
    """The configured Celery app, the producer's registry, and what this run started."""

    def __init__(
        self,
        settings: Settings,
        app: Celery,
        registry: Registry,
        redis_url: str,
        *,
        embedded: EmbeddedRedis | None = None,
        workers: LocalWorkers | None = None,
    ):
        self.settings = settings
        self.app = app
        self.registry = registry
        self.redis_url = redis_url
        self.embedded = embedded
        self.workers = workers
        self._redis: redis.Redis | None = None
        #: Set when chatq's data on this Redis was lost since this machine last looked.
        self.data_lost: str | None = None
        self._closed = False
        self._lock = threading.Lock()

    @property
    def is_embedded(self) -> bool:
        return self.embedded is not None

    def redis(self) -> redis.Redis:
        """A client of the same Redis the queue uses (batch records, journal, results),
        bounded: a Redis that does not answer within CHATQ_REDIS_TIMEOUT raises."""
        with self._lock:
            if self._redis is None:
                self._redis = bounded_client(self.redis_url, timeout=self.settings.redis_timeout)
            return self._redis

    def close(self) -> None:
        """Stop the local workers and the embedded Redis this run started."""
        if self._closed:
            return
        self._closed = True
        if self.workers is not None:
            self.workers.stop()
        with contextlib.suppress(Exception):
            self.app.close()
        if self._redis is not None:
            self._redis.close()
        if self.embedded is not None:
            self.embedded.stop()

    def __enter__(self) -> Runtime:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _drop_leases_of_dead_workers(url: str) -> None:
    """On a private Redis this process has just started, no worker can be alive: the
    concurrency leases saved in its data belong to the workers of a run that died, and
    would hold a provider's slots (local Ollama has one) until they expire."""
    client = redis.Redis.from_url(url)
    try:
        for provider in PROVIDERS:
            client.delete(keys_of(provider)[1])
    finally:
        client.close()


def _killed_with_parent() -> None:
    """In a local worker: die at once with the command that started it. Its private
    Redis goes away too, and a warm shutdown would only hang trying to reach it; the
    jobs it held are requeued by the next run."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)


def open_runtime(settings: Settings, *, start_workers: bool = True) -> Runtime:
    """Connect this process to chatq's Redis: REDIS_URL, or the embedded default.

    On the embedded default, local workers are started (unless `start_workers` is
    False) since no other worker can reach a private Redis.
    """
    embedded = workers = None
    if settings.redis_url:
        url = settings.redis_url
    else:
        embedded = EmbeddedRedis(settings.home)
        url = embedded.start()
    app = configure(settings, url)
    if embedded is not None and embedded.owned:
        _drop_leases_of_dead_workers(url)
    if embedded is not None and start_workers:
        workers = LocalWorkers(
            url,
            count=settings.local_workers,
            concurrency=settings.concurrency,
            pool=settings.pool,
            log_dir=settings.home / "logs",
            loglevel="INFO",
        ).start()
    runtime = Runtime(
        settings, app, build_registry(settings), url, embedded=embedded, workers=workers
    )
    atexit.register(runtime.close)
    with translated(url):
        runtime.data_lost = watch(runtime.redis(), url, home=settings.home,
                                  ttl=settings.result_ttl)  # fmt: skip
    return runtime
