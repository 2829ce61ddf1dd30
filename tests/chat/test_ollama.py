"""Local Ollama: what goes out on /api/chat and what comes back."""

from __future__ import annotations

import pytest

from chatq.errors import MalformedResponse, UpstreamError, UpstreamUnavailable
from tests.fake_upstream import Answer
from worker.chat.types import ChatRequest


def _answer(**fields):
    """An /api/chat answer with these fields over a plain, complete one."""
    body = {
        "model": "llama3.2",
        "message": {"role": "assistant", "content": "fine, thanks"},
        "done": True,
        "done_reason": "stop",
        "prompt_eval_count": 12,
        "eval_count": 4,
    }
    return Answer(kind="json", body={**body, **fields})


def test_a_chat_comes_back_with_the_answer_and_its_token_counts(registry, upstream, ask):
    upstream.push(_answer(prompt_eval_count=31, eval_count=9, done_reason="stop"))

    response = registry.chat(ask("ollama/llama3.2", "how are you?"))

    assert response.content == "fine, thanks"
    assert response.input_tokens == 31
    assert response.output_tokens == 9
    assert response.finish_reason == "stop"
    assert response.provider == "ollama"
    assert response.model == "ollama/llama3.2"
    assert response.latency_ms > 0


def test_the_finish_reason_is_ollamas_done_reason(registry, upstream, ask):
    upstream.push(_answer(done_reason="length"))

    assert registry.chat(ask("llama3.2")).finish_reason == "length"


def test_missing_token_counts_read_as_zero(registry, upstream, ask):
    body = {"message": {"role": "assistant", "content": "ok"}, "done": True}
    upstream.push(Answer(kind="json", body=body))

    response = registry.chat(ask("llama3.2"))

    assert (response.input_tokens, response.output_tokens) == (0, 0)


def test_the_prefix_is_stripped_and_the_messages_are_sent_as_given(registry, upstream):
    messages = [
        {"role": "system", "content": "Answer briefly."},
        {"role": "user", "content": "Name a colour."},
        {"role": "assistant", "content": "Blue."},
        {"role": "user", "content": "Another."},
    ]

    registry.chat(ChatRequest.parse({"model": "ollama/qwen3:8b", "messages": messages}))

    (call,) = upstream.received
    assert call.path == "/api/chat"
    assert call.body["model"] == "qwen3:8b"
    assert call.body["messages"] == messages
    assert call.body["stream"] is True  # streamed: a stall is told from a long answer


def test_thinking_is_off_unless_asked(registry, upstream, ask):
    registry.chat(ask("llama3.2"))
    registry.chat(ask("llama3.2", think=False))
    registry.chat(ask("llama3.2", think=True))

    assert [c.body["think"] for c in upstream.received] == [False, False, True]


def test_json_format_is_passed_on_only_when_asked(registry, upstream, ask):
    registry.chat(ask("llama3.2", format="json"))
    registry.chat(ask("llama3.2"))

    with_json, without = upstream.received
    assert with_json.body["format"] == "json"
    assert "format" not in without.body


def test_temperature_and_max_tokens_travel_as_ollama_options(registry, upstream, ask):
    registry.chat(ask("llama3.2", temperature=0.2, max_tokens=64))

    (call,) = upstream.received
    assert call.body["options"] == {"temperature": 0.2, "num_predict": 64}
    assert "max_tokens" not in call.body
    assert "temperature" not in call.body


def test_a_temperature_of_zero_is_sent_not_dropped(registry, upstream, ask):
    registry.chat(ask("llama3.2", temperature=0))

    assert upstream.received[0].body["options"] == {"temperature": 0}


def test_no_options_are_sent_when_none_are_set(registry, upstream, ask):
    registry.chat(ask("llama3.2"))

    assert "options" not in upstream.received[0].body


def test_local_ollama_is_sent_no_api_key(registry, upstream, ask, keys):
    registry.chat(ask("llama3.2"))

    headers = {k.lower(): v for k, v in upstream.received[0].headers.items()}
    assert "authorization" not in headers
    assert not any(key in str(headers) for key in keys.values())


def test_a_500_is_a_retryable_upstream_error_with_its_status(registry, upstream, ask):
    upstream.push(Answer.error(500, {"error": "llama runner process has terminated"}))

    with pytest.raises(UpstreamError) as caught:
        registry.chat(ask("llama3.2"))

    err = caught.value
    assert err.status == 500
    assert err.provider == "ollama"
    assert err.retryable
    assert "llama runner process has terminated" in err.excerpt


def test_a_503_means_the_upstream_is_unavailable(registry, upstream, ask):
    upstream.push(Answer.error(503, {"error": "server busy, please try again"}))

    with pytest.raises(UpstreamUnavailable) as caught:
        registry.chat(ask("llama3.2"))

    assert caught.value.status == 503
    assert caught.value.retryable


def test_an_unknown_model_is_a_404_that_is_not_retried(registry, upstream, ask):
    upstream.push(Answer.error(404, {"error": "model 'nope' not found"}))

    with pytest.raises(UpstreamError) as caught:
        registry.chat(ask("nope"))

    assert caught.value.status == 404
    assert not caught.value.retryable
    assert "check the model name" in str(caught.value)


@pytest.mark.parametrize(
    "body",
    [
        {"done": True},
        {"message": {"role": "assistant"}, "done": True},
        {"message": {"role": "assistant", "content": None}, "done": True},
        {"message": "fine", "done": True},
        [{"message": {"content": "fine"}}],
    ],
    ids=["no-message", "no-content", "null-content", "message-not-object", "a-list"],
)
def test_an_answer_without_message_content_is_malformed(registry, upstream, ask, body):
    upstream.push(Answer(kind="json", body=body))

    with pytest.raises(MalformedResponse) as caught:
        registry.chat(ask("llama3.2"))

    assert caught.value.provider == "ollama"
    assert caught.value.retryable
