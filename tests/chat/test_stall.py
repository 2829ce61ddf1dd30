"""Stalls cost seconds, not minutes: a streamed answer that stops coming is abandoned
after CHATQ_IDLE_TIMEOUT and retried as UpstreamTimeout, while a long answer that keeps
coming completes, however long it takes. Each case against the fake upstream streaming
in the real wire formats (Ollama's NDJSON, OpenAI's server-sent events)."""

from __future__ import annotations

import time

import pytest

from chatq.errors import MalformedResponse, UpstreamTimeout
from tests.fake_upstream import Answer
from worker.aio import process_loop
from worker.retry import RetryPolicy, run_with_retries

MODELS = ["ollama/llama3", "ollama_cloud/gpt-oss", "openrouter/acme/m1"]


@pytest.fixture
def idle(make_registry):
    return make_registry(CHATQ_IDLE_TIMEOUT="0.5", CHATQ_TIMEOUT="30")


@pytest.mark.parametrize("model", MODELS)
def test_a_streamed_answer_is_assembled_as_a_whole_one(idle, upstream, ask, model):
    answer = idle.chat(ask(model, "a fairly long question for the stream"))
    assert answer.content == "echo: a fairly long question for the stream"
    assert answer.input_tokens > 0 and answer.output_tokens > 0
    assert answer.finish_reason == "stop"
    assert upstream.received[0].body["stream"] is True


@pytest.mark.parametrize("model", MODELS)
def test_a_stall_in_the_middle_of_the_answer_is_a_timeout_after_the_idle_time(
    idle, upstream, ask, model
):
    upstream.push(Answer.stall(5, after=1))
    started = time.monotonic()
    with pytest.raises(UpstreamTimeout) as caught:
        idle.chat(ask(model))
    assert time.monotonic() - started < 1.5  # not the 30 s read timeout, nor the 5 s stall
    assert "stalled" in str(caught.value) and caught.value.retryable


@pytest.mark.parametrize("model", MODELS)
def test_a_long_answer_that_keeps_coming_completes(idle, upstream, ask, model):
    upstream.push(Answer.trickle(2.5, pieces=10, content="slow but steady"))
    started = time.monotonic()
    answer = idle.chat(ask(model))
    assert answer.content == "slow but steady"
    assert time.monotonic() - started > 2.0  # five times the idle timeout, and whole


def test_a_silent_upstream_costs_the_idle_timeout_then_the_retry_answers(idle, upstream, ask):
    upstream.push(Answer.slow(5), Answer())
    policy = RetryPolicy(max_attempts=3, backoff_base=0.01, backoff_max=0.05, deadline=30)
    started = time.monotonic()
    call = lambda deadline: idle.achat(ask("ollama/llama3"), deadline=deadline)  # noqa: E731
    answer, attempts = process_loop().run(run_with_retries(call, policy, started=started))
    assert attempts == 2 and answer.content == "echo: hello"
    assert time.monotonic() - started < 1.5


def test_the_request_timeout_bounds_a_whole_streamed_answer(idle, upstream, ask):
    upstream.push(Answer.trickle(3, pieces=12))
    started = time.monotonic()
    with pytest.raises(UpstreamTimeout):
        idle.chat(ask("ollama/llama3", timeout=1))
    assert time.monotonic() - started < 1.8


def test_a_trickle_cannot_outlast_the_request_timeout(make_registry, upstream, ask):
    # A piece every second, each within the idle timeout: only the bound on the whole
    # answer stops it, at the request's timeout rather than at the next piece.
    registry = make_registry(CHATQ_IDLE_TIMEOUT="1.2", CHATQ_TIMEOUT="30")
    upstream.push(Answer.trickle(4, pieces=4))
    started = time.monotonic()
    with pytest.raises(UpstreamTimeout) as caught:
        registry.chat(ask("ollama/llama3", timeout=1.5))
    assert 1.4 < time.monotonic() - started < 1.8
    assert "time ran out" in str(caught.value)


@pytest.mark.parametrize(
    ("model", "partial"),
    [
        ("ollama/llama3", '{"model": "m", "message": {"content": "hal"}, "done": false}\n'),
        ("kimi/k2", 'data: {"choices": [{"index": 0, "delta": {"content": "hal"}}]}\n\n'),
    ],
)
def test_a_stream_that_ends_before_it_is_done_is_malformed(idle, upstream, ask, model, partial):
    upstream.push(Answer(kind="raw_stream", body=partial))
    with pytest.raises(MalformedResponse) as caught:
        idle.chat(ask(model))
    assert "ended before it was done" in str(caught.value)


def test_an_upstream_that_ignores_stream_is_read_whole(make_registry, upstream, ask):
    upstream.push(Answer(kind="json", body={
        "model": "m", "message": {"role": "assistant", "content": "plain"}, "done": True,
        "done_reason": "stop", "prompt_eval_count": 3, "eval_count": 1}))  # fmt: skip
    answer = make_registry(CHATQ_IDLE_TIMEOUT="0.5").chat(ask("ollama/llama3"))
    assert answer.content == "plain"


def test_not_streamed_when_asked_not_to(make_registry, upstream, ask):
    make_registry(CHATQ_STREAM="0").chat(ask("openrouter/acme/m1"))
    assert upstream.received[0].body["stream"] is False
    assert "stream_options" not in upstream.received[0].body
