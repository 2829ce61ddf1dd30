"""Ollama Cloud: /api/generate with a Bearer key, the chat flattened to one prompt."""

from __future__ import annotations

import pytest

from chatq.errors import UpstreamError
from tests.fake_upstream import Answer
from worker.chat.ollama_cloud import flatten
from worker.chat.types import ChatRequest, Message


def _chat(model, *turns, **fields):
    messages = [{"role": role, "content": content} for role, content in turns]
    return ChatRequest.parse({"model": model, "messages": messages, **fields})


def test_a_cloud_model_is_asked_on_generate_with_the_suffix_stripped(registry, upstream, ask):
    response = registry.chat(ask("gpt-oss:120b:cloud", "say hi"))

    (call,) = upstream.received
    assert call.path == "/cloud/api/generate"
    assert call.body["model"] == "gpt-oss:120b"
    assert call.body["prompt"] == "say hi"
    assert call.body["stream"] is True  # streamed: a stall is told from a long answer
    assert response.content == "echo: say hi"
    assert response.provider == "ollama_cloud"


def test_the_answer_and_token_counts_come_from_the_generate_fields(registry, upstream, ask):
    body = {
        "response": "hello there",
        "done": True,
        "done_reason": "length",
        "prompt_eval_count": 20,
        "eval_count": 3,
    }
    upstream.push(Answer(kind="json", body=body))

    response = registry.chat(ask("ollama_cloud/gpt-oss:120b"))

    assert response.content == "hello there"
    assert (response.input_tokens, response.output_tokens) == (20, 3)
    assert response.finish_reason == "length"


def test_the_cloud_key_is_sent_as_a_bearer_token(registry, upstream, ask, keys):
    registry.chat(ask("ollama_cloud/gpt-oss:120b"))

    headers = {k.lower(): v for k, v in upstream.received[0].headers.items()}
    assert headers["authorization"] == f"Bearer {keys['ollama_cloud']}"


def test_system_messages_are_kept_apart_as_the_system_field(registry, upstream):
    registry.chat(
        _chat(
            "ollama_cloud/m",
            ("system", "You are terse."),
            ("user", "What is 2+2?"),
        )
    )

    body = upstream.received[0].body
    assert body["system"] == "You are terse."
    assert body["prompt"] == "What is 2+2?"


def test_a_conversation_is_flattened_into_labelled_turns(registry, upstream):
    registry.chat(
        _chat(
            "ollama_cloud/m",
            ("system", "Be kind."),
            ("user", "Hi"),
            ("assistant", "Hello!"),
            ("user", "How are you?"),
        )
    )

    body = upstream.received[0].body
    assert body["system"] == "Be kind."
    assert body["prompt"] == "User: Hi\n\nAssistant: Hello!\n\nUser: How are you?"


def test_no_system_field_is_sent_without_a_system_message(registry, upstream, ask):
    registry.chat(ask("ollama_cloud/m"))

    assert "system" not in upstream.received[0].body


@pytest.mark.parametrize(
    ("turns", "expected"),
    [
        ([("user", "q")], (None, "q")),
        ([("system", "a"), ("system", "b"), ("user", "q")], ("a\n\nb", "q")),
        ([("assistant", "x")], (None, "Assistant: x")),
        ([("user", "q"), ("tool", "42")], (None, "User: q\n\nTool: 42")),
    ],
)
def test_flatten_joins_systems_and_labels_turns(turns, expected):
    messages = [Message(role=role, content=content) for role, content in turns]

    assert flatten(messages) == expected


def test_thinking_is_off_by_default_and_json_format_is_passed_on(registry, upstream, ask):
    registry.chat(ask("ollama_cloud/m", format="json", temperature=0.5, max_tokens=10))

    body = upstream.received[0].body
    assert body["think"] is False
    assert body["format"] == "json"
    assert body["options"] == {"temperature": 0.5, "num_predict": 10}


def test_a_refused_key_is_not_retried_and_says_to_check_the_key(registry, upstream, ask, keys):
    upstream.push(Answer.error(401, {"error": "unauthorized"}))

    with pytest.raises(UpstreamError) as caught:
        registry.chat(ask("m:cloud"))

    assert caught.value.status == 401
    assert caught.value.provider == "ollama_cloud"
    assert not caught.value.retryable
    assert "API key" in str(caught.value)
