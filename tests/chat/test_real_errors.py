"""Errors as the real providers send them (played by the fake upstream): a spent quota is
not a rate limit, Ollama's own failures say what to do, and the upstream's reason is
in the message a person reads."""

from __future__ import annotations

import asyncio

import pytest

from chatq.errors import (
    AuthenticationFailed,
    BadRequest,
    ModelNotFound,
    QuotaExhausted,
    RateLimited,
    UpstreamTimeout,
    UpstreamUnavailable,
)
from tests.fake_upstream import REAL_ERRORS, Answer
from worker.aio import process_loop
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
        process_loop().run(run_with_retries(lambda deadline: registry.achat(request),
                                            RetryPolicy(max_attempts=6),
                                            sleep=lambda s: asyncio.sleep(0)))  # fmt: skip

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


# -- OpenRouter's errors inside a 200 --------------------------------------------------

ROUTER = "openrouter/meta-llama/llama-3.3-70b"
OPENROUTER_CODES = [
    (400, BadRequest),
    (401, AuthenticationFailed),
    (402, QuotaExhausted),
    (403, AuthenticationFailed),
    (408, UpstreamTimeout),
    (429, RateLimited),
    (502, UpstreamUnavailable),
    (503, UpstreamUnavailable),
]


@streamed
def test_openrouters_502_inside_a_200_names_the_provider_behind_it_and_is_retried(
    make_registry, upstream, ask, stream
):
    err = _fail(make_registry, upstream, ask, "openrouter_502_in_200", ROUTER, stream)

    assert type(err) is UpstreamUnavailable and err.retryable
    assert err.status == 502 and err.provider == "openrouter"
    assert "(Together: upstream connect error)" in err.message


@pytest.mark.parametrize("how", ["the whole body", "an event mid-stream", "beside finish error"])
@pytest.mark.parametrize(("code", "kind"), OPENROUTER_CODES)
def test_openrouters_error_code_inside_a_200_gives_the_error_of_that_status(
    make_registry, upstream, ask, code, kind, how
):
    error = {"code": code, "message": "Provider returned error",
             "metadata": {"provider_name": "Fireworks", "raw": f"raw reason {code}"}}  # fmt: skip
    streamed_ = how != "the whole body"
    upstream.push(Answer.error_in_200(error, streamed=streamed_, after="Half an ans",
                                      finish_error=how == "beside finish error"))  # fmt: skip
    with pytest.raises(kind) as caught:
        make_registry(CHATQ_STREAM="1").chat(ask(ROUTER))

    assert type(caught.value) is kind and caught.value.status == code
    assert f"(Fireworks: raw reason {code})" in caught.value.message


def test_openrouters_429_event_mid_stream_is_a_rate_limit_naming_the_provider(
    make_registry, upstream, ask
):
    err = _fail(make_registry, upstream, ask, "openrouter_429_event_midstream", ROUTER)

    assert type(err) is RateLimited and err.retryable
    assert "(DeepInfra: rate limit exceeded, retry)" in err.message


def test_openrouters_finish_reason_error_mid_stream_fails_the_call_not_a_half_answer(
    make_registry, upstream, ask
):
    err = _fail(make_registry, upstream, ask, "openrouter_finish_reason_error", ROUTER)

    assert type(err) is UpstreamUnavailable and err.retryable
    assert "broke off its answer" in err.message
    assert "Provider disconnected unexpectedly" in err.message


def test_a_finish_reason_error_without_an_error_object_is_still_a_failed_call(
    make_registry, upstream, ask
):
    choice = {"index": 0, "message": {"role": "assistant", "content": "Half"},
              "finish_reason": "error"}  # fmt: skip
    upstream.push(Answer(kind="json", body={"choices": [choice], "usage": {}}))
    with pytest.raises(UpstreamUnavailable, match='finish_reason "error"'):
        make_registry().chat(ask(ROUTER))


def test_openrouters_moderation_403_is_a_refused_request_naming_the_reasons(
    make_registry, upstream, ask
):
    err = _fail(make_registry, upstream, ask, "openrouter_moderation_403", ROUTER)

    assert type(err) is BadRequest and not err.retryable
    assert "flagged by the provider's moderation" in err.message
    assert 'Lepton: ["violence"]' in err.message


def test_the_provider_behind_openrouter_is_named_even_without_its_raw_reason(
    make_registry, upstream, ask
):
    error = {"code": 503, "message": "No instances available",
             "metadata": {"provider_name": "Novita"}}  # fmt: skip
    upstream.push(Answer.error(503, {"error": error}))
    with pytest.raises(UpstreamUnavailable, match=r"No instances available \(Novita\)"):
        make_registry().chat(ask(ROUTER))
