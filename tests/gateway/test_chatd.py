"""chatd's smoke checks, over plain HTTP, against a real gateway, worker and Redis."""

from __future__ import annotations

import time

from tests.fake_upstream import Answer

# No Ollama Cloud key: `x:cloud` has no provider.
GATEWAY_ENV = {"OLLAMA_CLOUD_API_KEY": None}

HELLO = [{"role": "user", "content": "hello"}]


def test_chat_answers_chatds_response_after_the_job_ran_through_the_queue(gw):
    with gw.client() as http:
        reply = http.post("/v1/chat", json={"model": "mock/echo", "messages": HELLO,
                                            "temperature": 0, "max_tokens": 20})  # fmt: skip
    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert set(body) == {"model", "content", "input_tokens", "output_tokens",
                         "finish_reason", "provider", "latency_ms"}  # fmt: skip
    assert body["content"] == "hello" and body["provider"] == "mock"
    job = reply.headers["x-chatq-job-id"]
    assert gw.redis().exists(f"celery-task-meta-{job}")  # stored by a worker, not made up


def test_a_missing_model_is_400_naming_it(gw):
    with gw.client() as http:
        reply = http.post("/v1/chat", json={"messages": HELLO})
        bad = http.post("/v1/chat", json={"model": "mock/echo", "messages": HELLO,
                                          "temperature": 9})  # fmt: skip
        extra = http.post("/v1/chat", json={"model": "mock/echo", "messages": HELLO, "x": 1})
    assert reply.status_code == 400
    assert "model" in reply.json()["error"] and reply.json()["field"] == "model"
    assert bad.status_code == 400 and "temperature" in bad.json()["error"]
    assert extra.status_code == 400 and "x" in extra.json()["error"]


def test_a_cloud_model_without_a_key_is_404_at_once_and_nothing_is_queued(gw):
    before = gw.redis().llen("chat.ollama_cloud")
    started = time.monotonic()
    with gw.client() as http:
        reply = http.post("/v1/chat", json={"model": "gpt-oss:cloud", "messages": HELLO})
    assert reply.status_code == 404, reply.text
    assert time.monotonic() - started < 2
    assert reply.json()["type"] == "ProviderNotFound"
    assert gw.redis().llen("chat.ollama_cloud") == before == 0
    assert gw.upstream.calls == 0


def test_an_unknown_prefix_goes_to_the_default_provider_whose_failure_is_502(gw):
    gw.upstream.push(*[Answer.error(404, {"error": "model 'nope/m' not found"})] * 3)
    with gw.client() as http:
        reply = http.post("/v1/chat", json={"model": "nope/m", "messages": HELLO})
    assert reply.status_code == 502, reply.text
    body = reply.json()
    assert body["status"] == 404 and "not found" in body["excerpt"]
    assert body["type"] == "ModelNotFound"
    sent = gw.upstream.received[0]
    assert sent.path == "/api/chat" and sent.body["model"] == "nope/m"  # unchanged


def test_a_server_error_after_retries_is_502_with_the_upstreams_status(gw):
    gw.upstream.push(*[Answer.error(500, "the upstream broke")] * 3)
    with gw.client() as http:
        reply = http.post("/v1/chat", json={"model": "ollama/llama3", "messages": HELLO})
    assert reply.status_code == 502
    assert reply.json()["status"] == 500 and "broke" in reply.json()["excerpt"]
    assert gw.upstream.calls == 3  # CHATQ_MAX_ATTEMPTS: retried, then given up


def test_429_after_retries_is_429_with_retry_after(gw):
    gw.upstream.push(*[Answer.rate_limited(0.1)] * 3)
    with gw.client() as http:
        reply = http.post("/v1/chat", json={"model": "ollama/llama3", "messages": HELLO})
    assert reply.status_code == 429, reply.text
    assert int(reply.headers["retry-after"]) >= 1
    assert reply.json()["type"] == "RateLimited"


def test_waiting_past_the_requests_timeout_is_504(gw):
    gw.upstream.push(Answer.slow(4))
    started = time.monotonic()
    with gw.client() as http:
        reply = http.post("/v1/chat", json={"model": "ollama/llama3", "messages": HELLO,
                                            "timeout": 1})  # fmt: skip
    assert reply.status_code == 504, reply.text
    assert 0.9 < time.monotonic() - started < 3
    assert reply.headers["x-chatq-job-id"]


def test_providers_lists_exactly_the_registered_ones(gw):
    with gw.client() as http:
        reply = http.get("/v1/chat/providers")
    assert reply.status_code == 200
    assert reply.json() == {"providers": ["kimi", "mock", "ollama", "opencode", "openrouter"]}


def test_healthz_checks_redis_and_a_live_worker(gw):
    with gw.client() as http:
        reply = http.get("/healthz")
    assert reply.status_code == 200
    assert reply.json()["redis"] == "ok" and reply.json()["workers"] >= 1


def test_metrics_count_the_jobs_the_gateway_ran(gw):
    series = 'chatq_jobs_total{outcome="succeeded",provider="mock"}'
    with gw.client() as http:
        for _ in range(3):
            assert http.post("/v1/chat", json={"model": "mock/echo", "messages": HELLO}).is_success
        # A worker writes the counts it added up once a second.
        end = time.monotonic() + 5
        while True:
            reply = http.get("/metrics")
            counted = [line for line in reply.text.splitlines() if line.startswith(series)]
            if (counted and float(counted[0].split()[-1]) >= 3) or time.monotonic() > end:
                break
            time.sleep(0.2)
    assert reply.status_code == 200 and reply.headers["content-type"].startswith("text/plain")
    assert counted and float(counted[0].split()[-1]) >= 3
    assert 'chatq_queue_depth{queue="chat.mock"}' in reply.text
