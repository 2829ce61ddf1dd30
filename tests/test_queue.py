"""The queue end to end: a producer, a real Celery worker, a real Redis, the fake upstream."""

from __future__ import annotations

import contextlib
import json
import signal
import threading
import time

import pytest
from celery import states

from chatq.errors import (
    DeadlineExceeded,
    InvalidRequest,
    ProviderNotFound,
    RateLimited,
    RetryAfterTooLong,
    UpstreamError,
)
from tests.fake_upstream import Answer
from worker.app import CHAT_TASK, app

pytestmark = pytest.mark.integration

HELLO = [{"role": "user", "content": "hello"}]


@pytest.mark.parametrize(
    ("model", "provider", "path", "sent_model"),
    [
        ("ollama/llama3", "ollama", "/api/chat", "llama3"),
        ("llama3", "ollama", "/api/chat", "llama3"),
        ("ollama_cloud/gpt-oss", "ollama_cloud", "/api/generate", "gpt-oss"),
        ("gpt-oss:cloud", "ollama_cloud", "/api/generate", "gpt-oss"),
        ("openrouter/openai/gpt-4o", "openrouter", "/v1/chat/completions", "openai/gpt-4o"),
        ("opencode/grok-code", "opencode", "/v1/chat/completions", "grok-code"),
        ("kimi/kimi-k2", "kimi", "/v1/chat/completions", "kimi-k2"),
    ],
)
def test_a_job_for_each_provider_is_answered_through_a_real_worker(
    env, upstream, producer_for, start_worker, model, provider, path, sent_model
):
    producer = producer_for(env)
    start_worker(env)
    response = producer.wait(producer.enqueue(model, HELLO), timeout=30)
    assert response.provider == provider
    assert response.content == "echo: hello"
    assert response.attempts == 1
    assert [(r.path, r.body["model"]) for r in upstream.received] == [(path, sent_model)]


def test_the_mock_provider_answers_without_any_upstream_call(
    env, upstream, producer_for, start_worker
):
    producer = producer_for(env)
    start_worker(env)
    response = producer.wait(producer.enqueue("mock/echo", HELLO), timeout=30)
    assert (response.provider, response.content) == ("mock", "hello")
    assert upstream.calls == 0


def test_a_429_with_retry_after_2_completes_after_at_least_2s_in_two_attempts(
    env, upstream, producer_for, start_worker
):
    producer = producer_for(env)
    start_worker(env)
    upstream.push(Answer.rate_limited(2))
    started = time.monotonic()
    response = producer.wait(producer.enqueue("openrouter/a/b", HELLO), timeout=30)
    assert time.monotonic() - started >= 2.0
    assert response.attempts == 2
    assert upstream.calls == 2


def test_a_401_fails_with_exactly_one_upstream_call(env, upstream, producer_for, start_worker):
    producer = producer_for(env)
    start_worker(env)
    upstream.push(Answer.error(401, {"error": "invalid key"}))
    result = producer.enqueue("openrouter/a/b", HELLO)
    with pytest.raises(UpstreamError) as caught:
        producer.wait(result, timeout=30)
    assert caught.value.status == 401
    assert "API key" in str(caught.value)
    time.sleep(0.3)
    assert upstream.calls == 1


def test_a_failed_job_reads_back_through_asyncresult_as_failure_with_its_error_type(
    env, upstream, producer_for, start_worker
):
    env["CHATQ_MAX_ATTEMPTS"] = "2"
    producer = producer_for(env)
    start_worker(env)
    upstream.push(*[Answer.rate_limited(0.01)] * 2)
    result = producer.enqueue("kimi/k2", HELLO)
    with pytest.raises(RateLimited):
        producer.wait(result, timeout=30)
    fresh = app.AsyncResult(result.id)
    assert fresh.state == states.FAILURE
    assert isinstance(fresh.result, RateLimited)
    assert fresh.result.status == 429
    assert "gave up after 2 calls" in str(fresh.result)


def test_a_read_timeout_is_retried_and_the_job_completes(env, upstream, producer_for, start_worker):
    env["CHATQ_TIMEOUT"] = "0.5"
    producer = producer_for(env)
    start_worker(env)
    upstream.push(Answer.slow(2.0))
    response = producer.wait(producer.enqueue("ollama/llama3", HELLO), timeout=30)
    assert response.attempts == 2
    assert upstream.calls == 2


def test_an_invalid_request_is_refused_at_enqueue_and_never_queued(env, producer_for, redis_client):
    producer = producer_for(env)
    with pytest.raises(InvalidRequest, match="messages"):
        producer.enqueue("mock/echo", [])
    with pytest.raises(InvalidRequest, match="role"):
        producer.enqueue("mock/echo", [{"role": "robot", "content": "x"}])
    assert _queued(redis_client) == 0


def test_a_cloud_model_without_a_cloud_key_is_refused_at_once(env, producer_for, redis_client):
    del env["OLLAMA_CLOUD_API_KEY"]
    producer = producer_for(env)
    started = time.monotonic()
    with pytest.raises(ProviderNotFound, match="OLLAMA_CLOUD_API_KEY"):
        producer.enqueue("gpt-oss:cloud", HELLO)
    assert time.monotonic() - started < 1.0
    assert _queued(redis_client) == 0


def test_a_retry_after_beyond_the_limit_fails_at_once_saying_how_long_was_asked(
    env, upstream, producer_for, start_worker
):
    env["CHATQ_RETRY_AFTER_MAX"] = "10"
    producer = producer_for(env)
    start_worker(env)
    upstream.push(Answer.rate_limited(3600))
    with pytest.raises(RetryAfterTooLong, match="3600s") as caught:
        producer.wait(producer.enqueue("openrouter/a/b", HELLO), timeout=30)
    assert caught.value.facts["retry_after"] == 3600
    assert upstream.calls == 1


def test_jobs_go_to_their_providers_queue_and_a_dedicated_worker_serves_only_that_queue(
    env, upstream, producer_for, start_worker, redis_client
):
    producer = producer_for(env)
    start_worker(env, queues=["chat.ollama"])
    cloud = producer.enqueue("openrouter/a/b", HELLO)
    local = producer.enqueue("ollama/llama3", HELLO)
    assert producer.wait(local, timeout=30).provider == "ollama"
    time.sleep(0.5)
    assert app.AsyncResult(cloud.id).state == states.PENDING
    assert redis_client.llen("chat.openrouter") == 1


def test_send_task_by_name_routes_with_chatqs_config_and_a_foreign_job_is_still_served(
    env, upstream, producer_for, start_worker, redis_client
):
    from celery import Celery

    producer = producer_for(env)
    routed = app.send_task(CHAT_TASK, args=[{"model": "kimi/k2", "messages": HELLO}])
    assert redis_client.llen("chat.kimi") == 1
    foreign = Celery("someone-else", broker=env["REDIS_URL"], backend=env["REDIS_URL"])
    stranger = foreign.send_task(CHAT_TASK, args=[{"model": "mock/echo", "messages": HELLO}])
    assert redis_client.llen("celery") == 1
    # The sender waits as any Celery client does (subscribed to its result's channel,
    # before the job has run), and is woken by the worker's stored result.
    got: list = []
    waiter = threading.Thread(target=lambda: got.append(stranger.get(timeout=30)))
    waiter.start()
    start_worker(env)
    assert producer.wait(routed, timeout=30).provider == "kimi"
    assert producer.wait(stranger.id, timeout=30).content == "hello"
    waiter.join(30)
    assert got and got[0]["content"] == "hello" and stranger.state == states.SUCCESS


def test_garbage_sent_by_name_fails_that_task_cleanly_and_the_worker_goes_on(
    env, producer_for, start_worker
):
    producer = producer_for(env)
    start_worker(env)
    bad = [
        app.send_task(CHAT_TASK, args=["not a dict"]),
        app.send_task(CHAT_TASK, args=[{"model": "mock/echo"}]),
        app.send_task(CHAT_TASK, args=[{"model": "mock/echo", "messages": HELLO}, 2]),
        app.send_task(CHAT_TASK, args=[{"model": "", "messages": HELLO}]),
    ]
    for result in bad:
        with pytest.raises(InvalidRequest):
            producer.wait(result, timeout=30)
    assert producer.wait(producer.enqueue("mock/echo", HELLO), timeout=30).content == "hello"


def test_a_job_retrying_until_its_deadline_is_never_delivered_twice_by_the_broker(
    env, upstream, producer_for, start_worker, redis_client
):
    """The wait happens inside the task and the visibility timeout (deadline + read
    timeout + margin) outlasts it: the job is not handed to another worker meanwhile."""
    env.update(
        CHATQ_JOB_DEADLINE="3", CHATQ_TIMEOUT="1", CHATQ_VISIBILITY_MARGIN="1",
        CHATQ_MAX_ATTEMPTS="100", CHATQ_BACKOFF_BASE="0.3", CHATQ_BACKOFF_MAX="0.3",
    )  # fmt: skip
    producer = producer_for(env)
    assert producer.runtime.settings.visibility_timeout == 5
    start_worker(env)
    start_worker(env)
    upstream.push(*[Answer.rate_limited(0.5)] * 100)
    result = producer.enqueue("openrouter/a/b", HELLO)
    with pytest.raises(DeadlineExceeded):
        producer.wait(result, timeout=30)
    calls = upstream.calls
    time.sleep(7)  # past the visibility timeout: a redelivered job would call again
    assert upstream.calls == calls
    assert redis_client.hlen("unacked") == 0
    assert _queued(redis_client) == 0


def test_a_job_whose_worker_is_killed_mid_call_is_completed_by_another_worker(
    env, upstream, producer_for, start_worker
):
    env.update(CHATQ_JOB_DEADLINE="4", CHATQ_TIMEOUT="3", CHATQ_VISIBILITY_MARGIN="1")
    producer = producer_for(env)
    first = start_worker(env)
    upstream.push(Answer.slow(2.5))
    result = producer.enqueue("ollama/llama3", HELLO)
    _wait_for(lambda: upstream.in_flight == 1)
    first.procs[0].send_signal(signal.SIGKILL)
    first.procs[0].wait()
    start_worker(env)
    response = producer.wait(result, timeout=40)
    assert response.content == "echo: hello"
    assert upstream.calls == 2


def test_monitoring_events_carry_no_prompt_and_no_key(env, upstream, producer_for, start_worker):
    secret_prompt = "the-launch-code-is-4711"
    producer = producer_for(env)
    events: list[dict] = []
    ready = threading.Event()

    def listen() -> None:
        with app.connection_for_read() as conn:
            recv = app.events.Receiver(conn, handlers={"*": events.append})
            ready.set()
            with contextlib.suppress(Exception):  # the capture ends by timing out
                recv.capture(limit=None, timeout=8, wakeup=True)

    listener = threading.Thread(target=listen, daemon=True)
    listener.start()
    ready.wait(5)
    time.sleep(0.5)
    start_worker(env)
    messages = [{"role": "user", "content": secret_prompt}]
    for model in ("openrouter/a/b", "mock/echo"):
        producer.wait(producer.enqueue(model, messages), timeout=30)
    app.send_task(CHAT_TASK, args=[{"model": "kimi/k2", "messages": messages}])
    listener.join(12)
    kinds = {e["type"] for e in events}
    assert {"task-sent", "task-received", "task-started", "task-succeeded"} <= kinds
    dump = json.dumps(events)
    assert secret_prompt not in dump
    for key in ("OPENROUTER_API_KEY", "KIMI_API_KEY", "OLLAMA_CLOUD_API_KEY"):
        assert env[key] not in dump
    received = [e for e in events if e["type"] == "task-received"]
    assert any("model=openrouter/a/b msgs=1 chars=23" in e["args"] for e in received)


def _queued(client) -> int:
    names = ["celery"] + [
        f"chat.{p}" for p in ("ollama", "ollama_cloud", "openrouter", "opencode", "kimi", "mock")
    ]
    return sum(client.llen(n) for n in names)


def _wait_for(condition, timeout: float = 10.0) -> None:
    end = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > end:
            raise AssertionError("condition not met in time")
        time.sleep(0.02)


def test_a_job_id_delivered_again_after_success_makes_no_second_upstream_call(
    env, upstream, producer_for, start_worker
):
    producer = producer_for(env)
    start_worker(env)
    first = producer.enqueue("ollama/llama3", HELLO, task_id="job-once")
    assert producer.wait(first, timeout=30).content == "echo: hello"
    again = app.send_task(
        CHAT_TASK, args=[{"model": "ollama/llama3", "messages": HELLO}], task_id="job-once"
    )
    time.sleep(1.0)
    assert producer.wait(again, timeout=30).content == "echo: hello"
    assert upstream.calls == 1


def test_two_deliveries_of_one_job_running_at_once_make_one_upstream_call(
    env, upstream, producer_for, start_worker
):
    producer = producer_for(env)
    start_worker(env)
    upstream.push(Answer.slow(1.5))
    body = {"model": "ollama/llama3", "messages": HELLO}
    first = app.send_task(CHAT_TASK, args=[body], task_id="job-twice")
    _wait_for(lambda: upstream.in_flight == 1)
    app.send_task(CHAT_TASK, args=[body], task_id="job-twice")
    assert producer.wait(first, timeout=30).content == "echo: hello"
    time.sleep(1.0)
    assert upstream.calls == 1


def test_a_delivery_that_finds_its_job_held_by_a_dead_worker_runs_it_once_the_claim_lapses(
    env, upstream, producer_for, start_worker, redis_client
):
    producer = producer_for(env)
    start_worker(env)
    # Another worker claimed the job and died before storing anything: its claim
    # lapses on its own; the waiting delivery then runs the job instead of dropping it.
    redis_client.set("chatq:claim:orphan-job", "dead-worker:1:token", px=2000)
    result = app.send_task(
        CHAT_TASK, args=[{"model": "ollama/llama3", "messages": HELLO}], task_id="orphan-job"
    )
    assert producer.wait(result, timeout=30).content == "echo: hello"
    assert upstream.calls == 1
