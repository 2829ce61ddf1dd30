"""Errors as the real providers send them (played by the fake upstream): a spent quota is
not a rate limit, Ollama's own failures say what to do, and the upstream's reason is
in the message a person reads."""

from __future__ import annotations

import pytest

from chatq.errors import BadRequest, ModelNotFound, QuotaExhausted, RateLimited, UpstreamTimeout
from tests.fake_upstream import REAL_ERRORS, Answer
from worker.retry import RetryPolicy, run_with_retries

OPENAI_FAMILY = ["openrouter/openai/gpt-4o-mini", "opencode/grok-code", "kimi/kimi-for-coding"]
streamed = pytest.mark.parametrize("stream", ["1", "0"], ids=["streamed", "in-one-piece"])


def _fail(make_registry, upstream, ask, behaviour, model, stream="1"):
    upstream.push(REAL_ERRORS[behaviour])
    with pytest.raises(Exception) as caught:
        make_registry(CHATQ_STREAM=stream).chat(ask(model))
    return caught.value


@streamed
@pytest.mark.parametrize("model", OPENAI_FAMILY)
def test_openais_insufficient_quota_429_is_quota_exhausted_not_a_rate_limit(
    make_registry, upstream, ask, stream, model
):
    err = _fail(make_registry, upstream, ask, "openai_insufficient_quota", model, stream)

    assert type(err) is QuotaExhausted
    assert not err.retryable
    assert err.status == 429
    assert "waiting will not help" in err.message
    assert "exceeded your current quota" in err.message


def test_openrouters_402_is_quota_exhausted_with_its_reason(make_registry, upstream, ask):
    err = _fail(make_registry, upstream, ask, "openrouter_402", "openrouter/openai/gpt-4o")

    assert type(err) is QuotaExhausted and not err.retryable
    assert "can only afford 112" in err.message


@pytest.mark.parametrize(
    "behaviour",
    ["ollama_cloud_hourly_limit", "ollama_cloud_session_limit", "ollama_cloud_weekly_limit"],
)
def test_ollama_clouds_usage_limit_429s_are_quota_exhausted(
    make_registry, upstream, ask, behaviour
):
    err = _fail(make_registry, upstream, ask, behaviour, "gpt-oss:120b:cloud")

    assert type(err) is QuotaExhausted and not err.retryable
    assert err.provider == "ollama_cloud"
    assert "usage limit" in err.message


def test_a_spent_quota_ends_the_job_after_one_call(registry, upstream, ask):
    upstream.push(REAL_ERRORS["openai_insufficient_quota"])
    request = ask("kimi/kimi-for-coding")

    with pytest.raises(QuotaExhausted) as caught:
        run_with_retries(lambda deadline: registry.chat(request), RetryPolicy(max_attempts=6),
                         sleep=lambda s: None)  # fmt: skip

    assert caught.value.facts["attempts"] == 1
    assert upstream.calls == 1


def test_a_plain_429_is_still_a_rate_limit(make_registry, upstream, ask):
    error = {"message": "Rate limit reached", "type": "requests", "code": "rate_limit_exceeded"}
    upstream.push(Answer.error(429, {"error": error}))
    with pytest.raises(RateLimited):
        make_registry().chat(ask("kimi/kimi-for-coding"))


def test_ollamas_server_busy_503_is_paced_as_a_rate_limit_and_retried(make_registry, upstream, ask):
    err = _fail(make_registry, upstream, ask, "ollama_busy", "ollama/llama3.2")

    assert type(err) is RateLimited and err.retryable
    assert err.status == 503
    assert "maximum pending requests exceeded" in err.message


def test_ollamas_model_not_found_says_to_pull_it_and_is_not_retried(make_registry, upstream, ask):
    err = _fail(make_registry, upstream, ask, "ollama_model_not_found", "ollama/llama9")

    assert type(err) is ModelNotFound and not err.retryable
    assert 'model "llama9" not found, try pulling it first' in err.message


def test_ollamas_invalid_schema_400_is_a_bad_request_with_its_reason(make_registry, upstream, ask):
    err = _fail(make_registry, upstream, ask, "ollama_invalid_schema", "ollama/llama3.2")

    assert type(err) is BadRequest and not err.retryable
    assert "invalid JSON schema" in err.message


def test_a_499_is_a_cut_call_and_retried(make_registry, upstream, ask):
    err = _fail(make_registry, upstream, ask, "499", "ollama/llama3.2")

    assert type(err) is UpstreamTimeout and err.retryable


def test_openrouters_envelope_names_the_provider_behind_it_and_its_raw_reason(
    make_registry, upstream, ask
):
    err = _fail(make_registry, upstream, ask, "openrouter_upstream_400", "openrouter/x/y")

    assert type(err) is BadRequest
    assert "(Fireworks: prompt is too long)" in err.message
