"""A real gateway for the gateway tests: `chatq serve` in its own process, a real
Celery worker and the test Redis, with the fake upstream behind the providers.

One gateway per test module (starting one takes a second or two); each test gets the
upstream's script emptied.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import httpx
import pytest
import redis

from tests.conftest import _wait_until_consuming, chatq_env
from tests.fake_upstream import FakeUpstream
from tests.redis_server import free_port

#: The database the gateway tests use (the other tests cycle through 1-15 too, but
#: each flushes its own database first; these flush theirs per module).
_DB = 15


@dataclass
class Served:
    """A running gateway and what is behind it."""

    url: str
    redis_url: str
    env: dict[str, str]
    upstream: FakeUpstream
    home: Path
    log: Path

    def client(self, **kw) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=30, **kw)

    def redis(self) -> redis.Redis:
        return redis.Redis.from_url(self.redis_url)


def serve(env: dict[str, str], log: Path) -> tuple[subprocess.Popen, str]:
    """Start `chatq serve` on a free port; (process, base URL) once it answers."""
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "tasks.cli", "serve", "--port", str(port)],
        env={**os.environ, **env, "PYTHONPATH": str(Path(__file__).parents[2])},
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    end = time.monotonic() + 30
    while time.monotonic() < end:
        if proc.poll() is not None:
            raise RuntimeError(f"chatq serve exited: {log.read_text()[-2000:]}")
        try:
            httpx.get(f"{url}/healthz", timeout=1)
            return proc, url
        except httpx.TransportError:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError(f"chatq serve did not answer: {log.read_text()[-2000:]}")


def stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@pytest.fixture(scope="module")
def served(redis_server: str, tmp_path_factory: pytest.TempPathFactory,
           request: pytest.FixtureRequest) -> Iterator[Served]:  # fmt: skip
    """A gateway, one worker and the fake upstream, for the whole module. A module may
    set `GATEWAY_ENV` (extra variables; None removes one)."""
    from tasks.runtime import LocalWorkers

    tmp = tmp_path_factory.mktemp("gateway")
    url = urlunsplit(urlsplit(redis_server)._replace(path=f"/{_DB}"))
    redis.Redis.from_url(url).flushdb()
    with FakeUpstream() as upstream:
        env = chatq_env(upstream, url, tmp / "home", CHATQ_MAX_ATTEMPTS="3")
        env.update(getattr(request.module, "GATEWAY_ENV", {}))
        env = {k: v for k, v in env.items() if v is not None}
        workers = LocalWorkers(url, count=1, concurrency=8,
                               extra_env={k: v for k, v in env.items() if k != "REDIS_URL"},
                               log_dir=tmp / "worker-logs", loglevel="INFO",
                               name=f"gateway-worker-{os.getpid()}").start()  # fmt: skip
        try:
            _wait_until_consuming(url, workers)
            proc, base = serve(env, tmp / "serve.log")
            try:
                yield Served(base, url, env, upstream, tmp / "home", tmp / "serve.log")
            finally:
                stop(proc)
        finally:
            workers.stop(timeout=10)


@pytest.fixture
def gw(served: Served) -> Served:
    """The module's gateway, with the upstream's script and records emptied."""
    served.upstream.reset()
    return served
