"""The HTTP gateway's cost: `POST /v1/chat/completions` on mock/echo from many
concurrent clients, beside a direct `enqueue` + `wait` from as many threads, against the
same workers on the same Redis in the same run.

Both go through the whole queue (publish, a worker's task, the stored result); the
difference is what HTTP, JSON in and out, and the gateway's waiting add.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from bench.harness import Harness
from bench.harness import gateway as serve

__all__ = ["gateway"]

HELLO = {"model": "mock/echo", "messages": [{"role": "user", "content": "hello"}]}


def gateway(harness: Harness, workdir: Path, *, requests: int = 3000, clients: int = 64,
            concurrency: int = 32) -> dict[str, Any]:  # fmt: skip
    from bench.measurements import _chatq_env, _producer

    url = harness.fresh_db()
    env = _chatq_env(url, workdir, CHATQ_CONCURRENCY=str(concurrency))
    workers = harness.workers("worker", url, concurrency=concurrency, env=env)
    workers.wait_ready()
    producer = _producer(env, workdir)
    request = producer.prepare(HELLO)

    def direct_one() -> float:
        started = time.perf_counter()
        producer.wait(producer.enqueue(request), timeout=60)
        return time.perf_counter() - started

    direct_one()  # warm: connections, the worker's first job
    with ThreadPoolExecutor(clients) as pool:
        started = time.perf_counter()
        direct = list(pool.map(lambda _: direct_one(), range(requests)))
        direct_s = time.perf_counter() - started

    try:
        with serve(env, workdir / "gateway-bench.log") as (base_url, _pid):
            http, http_s, errors = asyncio.run(_http(base_url, requests, clients))
    finally:
        workers.stop()
    chatq = _figures(http, http_s) | {"errors": errors}
    base = _figures(direct, direct_s)
    ratio = round(chatq["requests_per_s"] / base["requests_per_s"], 2)
    return {
        "requests": requests, "clients": clients, "chatq": chatq, "baseline": base,
        "ratio": ratio, "target": "stated (HTTP vs direct enqueue + wait)",
        "met": errors == 0,
    }  # fmt: skip


async def _http(base: str, requests: int, clients: int) -> tuple[list[float], float, int]:
    import aiohttp

    async with aiohttp.ClientSession() as session:
        async with session.post(f"{base}/v1/chat/completions", json=HELLO) as warm:
            await warm.read()
        todo = iter(range(requests))
        latencies: list[float] = []
        errors = 0

        async def client() -> None:
            nonlocal errors
            for _ in todo:
                started = time.perf_counter()
                async with session.post(f"{base}/v1/chat/completions", json=HELLO) as answer:
                    await answer.read()
                    errors += answer.status != 200
                latencies.append(time.perf_counter() - started)

        started = time.perf_counter()
        await asyncio.gather(*(client() for _ in range(clients)))
        return latencies, time.perf_counter() - started, errors


def _figures(latencies: list[float], seconds: float) -> dict[str, float]:
    ordered = sorted(latencies)
    return {
        "requests_per_s": round(len(ordered) / seconds, 1),
        "p50_ms": round(statistics.median(ordered) * 1000, 1),
        "p99_ms": round(ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1000, 1),
    }
