"""The measurements: each runs chatq and its baseline side by side on the same Redis,
the same fake upstream and the same machine, and returns the figures and their ratio."""

from __future__ import annotations

import asyncio
import json
import os
import time
import uuid
from pathlib import Path
from typing import Any

import redis
from celery import Celery

from bench.harness import Harness, wait_for_results
from config import load_settings

__all__ = ["enqueue", "io_concurrency", "overhead", "rate_limit", "scale"]

KEY = "bench-key-not-a-secret"


def _chatq_env(url: str, workdir: Path, upstream: str | None = None, **extra: str) -> dict:
    env = {
        "REDIS_URL": url,
        "CHATQ_HOME": str(workdir / "home"),
        "OPENROUTER_API_KEY": KEY,
        "CHATQ_BACKOFF_BASE": "0.2",
        "CHATQ_BACKOFF_MAX": "5",
    }
    if upstream:
        env["OPENROUTER_URL"] = upstream + "/v1"
    env.update(extra)
    return env


def _producer(env: dict, workdir: Path):
    """A chatq producer on `env` (read as settings, never from this process's environment)."""
    from tasks.producer import Producer
    from tasks.runtime import Runtime
    from worker.app import configure
    from worker.chat.builder import build_registry

    settings = load_settings(env, directory=workdir)
    app = configure(settings, settings.redis_url)
    return Producer(Runtime(settings, app, build_registry(settings), settings.redis_url))


def _baseline_sender(url: str) -> Celery:
    app = Celery("baseline-producer", broker=url, backend=url)
    app.conf.update(task_serializer="json", accept_content=["json"])
    return app


def _send_baseline(app: Celery, name: str, payloads: list[list]) -> list[str]:
    ids = []
    with app.producer_or_acquire() as producer, producer.batch(max_size=2000):
        for args in payloads:
            ids.append(app.send_task(name, args=args, producer=producer).id)
    return ids


def _timed(harness: Harness, workers, url: str, ids: list[str], timeout: float = 400):
    """Start-to-finish throughput of `workers` on a queue already holding `ids`, their
    peak memory, and their CPU time per job (from ready to the last result)."""
    peak = [0.0]
    workers.wait_ready()
    cpu_before, load = workers.cpu_seconds(), os.getloadavg()[0]
    started, wall_start = time.perf_counter(), time.time()
    counts, last_done = wait_for_results(
        url,
        ids,
        timeout=timeout,
        sample=lambda: peak.__setitem__(0, max(peak[0], workers.rss_mb())),
    )
    # Until the last result was stored (polling notices it up to 0.2 s later).
    elapsed = time.perf_counter() - started
    if last_done is not None and not counts.get("MISSING"):
        elapsed = min(elapsed, max(1e-3, last_done - wall_start))
    cpu = workers.cpu_seconds() - cpu_before
    workers.stop()
    return {"jobs": len(ids), "seconds": round(elapsed, 2),
            "jobs_per_s": round(len(ids) / elapsed, 1), "states": counts,
            "peak_rss_mb": round(peak[0], 1),
            "worker_cpu_ms_per_job": round(cpu * 1000 / max(1, len(ids)), 3),
            # What the machine was doing as the run began (1-minute load average; the
            # run's own processes count in it once it is under way).
            "load_at_start": round(load, 2)}  # fmt: skip


def overhead(harness: Harness, workdir: Path, *, jobs: int = 5000, concurrency: int = 32):
    """chatq.chat on mock/echo vs a bare Celery task returning its argument."""
    url = harness.fresh_db()
    payload = {"model": "mock/echo", "messages": [{"role": "user", "content": "hello"}]}
    ids = _send_baseline(_baseline_sender(url), "baseline.echo", [[payload]] * jobs)
    base = _timed(harness, harness.workers("bench.baseline_app", url, concurrency=concurrency),
                  url, ids)  # fmt: skip

    url = harness.fresh_db()
    env = _chatq_env(url, workdir, CHATQ_CONCURRENCY=str(concurrency))
    producer = _producer(env, workdir)
    requests = [producer.prepare(payload) for _ in range(jobs)]
    ids = [r.id for r in producer.publish(requests, [None] * jobs, chunk_size=1)]
    chatq = _timed(harness, harness.workers("worker", url, concurrency=concurrency, env=env),
                   url, ids)  # fmt: skip
    return {
        "chatq": chatq, "baseline": base,
        "ratio": round(chatq["jobs_per_s"] / base["jobs_per_s"], 2), "target": ">= 0.8",
        "met": chatq["jobs_per_s"] >= 0.8 * base["jobs_per_s"],
    }  # fmt: skip


def io_concurrency(
    harness: Harness, workdir: Path, *, jobs: int = 2000, concurrency: int = 200,
    delay: float = 0.2, chunk: int = 10, processes: int = 2,
) -> dict[str, Any]:  # fmt: skip
    """2,000 calls to an upstream answering after 200 ms, 200 at a time."""
    with harness.upstream(delay=delay) as upstream:
        asyncio_figures = _asyncio_client(upstream, jobs, concurrency)

        url = harness.fresh_db()
        payload = {"model": "m", "messages": [{"role": "user", "content": "hello"}],
                   "stream": False}  # fmt: skip
        ids = _send_baseline(
            _baseline_sender(url), "baseline.post", [[upstream + "/api/chat", payload]] * jobs
        )
        stock = _timed(harness, harness.workers("bench.baseline_app", url,
                                                concurrency=concurrency), url, ids)  # fmt: skip

        url = harness.fresh_db()
        # The same 200 calls in flight: CHATQ_IN_FLIGHT per process, each process holding
        # twice that many jobs (threads x jobs per chunk), so that a call that ends is
        # followed at once by a job claimed already (worker/limits/in_flight.py).
        in_flight = max(1, concurrency // processes)
        threads = max(1, 2 * in_flight // chunk)
        request = {"model": "openrouter/bench/m", "messages": payload["messages"]}
        runs = {}
        # "configured": the provider's limit is set (far above this upstream's capacity),
        # as for a provider whose quota is known. "cold": nothing configured, so the
        # fleet limiter's slow start probes the unknown provider for the first seconds.
        for name, extra in (("configured", {"CHATQ_OPENROUTER_RPM": "120000"}), ("cold", {})):
            url = harness.fresh_db()
            env = _chatq_env(url, workdir, upstream, CHATQ_CONCURRENCY=str(threads),
                             CHATQ_CHUNK_SIZE=str(chunk), CHATQ_IN_FLIGHT=str(in_flight),
                             **extra)  # fmt: skip
            producer = _producer(env, workdir)
            requests = [producer.prepare(request) for _ in range(jobs)]
            ids = [r.id for r in producer.publish(requests, [None] * jobs)]
            fleet = harness.workers("worker", url, count=processes, concurrency=threads, env=env)
            runs[name] = _timed(harness, fleet, url, ids)
        chatq, cold = runs["configured"], runs["cold"]
    return {
        "chatq": chatq, "baseline": asyncio_figures, "stock_celery": stock, "chatq_cold": cold,
        "in_flight": in_flight * processes, "threads": threads, "processes": processes,
        "cold_ratio": round(cold["jobs_per_s"] / asyncio_figures["jobs_per_s"], 2),
        "ratio": round(chatq["jobs_per_s"] / asyncio_figures["jobs_per_s"], 2),
        "stock_ratio": round(stock["jobs_per_s"] / asyncio_figures["jobs_per_s"], 2),
        "target": ">= 0.9 of the asyncio client, configured and cold",
        "met": chatq["jobs_per_s"] >= 0.9 * asyncio_figures["jobs_per_s"]
        and cold["jobs_per_s"] >= 0.9 * asyncio_figures["jobs_per_s"],
    }  # fmt: skip


def scale(
    harness: Harness, workdir: Path, *, jobs: int = 10_000, concurrency: int = 2000,
    delay: float = 2.0, chunk: int = 100, processes: int = 1,
) -> dict[str, Any]:  # fmt: skip
    """10,000 calls to an upstream answering after 2 s, 2,000 in flight at once, on
    one worker process: chatq against the plain asyncio client, with the workers' peak
    memory and CPU time per job."""
    with harness.upstream(delay=delay) as upstream:
        asyncio_figures = _asyncio_client(upstream, jobs, concurrency)
        url = harness.fresh_db()
        threads = max(1, concurrency // chunk // processes)
        env = _chatq_env(url, workdir, upstream, CHATQ_CONCURRENCY=str(threads),
                         CHATQ_CHUNK_SIZE=str(chunk), CHATQ_OPENROUTER_RPM="600000")  # fmt: skip
        producer = _producer(env, workdir)
        request = {"model": "openrouter/bench/m", "messages": [{"role": "user", "content": "hi"}]}
        ids = [r.id for r in producer.publish([producer.prepare(request)] * jobs, [None] * jobs)]
        fleet = harness.workers("worker", url, count=processes, concurrency=threads, env=env)
        chatq = _timed(harness, fleet, url, ids)
    ratio = chatq["jobs_per_s"] / asyncio_figures["jobs_per_s"]
    return {
        "chatq": chatq, "baseline": asyncio_figures, "processes": processes,
        "in_flight": threads * chunk * processes, "ratio": round(ratio, 2),
        "target": ">= 0.9 of the asyncio client; peak RSS <= 200 MB; CPU <= 0.5 ms/job",
        "met": ratio >= 0.9 and chatq["peak_rss_mb"] <= 200
        and chatq["worker_cpu_ms_per_job"] <= 0.5 and chatq["states"].get("SUCCESS") == jobs,
    }  # fmt: skip


def _asyncio_client(upstream: str, jobs: int, concurrency: int) -> dict[str, Any]:
    import aiohttp

    async def run() -> int:
        limit = asyncio.Semaphore(concurrency)
        body = {"model": "m", "messages": [{"role": "user", "content": "hello"}], "stream": False}
        async with aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=concurrency)
        ) as session:

            async def one() -> int:
                async with limit, session.post(upstream + "/api/chat", json=body) as resp:
                    await resp.json()
                    return resp.status

            return sum(s == 200 for s in await asyncio.gather(*(one() for _ in range(jobs))))

    started, cpu = time.perf_counter(), time.process_time()
    ok = asyncio.run(run())
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
    return {"jobs": jobs, "ok": ok, "seconds": round(elapsed, 2),
            "jobs_per_s": round(jobs / elapsed, 1),
            "cpu_ms_per_call": round(cpu * 1000 / jobs, 3)}  # fmt: skip


def rate_limit(
    harness: Harness, workdir: Path, *, jobs: int = 500, limit: float = 50, workers: int = 2,
    concurrency: int = 50,
) -> dict[str, Any]:  # fmt: skip
    """500 jobs against an upstream allowing 50 requests/s, answering 429 above that."""
    ideal = jobs / limit
    out: dict[str, Any] = {"ideal_seconds": ideal}
    for name in ("baseline", "chatq"):
        with harness.upstream(rate_limit=limit) as upstream:
            url = harness.fresh_db()
            if name == "baseline":
                payload = {"model": "m", "messages": [{"role": "user", "content": "hi"}],
                           "stream": False}  # fmt: skip
                ids = _send_baseline(_baseline_sender(url), "baseline.post_autoretry",
                                     [[upstream + "/api/chat", payload]] * jobs)  # fmt: skip
                fleet = harness.workers("bench.baseline_app", url, count=workers,
                                        concurrency=concurrency)  # fmt: skip
            else:
                env = _chatq_env(url, workdir, upstream, CHATQ_CONCURRENCY=str(concurrency),
                                 CHATQ_CHUNK_SIZE="1")  # fmt: skip
                producer = _producer(env, workdir)
                request = {"model": "openrouter/bench/m",
                           "messages": [{"role": "user", "content": "hi"}]}  # fmt: skip
                requests = [producer.prepare(request) for _ in range(jobs)]
                ids = [r.id for r in producer.publish(requests, [None] * jobs)]
                fleet = harness.workers("worker", url, count=workers, concurrency=concurrency,
                                        env=env)  # fmt: skip
            # The baseline's backoff doubles up to Celery's 600 s cap: its slowest jobs
            # are given two minutes, then counted as unfinished, so the suite ends.
            figures = _timed(harness, fleet, url, ids, timeout=120 if name == "baseline" else 300)
            stats = harness.upstream_stats(upstream)
            calls = stats["calls"]
            figures.update(
                upstream_calls=calls,
                rate_limited=stats["answered"].get("429", 0),
                share_429=round(stats["answered"].get("429", 0) / max(1, calls), 3),
                failed=figures["states"].get("FAILURE", 0),
                unfinished=figures["states"].get("MISSING", 0),
                vs_ideal=round(figures["seconds"] / ideal, 2),
            )
            out[name] = figures
    chatq = out["chatq"]
    out["target"] = "wall <= 1.15 x ideal, 429s <= 5% of calls, 0 failed"
    out["met"] = (
        chatq["vs_ideal"] <= 1.15
        and chatq["share_429"] <= 0.05
        and not chatq["failed"]
        and not chatq["unfinished"]
    )
    return out


def enqueue(harness: Harness, workdir: Path, *, jobs: int = 100_000) -> dict[str, Any]:
    """enqueue_many of 100,000 requests vs a raw LPUSH pipeline into the same Redis."""
    url = harness.fresh_db()
    client = redis.Redis.from_url(url)
    body = json.dumps({"model": "mock/echo", "messages": [{"role": "user", "content": "x"}]})
    started = time.perf_counter()
    pipe = client.pipeline(transaction=False)
    for index in range(jobs):
        pipe.lpush("raw", body)
        if index % 1000 == 999:
            pipe.execute()
    pipe.execute()
    raw = jobs / (time.perf_counter() - started)

    url = harness.fresh_db()
    producer = _producer(_chatq_env(url, workdir), workdir)
    requests = [
        {"model": "mock/echo", "messages": [{"role": "user", "content": f"prompt {i}"}]}
        for i in range(jobs)
    ]
    started = time.perf_counter()
    producer.enqueue_many(requests, task_ids=[str(uuid.uuid4()) for _ in range(jobs)])
    chatq = jobs / (time.perf_counter() - started)
    return {
        "chatq": {"jobs": jobs, "jobs_per_s": round(chatq)},
        "baseline": {"jobs": jobs, "jobs_per_s": round(raw)},
        "ratio": round(chatq / raw, 2), "target": ">= 5,000 jobs/s", "met": chatq >= 5000,
    }  # fmt: skip


def memory(harness: Harness, workdir: Path, *, jobs: int = 3000) -> dict[str, Any]:
    """Worker RSS at the default settings (concurrency and chunk size) under I/O load."""
    defaults = load_settings({}, directory=workdir)
    with harness.upstream(delay=0.2) as upstream:
        url = harness.fresh_db()
        env = _chatq_env(url, workdir, upstream)
        producer = _producer(env, workdir)
        request = {"model": "openrouter/bench/m", "messages": [{"role": "user", "content": "hi"}]}
        ids = [r.id for r in producer.publish([producer.prepare(request)] * jobs, [None] * jobs)]
        fleet = harness.workers("worker", url, concurrency=defaults.concurrency, env=env)
        figures = _timed(harness, fleet, url, ids)
    return {
        "chatq": figures,
        "concurrency": defaults.concurrency,
        "chunk_size": defaults.chunk_size,
        "target": "stated",
        "met": figures["states"].get("SUCCESS") == jobs,
    }
