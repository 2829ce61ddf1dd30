"""Bulk jobs in chunks: one message, many jobs, each with its own id, result and retries."""

from __future__ import annotations

import datetime as dt
import json
import time

import pytest
from celery import states

from chatq.errors import (
    ChatqError,
    ChunkFailed,
    DeadlineExceeded,
    InvalidRequest,
    ProviderNotFound,
    UpstreamError,
)
from tests.fake_upstream import Answer
from worker.app import CHAT_MANY_TASK, app, chunk_summary

pytestmark = pytest.mark.integration


def _msg(text: str) -> list[dict]:
    return [{"role": "user", "content": text}]


def test_enqueue_many_sends_chunks_and_every_job_gets_its_own_result(
    env, upstream, producer_for, start_worker, redis_client
):
    env["CHATQ_CHUNK_SIZE"] = "4"
    producer = producer_for(env)
    requests = [{"model": "ollama/llama3", "messages": _msg(f"q{i}")} for i in range(10)]
    results = producer.enqueue_many(requests)
    assert redis_client.llen("chat.ollama") == 3  # 4 + 4 + 2 jobs
    start_worker(env)
    answers = [producer.wait(r, timeout=30).content for r in results]
    assert answers == [f"echo: q{i}" for i in range(10)]
    assert upstream.calls == 10
    # Each job's result is the document Celery's backend stores for a task.
    stored = json.loads(redis_client.get(f"celery-task-meta-{results[0].id}"))
    celerys = app.backend._get_result_meta(stored["result"], states.SUCCESS, None, None)
    assert stored == {**celerys, "task_id": results[0].id, "date_done": stored["date_done"]}
    done = dt.datetime.fromisoformat(stored["date_done"])
    assert done.utcoffset() == dt.timedelta(0)
    assert abs(dt.datetime.now(dt.timezone.utc) - done) < dt.timedelta(seconds=60)


def test_a_chunk_keeps_each_jobs_failure_and_retries_to_itself(
    env, upstream, producer_for, start_worker
):
    env.update(CHATQ_CHUNK_SIZE="3", CHATQ_MAX_ATTEMPTS="3")
    producer = producer_for(env)
    start_worker(env)
    upstream.push(Answer.error(401), Answer.rate_limited(0.1))
    results = producer.enqueue_many(
        [{"model": "openrouter/a/b", "messages": _msg(f"q{i}")} for i in range(3)]
    )
    outcomes = []
    for result in results:
        try:
            outcomes.append(producer.wait(result, timeout=30).attempts)
        except UpstreamError as exc:
            outcomes.append(exc.status)
    assert sorted(outcomes, key=str) == sorted([401, 1, 2], key=str)
    assert app.AsyncResult(results[outcomes.index(401)].id).state == states.FAILURE


def test_a_chunk_with_failed_jobs_ends_in_failure_counting_them_by_class(
    env, upstream, producer_for, start_worker, tmp_path, redis_client
):
    env.update(CHATQ_MAX_ATTEMPTS="2")
    producer = producer_for(env)
    start_worker(env)
    upstream.when("key-revoked", Answer.error(401))
    upstream.when("outage", then=Answer.error(500))
    upstream.when("busy", Answer.rate_limited(0.1))
    prompts = ["key-revoked", "outage", "busy", "fine"]
    jobs = [[f"c-{p}", {"model": "openrouter/a/b", "messages": _msg(p)}] for p in prompts]
    chunk = app.send_task(CHAT_MANY_TASK, args=[jobs], queue="chat.openrouter")
    with pytest.raises(ChunkFailed) as failed:
        producer.wait(chunk, timeout=30)
    assert failed.value.facts["outcomes"] == {
        "ok": 2,
        "failed": {"AuthenticationFailed 401": 1, "UpstreamUnavailable 500": 1},
        "retries": {"RateLimited 429": 1, "UpstreamUnavailable 500": 1},
    }
    assert "2 of 4 jobs failed" in str(failed.value)
    end = time.monotonic() + 5  # the failed chunk's message is acknowledged, not redelivered
    while redis_client.hlen("unacked") and time.monotonic() < end:
        time.sleep(0.1)
    assert redis_client.hlen("unacked") == 0
    assert producer.wait("c-busy", timeout=5).retries == {"RateLimited 429": 1}
    assert producer.wait("c-fine", timeout=5).attempts == 1
    with pytest.raises(UpstreamError):
        producer.wait("c-outage", timeout=5)
    log = "".join(p.read_text() for p in tmp_path.glob("worker-logs-*/*.log"))
    warnings = [line for line in log.splitlines() if "WARNING" in line and "failed:" in line]
    assert len(warnings) == 2, warnings
    assert any("c-key-revoked" in w and "AuthenticationFailed 401" in w for w in warnings)
    assert "Traceback" not in log and "raised unexpected" not in log
    assert "key-revoked" not in log.replace("c-key-revoked", "")  # never the prompt


@pytest.mark.parametrize("pool", ["prefork", "solo"])
def test_every_offered_pool_runs_chunks_and_single_jobs_on_its_processes_loop(
    env, upstream, producer_for, start_worker, pool
):
    producer = producer_for(env)
    start_worker(env, concurrency=2, pool=pool)
    results = producer.enqueue_many(
        [{"model": "openrouter/a/b", "messages": _msg(f"q{i}")} for i in range(20)]
    )
    alone = producer.enqueue("openrouter/a/b", _msg("alone"))
    answers = [producer.wait(r, timeout=30).content for r in [*results, alone]]
    assert answers == [f"echo: q{i}" for i in range(20)] + ["echo: alone"]
    assert upstream.calls == 21


def test_a_worker_holding_more_jobs_than_chatq_in_flight_calls_no_more_at_once(
    env, upstream, producer_for, start_worker, redis_client
):
    # Four threads hold chunks of five (20 jobs at once); three may call at a time, and a
    # call that ends hands its slot to a waiting job of any chunk.
    env.update(CHATQ_CHUNK_SIZE="5", CHATQ_IN_FLIGHT="3")
    upstream.delay = 0.2
    producer = producer_for(env)
    requests = [{"model": "openrouter/a/b", "messages": _msg(f"q{i}")} for i in range(20)]
    results = producer.enqueue_many(requests)
    start_worker(env, concurrency=4)
    answers = [producer.wait(r, timeout=30).content for r in results]
    assert answers == [f"echo: q{i}" for i in range(20)]
    assert upstream.calls == 20
    assert upstream.peak_in_flight == 3
    # Operators see the wait as the workers' (a slot), not the provider's (a turn).
    deadline = time.monotonic() + 10
    while not redis_client.hget("chatq:metrics:slot_wait_seconds", "openrouter"):
        assert time.monotonic() < deadline, "no slot wait counted"
        time.sleep(0.2)
    # 17 calls waited for one of 3 slots, about 11 s in all; the turns (the limiter's
    # slow start, nothing being configured) took a fraction of a second.
    slot_wait = float(redis_client.hget("chatq:metrics:slot_wait_seconds", "openrouter"))
    turn_wait = float(redis_client.hget("chatq:metrics:limiter_wait_seconds", "openrouter") or 0)
    assert slot_wait > 5.0
    assert turn_wait < slot_wait / 5


def test_a_job_that_finds_no_call_slot_before_its_deadline_fails_without_a_call(
    env, upstream, producer_for, start_worker
):
    env.update(CHATQ_IN_FLIGHT="1", CHATQ_JOB_DEADLINE="2", CHATQ_MAX_ATTEMPTS="1")
    upstream.delay = 3  # the one slot stays taken past both jobs' deadline
    producer = producer_for(env)
    start_worker(env)
    jobs = [[f"slot-{i}", {"model": "openrouter/a/b", "messages": _msg(f"q{i}")}] for i in (1, 2)]
    app.send_task(CHAT_MANY_TASK, args=[jobs], queue="chat.openrouter")
    errors = []
    for job, _ in jobs:
        with pytest.raises(ChatqError) as failed:
            producer.wait(app.AsyncResult(job), timeout=30)
        errors.append(failed.value)
    waited = [e for e in errors if "CHATQ_IN_FLIGHT=1" in e.message]
    assert len(waited) == 1 and isinstance(waited[0], DeadlineExceeded)
    assert upstream.calls == 1  # the job that never had a slot was not called


def test_enqueue_many_queues_nothing_when_one_request_is_bad(env, producer_for, redis_client):
    producer = producer_for(env)
    good = {"model": "mock/echo", "messages": _msg("fine")}
    with pytest.raises(InvalidRequest, match=r"request 1: .*messages"):
        producer.enqueue_many([good, {"model": "mock/echo", "messages": []}, good])
    with pytest.raises(ProviderNotFound, match="request 2"):
        env_without = producer_for({k: v for k, v in env.items() if k != "KIMI_API_KEY"})
        env_without.enqueue_many([good, good, {"model": "kimi/k2", "messages": _msg("x")}])
    assert sum(redis_client.llen(q) for q in ("celery", "chat.mock", "chat.kimi")) == 0


def test_a_chunk_delivered_twice_pays_for_each_job_once(env, upstream, producer_for, start_worker):
    producer = producer_for(env)
    start_worker(env)
    jobs = [[f"dup-{i}", {"model": "ollama/llama3", "messages": _msg(f"q{i}")}] for i in range(5)]
    app.send_task(CHAT_MANY_TASK, args=[jobs], queue="chat.ollama")
    for job, _ in jobs:
        producer.wait(job, timeout=30)
    app.send_task(CHAT_MANY_TASK, args=[jobs], queue="chat.ollama")
    time.sleep(1.5)
    assert upstream.calls == 5


def test_a_garbage_chunk_fails_alone_and_the_worker_goes_on(env, producer_for, start_worker):
    producer = producer_for(env)
    start_worker(env)
    bad = app.send_task(CHAT_MANY_TASK, args=["not a list"], queue="chat.mock")
    with pytest.raises(InvalidRequest, match="pairs"):
        producer.wait(bad, timeout=30)
    mixed = [["m-1", {"model": "mock/echo", "messages": _msg("ok")}], ["m-2", {"model": ""}]]
    app.send_task(CHAT_MANY_TASK, args=[mixed], queue="chat.mock")
    assert producer.wait("m-1", timeout=30).content == "ok"
    with pytest.raises(InvalidRequest, match="model"):
        producer.wait("m-2", timeout=30)


def test_a_chunks_monitoring_summary_shows_counts_never_prompts():
    jobs = [[f"id-{i}", {"model": "mock/echo", "messages": _msg("secret words")}] for i in range(3)]
    summary = chunk_summary([jobs])
    assert summary == "jobs=3 model=mock/echo chars=36"
    assert "secret" not in summary
