"""A thousand paid jobs through everything that can go wrong at once.

The fake upstream misbehaves at random (429 with Retry-After, 500, timeouts, truncated
and non-JSON bodies, zero choices); two workers serve the batch; one is SIGKILLed
mid-run and replaced; the Redis server (append-only file on) is restarted mid-run.
Every job must end succeeded, or failed with a chatq error that says why; none may be
missing, and no job may be answered twice by the upstream beyond the calls that were in
flight when the worker died.

The figures are printed as one JSON line (`pytest -s tests/test_chaos.py`); the README's
"Reliability" table quotes them.
"""

from __future__ import annotations

import json
import re
import signal
import time
from collections import Counter
from pathlib import Path

import pytest
import redis

from chatq import errors
from tests.conftest import chatq_env
from tests.fake_upstream import FakeUpstream, Received
from tests.redis_server import free_port
from worker.embedded_redis import EmbeddedRedis

pytestmark = [pytest.mark.chaos, pytest.mark.integration]

JOBS = 200
#: The faults of the issue: 10% 429, 5% 500, 2% timeouts, 1% truncated or not JSON,
#: 1% zero choices.
CHAOS = {
    "429": 0.10,
    "500": 0.05,
    "timeout": 0.02,
    "truncated": 0.005,
    "garbage": 0.005,
    "zero_choices": 0.01,
}
#: Four providers, each with its own fleet limiter learning from the 429s (a limiter
#: holds its provider to about 5 calls a second when a tenth of the calls draw a 429).
MODELS = ("openrouter/chaos/m", "kimi/k2", "opencode/m", "chaos:cloud")
#: Every state a job may end in.
FINAL = {"SUCCESS", "FAILURE"}
#: The error types a failed job may carry: chatq's own, nothing else.
CHATQ_ERRORS = {name for name in errors.__all__ if name[0].isupper()}
#: The test's whole budget. The run takes 50-80 s on two cores: each provider's fleet
#: limiter answers a 429 on a tenth of the calls by holding it near 5 calls a second.
BUDGET = 200.0


@pytest.mark.timeout(300)
def test_hundreds_of_jobs_survive_a_killed_worker_a_redis_restart_and_a_faulty_upstream(
    tmp_path: Path, start_worker, producer_for
):
    began = time.monotonic()
    port = free_port()
    server = EmbeddedRedis(tmp_path / "redis-home", port=port)
    url = server.start()
    upstream = FakeUpstream(chaos=CHAOS, timeout_delay=1.5, delay=0.1, seed=7).start()
    try:
        env = chatq_env(
            upstream, url, tmp_path / "home",
            CHATQ_TIMEOUT="1", CHATQ_CONNECT_TIMEOUT="1",
            CHATQ_BACKOFF_BASE="0.05", CHATQ_BACKOFF_MAX="0.3",
            CHATQ_MAX_ATTEMPTS="8", CHATQ_JOB_DEADLINE="30", CHATQ_VISIBILITY_MARGIN="1",
            CHATQ_CONCURRENCY="4", CHATQ_CHUNK_SIZE="8",
        )  # fmt: skip
        producer = producer_for(env)
        first = start_worker(env, concurrency=4)
        start_worker(env, concurrency=4)
        requests = [{"model": MODELS[i % len(MODELS)], "messages": _prompt(i)} for i in range(JOBS)]
        ids = [r.id for r in producer.enqueue_many(requests)]

        _wait_for(lambda: _ok_jobs(upstream) >= JOBS * 0.15, timeout=45)
        in_flight_at_kill = upstream.in_flight
        first.procs[0].send_signal(signal.SIGKILL)
        first.procs[0].wait()
        # A call the killed worker was answered but had not stored yet is in flight too.
        in_flight_at_kill += _answered_unstored(url, ids, upstream)
        start_worker(env, concurrency=4)

        _wait_for(lambda: _ok_jobs(upstream) >= JOBS * 0.4, timeout=45)
        # SIGTERM, the restart an operator or an orchestrator does: Redis writes its
        # append-only file out and exits. (A SIGKILL would lose the last second of writes
        # under appendfsync everysec, published jobs included.)
        server.stop()
        server = EmbeddedRedis(tmp_path / "redis-home", port=port)
        assert server.start() == url

        metas = _collect(url, ids, deadline=began + BUDGET)
    finally:
        upstream.stop()
        server.stop()

    missing = [job for job in ids if metas.get(job, {}).get("status") not in FINAL]
    failed = {job: m for job, m in metas.items() if m.get("status") == "FAILURE"}
    unclear = [
        m["result"] for m in failed.values()
        if m["result"].get("exc_type") not in CHATQ_ERRORS or not _message(m["result"])
    ]  # fmt: skip
    answers = Counter(_job_of(r) for r in upstream.received if _answered(r))
    duplicated = sum(1 for n in answers.values() if n > 1)
    wrong = [
        job for i, job in enumerate(ids)
        if metas[job]["status"] == "SUCCESS"
        and metas[job]["result"]["content"] != f"echo: {_prompt(i)[0]['content']}"
    ]  # fmt: skip
    figures = {
        "jobs": JOBS,
        "upstream_calls": upstream.calls,
        "faults_injected": dict(sorted(upstream.injected.items())),
        "worker_sigkilled": 1,
        "redis_restarts": 1,
        "in_flight_at_kill": in_flight_at_kill,
        "succeeded": JOBS - len(failed) - len(missing),
        "failed_with_clear_error": len(failed) - len(unclear),
        "failed_by_error": dict(Counter(m["result"].get("exc_type") for m in failed.values())),
        "failed_unclear": len(unclear),
        "lost": len(missing),
        "duplicated": duplicated,
        "seconds": round(time.monotonic() - began, 1),
    }
    print("chaos figures:", json.dumps(figures))

    assert not missing, f"{len(missing)} job(s) never finished: {figures}"
    assert not unclear, f"failures without a chatq error: {unclear[:3]}"
    assert not wrong, f"{len(wrong)} job(s) got another job's answer"
    assert duplicated <= in_flight_at_kill, figures
    assert sum(upstream.injected.values()) > JOBS * 0.15  # the faults really happened


def _prompt(index: int) -> list[dict]:
    return [{"role": "user", "content": f"chaos job {index}"}]


def _answered(received: Received) -> bool:
    """Whether the upstream gave this call a proper answer (one the job pays for).
    Ollama Cloud's wire format has no choices: a "zero choices" body is an answer there."""
    return received.answer == "ok" or (
        received.answer == "zero_choices" and received.path.endswith("/api/generate")
    )


def _job_of(received: Received) -> int:
    return int(re.search(r"chaos job (\d+)", json.dumps(received.body)).group(1))


def _ok_jobs(upstream: FakeUpstream) -> int:
    return sum(1 for r in upstream.received if _answered(r))


def _answered_unstored(url: str, ids: list[str], upstream: FakeUpstream) -> int:
    """Jobs the upstream has answered whose success is not stored (yet)."""
    answered = sorted({_job_of(r) for r in upstream.received if _answered(r)})
    client = redis.Redis.from_url(url)
    try:
        values = client.mget([f"celery-task-meta-{ids[i]}" for i in answered])
    finally:
        client.close()
    return sum(1 for v in values if v is None or json.loads(v)["status"] != "SUCCESS")


def _collect(url: str, ids: list[str], *, deadline: float) -> dict[str, dict]:
    """Every job's stored result document, polled until all are final or time runs out
    (reads that fail while Redis restarts are simply tried again)."""
    client = redis.Redis.from_url(url, socket_timeout=5)
    metas: dict[str, dict] = {}
    try:
        while time.monotonic() < deadline:
            pending = [job for job in ids if metas.get(job, {}).get("status") not in FINAL]
            if not pending:
                break
            try:
                values = client.mget([f"celery-task-meta-{job}" for job in pending])
            except redis.ConnectionError:
                time.sleep(0.2)
                continue
            for job, value in zip(pending, values, strict=True):
                if value is not None:
                    metas[job] = json.loads(value)
            time.sleep(0.25)
    finally:
        client.close()
    return metas


def _message(result: dict) -> str:
    message = result.get("exc_message")
    if isinstance(message, (list, tuple)):
        message = message[0] if message else ""
    return str(message or "").strip()


def _wait_for(condition, *, timeout: float) -> None:
    end = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > end:
            raise AssertionError("the chaos run stalled")
        time.sleep(0.05)
