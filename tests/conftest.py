"""Shared fixtures: a real Redis, the fake upstream, real Celery workers, a producer.

The suite needs no Redis installed: with REDIS_URL unset it starts chatq's embedded
Redis (the same mechanism users get) in a temporary home; with REDIS_URL set it uses
that server, flushing numbered databases 1-15 of it as tests claim them.
"""

from __future__ import annotations

import itertools
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest
import redis

from config import Settings, load_settings
from tests.fake_upstream import FakeUpstream
from worker.embedded_redis import EmbeddedRedis

#: Keys the workers and producers of the tests register their providers with.
FAKE_KEYS = {
    "OLLAMA_CLOUD_API_KEY": "test-ollama-cloud-key-0123456789",
    "OPENROUTER_API_KEY": "test-openrouter-key-0123456789",
    "OPENCODE_API_KEY": "test-opencode-key-0123456789",
    "KIMI_API_KEY": "test-kimi-key-0123456789",
}


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The base URL of a real Redis: REDIS_URL, or an embedded one for the session."""
    given = os.environ.get("REDIS_URL")
    if given:
        yield given
        return
    server = EmbeddedRedis(tmp_path_factory.mktemp("chatq-home"))
    try:
        yield server.start()
    finally:
        server.stop()


_databases = itertools.cycle(range(1, 16))


@pytest.fixture
def redis_url(redis_server: str) -> str:
    """A freshly flushed database of the test Redis, this test's alone."""
    parts = urlsplit(redis_server)
    url = urlunsplit(parts._replace(path=f"/{next(_databases)}"))
    client = redis.Redis.from_url(url)
    client.flushdb()
    client.close()
    return url


@pytest.fixture
def redis_client(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    yield client
    client.close()


@pytest.fixture
def upstream() -> Iterator[FakeUpstream]:
    with FakeUpstream() as up:
        yield up


def chatq_env(upstream: FakeUpstream, redis_url: str, home: Path, **overrides: str) -> dict:
    """The environment of a chatq process wired to the fake upstream and test Redis."""
    env = {
        "REDIS_URL": redis_url,
        "CHATQ_HOME": str(home),
        "OLLAMA_URL": upstream.url,
        "OLLAMA_CLOUD_URL": upstream.url,
        "OPENROUTER_URL": upstream.openai_url,
        "OPENCODE_URL": upstream.openai_url,
        "KIMI_URL": upstream.openai_url,
        "CHATQ_TIMEOUT": "5",
        "CHATQ_BACKOFF_BASE": "0.05",
        "CHATQ_BACKOFF_MAX": "0.2",
        "CHATQ_JOB_DEADLINE": "60",
        "CHATQ_CONCURRENCY": "8",
        **FAKE_KEYS,
    }
    env.update(overrides)
    return {k: v for k, v in env.items() if v is not None}


@pytest.fixture
def env(upstream: FakeUpstream, redis_url: str, tmp_path: Path) -> dict:
    """This test's chatq environment (edit it before starting workers)."""
    return chatq_env(upstream, redis_url, tmp_path / "home")


@pytest.fixture
def settings_for(tmp_path: Path) -> Callable[[dict], Settings]:
    """Settings read from an environment dict only (no .env, no process environment)."""
    empty = tmp_path / "no-dotenv"
    empty.mkdir(exist_ok=True)
    return lambda environ: load_settings(environ, directory=empty)


@pytest.fixture
def start_worker(tmp_path: Path) -> Iterator[Callable[..., object]]:
    """Start real Celery worker processes; each is stopped at the end of the test.

    `start_worker(env, queues=None, concurrency=8, pool="threads")` returns the
    LocalWorkers handle once the worker answers a ping.
    """
    from tasks.runtime import LocalWorkers

    started: list[LocalWorkers] = []

    def start(
        environ: dict, *, queues: list[str] | None = None, concurrency: int = 8,
        pool: str = "threads",
    ):  # fmt: skip
        workers = LocalWorkers(
            environ["REDIS_URL"],
            count=1,
            concurrency=concurrency,
            pool=pool,
            extra_env={k: v for k, v in environ.items() if k != "REDIS_URL"},
            queues=queues,
            log_dir=tmp_path / f"worker-logs-{len(started)}",
            loglevel="INFO",
            name=f"test-worker-{os.getpid()}-{len(started)}",
        ).start()
        started.append(workers)
        _wait_until_consuming(environ["REDIS_URL"], workers)
        return workers

    yield start
    for workers in started:
        workers.stop(timeout=10)


def _wait_until_consuming(url: str, workers, timeout: float = 30.0) -> None:
    """Block until the new worker has joined the broker (its pidbox binding appears)."""
    client = redis.Redis.from_url(url)
    names = {f"{workers.name}-{i}@" for i in range(workers.count)}
    end = time.monotonic() + timeout
    try:
        while time.monotonic() < end:
            for proc in workers.procs:
                if proc.poll() is not None:
                    raise RuntimeError(f"worker exited with {proc.returncode}")
            bound = {m.decode() for m in client.smembers("_kombu.binding.celery.pidbox")}
            if any(name in member for member in bound for name in names):
                time.sleep(0.3)
                return
            time.sleep(0.05)
    finally:
        client.close()
    raise RuntimeError("worker did not start consuming in time")


@pytest.fixture
def producer_for(settings_for) -> Callable[[dict], object]:
    """A Producer for an environment dict, on its REDIS_URL, starting no workers."""
    from tasks.producer import Producer
    from tasks.runtime import Runtime
    from worker.app import configure
    from worker.chat.builder import build_registry

    def make(environ: dict):
        settings = settings_for(environ)
        app = configure(settings, settings.redis_url)
        return Producer(Runtime(settings, app, build_registry(settings), settings.redis_url))

    return make
