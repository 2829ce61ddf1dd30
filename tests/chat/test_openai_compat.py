"""The OpenAI-compatible family: OpenRouter, OpenCode and Kimi For Coding, one shared
translation pinned per provider by base URL, prefix and key."""

from __future__ import annotations

import pytest

from chatq.errors import MalformedResponse, RateLimited, UpstreamError
from tests.chat.conftest import BASE_PATHS
from tests.fake_upstream import Answer

FAMILY = [
    # provider, model name, name sent upstream
    ("openrouter", "openrouter/openai/gpt-4o-mini", "openai/gpt-4o-mini"),
    ("opencode", "opencode/grok-code", "grok-code"),
    ("kimi", "kimi/kimi-for-coding", "kimi-for-coding"),
]
each_provider = pytest.mark.parametrize(("provider", "model", "upstream_model"), FAMILY)


def _headers(call):
    return {k.lower(): v for k, v in call.headers.items()}


def _completion(content="the answer", *, finish="stop", prompt=17, completion=5):
    return Answer(
        kind="json",
        body={
            "id": "chatcmpl-1",
            "object": "chat.completion",
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": content},
                    "finish_reason": finish,
                }
            ],
            "usage": {"prompt_tokens": prompt, "completion_tokens": completion},
        },
    )


@each_provider
def test_a_completion_comes_back_with_its_content_tokens_and_finish_reason(
    registry, upstream, ask, provider, model, upstream_model
):
    upstream.push(_completion("forty-two", finish="length", prompt=23, completion=8))

    response = registry.chat(ask(model, "the question"))

    (call,) = upstream.received
    assert call.path == BASE_PATHS[provider] + "/chat/completions"
    assert call.body["model"] == upstream_model
    assert call.body["messages"] == [{"role": "user", "content": "the question"}]
    assert call.body["stream"] is True  # streamed: a stall is told from a long answer
    assert response.content == "forty-two"
    assert (response.input_tokens, response.output_tokens) == (23, 8)
    assert response.finish_reason == "length"
    assert response.provider == provider
    assert response.model == model


@each_provider
def test_each_provider_is_sent_its_own_key_as_a_bearer_token(
    registry, upstream, ask, keys, provider, model, upstream_model
):
    registry.chat(ask(model))

    assert _headers(upstream.received[0])["authorization"] == f"Bearer {keys[provider]}"


def test_openrouter_is_told_who_is_calling(registry, upstream, ask):
    registry.chat(ask("openrouter/openai/gpt-4o-mini"))

    headers = _headers(upstream.received[0])
    assert headers["http-referer"] == "https://github.com/chatq/chatq"
    assert headers["x-title"] == "chatq"


def test_openrouters_referer_and_title_come_from_settings(make_registry, upstream, ask):
    registry = make_registry(
        OPENROUTER_REFERER="https://example.org/judge", OPENROUTER_TITLE="judge"
    )

    registry.chat(ask("openrouter/openai/gpt-4o-mini"))

    headers = _headers(upstream.received[0])
    assert (headers["http-referer"], headers["x-title"]) == ("https://example.org/judge", "judge")


@pytest.mark.parametrize("model", ["opencode/grok-code", "kimi/kimi-for-coding"])
def test_only_openrouter_gets_the_referer_and_title_headers(registry, upstream, ask, model):
    registry.chat(ask(model))

    headers = _headers(upstream.received[0])
    assert "http-referer" not in headers
    assert "x-title" not in headers


@each_provider
def test_json_format_asks_for_a_json_object(
    registry, upstream, ask, provider, model, upstream_model
):
    registry.chat(ask(model, format="json"))
    registry.chat(ask(model))

    with_json, without = upstream.received
    assert with_json.body["response_format"] == {"type": "json_object"}
    assert "response_format" not in without.body
    assert "format" not in with_json.body


@each_provider
def test_max_tokens_and_temperature_are_sent_only_when_set(
    registry, upstream, ask, provider, model, upstream_model
):
    registry.chat(ask(model, max_tokens=128, temperature=0))
    registry.chat(ask(model))

    with_options, without = upstream.received
    assert with_options.body["max_tokens"] == 128
    assert with_options.body["temperature"] == 0
    assert "max_tokens" not in without.body
    assert "temperature" not in without.body


@each_provider
def test_a_429_is_rate_limited_and_carries_the_retry_after(
    registry, upstream, ask, provider, model, upstream_model
):
    upstream.push(Answer.rate_limited(7))

    with pytest.raises(RateLimited) as caught:
        registry.chat(ask(model))

    err = caught.value
    assert err.status == 429
    assert err.retry_after == 7.0
    assert err.provider == provider
    assert err.retryable
    assert "7s" in str(err)


def test_a_429_without_retry_after_leaves_the_wait_to_the_backoff(registry, upstream, ask):
    upstream.push(Answer.rate_limited())

    with pytest.raises(RateLimited) as caught:
        registry.chat(ask("kimi/kimi-for-coding"))

    assert caught.value.retry_after is None
    assert caught.value.retryable


@each_provider
def test_zero_choices_is_an_error_not_an_empty_answer(
    registry, upstream, ask, provider, model, upstream_model
):
    upstream.push(Answer(kind="zero_choices"))

    with pytest.raises(MalformedResponse) as caught:
        registry.chat(ask(model))

    assert caught.value.provider == provider
    assert "no choices" in str(caught.value)


def test_an_answer_with_no_choices_field_at_all_is_an_error(registry, upstream, ask):
    upstream.push(Answer(kind="json", body={"id": "x", "object": "chat.completion"}))

    with pytest.raises(MalformedResponse):
        registry.chat(ask("opencode/grok-code"))


def test_an_error_object_in_a_200_keeps_the_status_it_names(registry, upstream, ask):
    body = {"error": {"code": 429, "message": "Provider returned error: rate limited"}}
    upstream.push(Answer(kind="json", body=body))

    with pytest.raises(RateLimited) as caught:
        registry.chat(ask("openrouter/openai/gpt-4o-mini"))

    assert caught.value.status == 429
    assert "Provider returned error" in caught.value.excerpt


def test_an_error_object_in_a_200_without_a_status_is_malformed(registry, upstream, ask):
    body = {"error": {"code": "context_length_exceeded", "message": "too long for this model"}}
    upstream.push(Answer(kind="json", body=body))

    with pytest.raises(MalformedResponse) as caught:
        registry.chat(ask("openrouter/openai/gpt-4o-mini"))

    assert "too long for this model" in str(caught.value)


def test_a_refused_request_is_an_upstream_error_that_is_not_retried(registry, upstream, ask):
    upstream.push(Answer.error(400, {"error": {"message": "max_tokens is too large"}}))

    with pytest.raises(UpstreamError) as caught:
        registry.chat(ask("opencode/grok-code"))

    assert caught.value.status == 400
    assert not caught.value.retryable
    assert "max_tokens is too large" in caught.value.excerpt


def test_a_null_content_reads_as_an_empty_answer_with_its_finish_reason(registry, upstream, ask):
    upstream.push(_completion(None, finish="content_filter"))

    response = registry.chat(ask("kimi/kimi-for-coding"))

    assert response.content == ""
    assert response.finish_reason == "content_filter"


def test_a_non_text_content_is_malformed(registry, upstream, ask):
    upstream.push(_completion(["not", "text"]))

    with pytest.raises(MalformedResponse):
        registry.chat(ask("kimi/kimi-for-coding"))
