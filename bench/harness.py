"""What every measurement needs: a private Redis, a fake upstream in its own process,
worker processes, and a way to wait for thousands of results.

Everything listens on loopback only and stops when the run ends.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator, Sequence
from pathlib import Path

import psutil
import redis

from worker.embedded_redis import EmbeddedRedis

__all__ = ["Harness", "Workers"]

ROOT = Path(__file__).resolve().parent.parent


class Workers:
    """Celery worker processes of one app, started and stopped together."""

    def __init__(self, procs: list[subprocess.Popen], names: list[str], url: str):
        self.procs = procs
        self.names = names
        self.url = url

    def wait_ready(self, timeout: float = 60.0) -> None:
        """Block until every worker has joined the broker (its pidbox binding appears)."""
        client = redis.Redis.from_url(self.url)
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            bound = {m.decode() for m in client.smembers("_kombu.binding.celery.pidbox")}
            if all(any(n in m for m in bound) for n in self.names):
                client.close()
                return
            for proc in self.procs:
                if proc.poll() is not None:
                    raise RuntimeError(f"a worker exited with {proc.returncode}")
            time.sleep(0.05)
        raise RuntimeError("workers did not start in time")

    def rss_mb(self) -> float:
        """Resident memory of the workers and their children, in MB."""
        return self._sum(lambda p: p.memory_info().rss) / 1e6

    def cpu_seconds(self) -> float:
        """CPU time (user + system) the workers and their children have used so far."""
        return self._sum(lambda p: p.cpu_times().user + p.cpu_times().system)

    def _sum(self, reading) -> float:
        """`reading(process)` summed over the workers and their children (a process
        that has just ended counts for nothing)."""
        total = 0.0
        for proc in self.procs:
            with contextlib.suppress(psutil.Error):
                parent = psutil.Process(proc.pid)
                for p in [parent, *parent.children(recursive=True)]:
                    with contextlib.suppress(psutil.Error):
                        total += reading(p)
        return total

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


class Harness:
    """A private Redis (one flushed database per measurement) and helpers around it."""

    def __init__(self, workdir: Path):
        self.workdir = workdir
        self.redis = EmbeddedRedis(workdir / "home")
        self.base_url = ""
        self._db = 0
        self._upstreams: list[subprocess.Popen] = []

    def __enter__(self) -> Harness:
        self.base_url = self.redis.start()
        return self

    def __exit__(self, *exc: object) -> None:
        for proc in self._upstreams:
            proc.terminate()
            proc.wait(10)
        self.redis.stop()

    def fresh_db(self) -> str:
        """The URL of an empty database of the private Redis."""
        self._db += 1
        url = self.base_url.rsplit("/", 1)[0] + f"/{self._db}"
        client = redis.Redis.from_url(url)
        client.flushdb()
        client.close()
        return url

    @contextlib.contextmanager
    def upstream(self, *, delay: float = 0.0, rate_limit: float | None = None) -> Iterator[str]:
        """A fake upstream in its own process; yields its base URL."""
        args = [sys.executable, "-m", "tests.fake_upstream", "--delay", str(delay)]
        if rate_limit:
            args += ["--rate-limit", str(rate_limit)]
        proc = subprocess.Popen(args, cwd=ROOT, stdout=subprocess.PIPE, text=True)
        url = proc.stdout.readline().strip()
        try:
            yield url
        finally:
            proc.terminate()
            proc.wait(10)

    @staticmethod
    def upstream_stats(url: str) -> dict:
        with urllib.request.urlopen(url + "/_stats", timeout=10) as answer:
            return json.loads(answer.read())

    def workers(
        self,
        app: str,
        url: str,
        *,
        count: int = 1,
        concurrency: int = 32,
        pool: str = "threads",
        env: dict[str, str] | None = None,
    ) -> Workers:
        """Start `count` workers of Celery app `app` on `url`."""
        procs, names = [], []
        log_dir = self.workdir / "logs"
        log_dir.mkdir(parents=True, exist_ok=True)
        for index in range(count):
            name = f"bench-{app.replace('.', '-')}-{self._db}-{index}"
            names.append(name + "@")
            log = open(log_dir / f"{name}.log", "ab")  # noqa: SIM115
            procs.append(
                subprocess.Popen(
                    [
                        sys.executable,
                        "-m",
                        "celery",
                        "-A",
                        app,
                        "worker",
                        "--pool",
                        pool,
                        "--concurrency",
                        str(concurrency),
                        "--hostname",
                        f"{name}@%h",
                        "--loglevel",
                        "WARNING",
                        "--without-gossip",
                        "--without-mingle",
                    ],
                    cwd=ROOT,
                    env={**os.environ, "REDIS_URL": url, "BENCH_REDIS_URL": url, **(env or {})},
                    stdout=log,
                    stderr=log,
                )
            )
        return Workers(procs, names, url)


def wait_for_results(
    url: str, ids: Sequence[str], *, timeout: float = 300.0, sample=None
) -> tuple[dict[str, int], float | None]:
    """Block until every id has a final state.

    Returns:
        The counts by state, and the wall-clock time (`time.time()`) at which the last
        result was stored, from the results' `date_done`: the run's true end, which the
        0.2 s polling here would otherwise blur. None when no result says.

    `sample` (no arguments) is called every poll, e.g. to measure memory.
    """
    client = redis.Redis.from_url(url)
    keys = [f"celery-task-meta-{i}" for i in ids]
    end = time.monotonic() + timeout
    pending = keys
    counts: dict[str, int] = {}
    last_done: float | None = None
    while pending and time.monotonic() < end:
        still = []
        for start in range(0, len(pending), 2000):
            batch = pending[start : start + 2000]
            for key, value in zip(batch, client.mget(batch), strict=True):
                meta = json.loads(value) if value else {}
                state = meta.get("status")
                if state in ("SUCCESS", "FAILURE"):
                    counts[state] = counts.get(state, 0) + 1
                    done = _timestamp(meta.get("date_done"))
                    if done is not None:
                        last_done = done if last_done is None else max(last_done, done)
                else:
                    still.append(key)
        pending = still
        if sample is not None:
            sample()
        if pending:
            time.sleep(0.2)
    client.close()
    if pending:
        counts["MISSING"] = len(pending)
    return counts, last_done


def _timestamp(iso: object) -> float | None:
    """A result's `date_done` (ISO 8601, with its zone) as a `time.time()` value."""
    if not isinstance(iso, str):
        return None
    try:
        return dt.datetime.fromisoformat(iso).timestamp()
    except ValueError:
        return None


@contextlib.contextmanager
def gateway(env: dict[str, str], log: Path, *, timeout: float = 60) -> Iterator[tuple[str, int]]:
    """`chatq serve` on a free loopback port with `env`, once `/healthz` answers 200;
    yields (its base URL, its pid) and stops it at the end."""
    from tests.redis_server import free_port

    port = free_port()
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "tasks.cli", "serve", "--port", str(port), "--log-level",
             "warning"], cwd=ROOT, env={**os.environ, **env}, stdout=out, stderr=out,
        )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        end = time.monotonic() + timeout
        while True:
            try:
                with urllib.request.urlopen(f"{base}/healthz", timeout=2) as answer:
                    if answer.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > end or proc.poll() is not None:
                raise RuntimeError(f"the gateway did not become healthy (see {log})")
            time.sleep(0.2)
        yield base, proc.pid
    finally:
        proc.terminate()
        proc.wait(30)
