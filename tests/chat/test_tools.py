"""Tool-call conversations and images reach each provider in its own shape (or are
refused naming it), and answers that call tools come back instead of failing."""

from __future__ import annotations

import json

import pytest

from chatq.errors import InvalidRequest
from tasks.batch.output import completion
from tests.fake_upstream import Answer
from worker.chat.types import ChatRequest

OPENAI = ["openrouter/openai/gpt-4o-mini", "opencode/grok-code", "kimi/kimi-for-coding"]
WEATHER = {"type": "function", "function": {
    "name": "weather", "description": "today's weather",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
}}  # fmt: skip
CALL = {"id": "call_1", "type": "function",
        "function": {"name": "weather", "arguments": '{"city": "Oslo"}'}}  # fmt: skip
CONVERSATION = [
    {"role": "user", "content": "weather in Oslo?"},
    {"role": "assistant", "content": None, "tool_calls": [CALL]},
    {"role": "tool", "tool_call_id": "call_1", "content": '{"sky": "clear"}'},
]
PIXEL = (
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJ"
    "RU5ErkJggg=="
)  # a 1x1 PNG
PICTURE = [{"role": "user", "content": [
    {"type": "text", "text": "what is this?"},
    {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PIXEL}"}},
]}]  # fmt: skip
streamed = pytest.mark.parametrize("stream", ["1", "0"], ids=["streamed", "in-one-piece"])


def request(model, messages, **fields):
    return ChatRequest.parse({"model": model, "messages": messages, **fields})


@pytest.mark.parametrize("model", OPENAI)
def test_the_openai_family_receives_a_tool_conversation_as_given(registry, upstream, model):
    registry.chat(request(model, CONVERSATION, tools=[WEATHER], tool_choice="auto"))

    body = upstream.received[0].body
    assert body["messages"] == CONVERSATION
    assert body["tools"] == [WEATHER]
    assert body["tool_choice"] == "auto"


def test_ollama_receives_arguments_as_an_object_and_the_tool_reply_named(registry, upstream):
    registry.chat(request("ollama/llama3.2", CONVERSATION, tools=[WEATHER]))

    body = upstream.received[0].body
    assert body["messages"] == [
        {"role": "user", "content": "weather in Oslo?"},
        {"role": "assistant", "content": "",
         "tool_calls": [{"function": {"name": "weather", "arguments": {"city": "Oslo"}}}]},
        {"role": "tool", "content": '{"sky": "clear"}', "tool_name": "weather"},
    ]  # fmt: skip
    assert body["tools"] == [WEATHER]


@streamed
@pytest.mark.parametrize("model", OPENAI)
def test_an_openai_answer_that_calls_a_tool_comes_back_as_tool_calls(
    make_registry, upstream, stream, model
):
    upstream.push(Answer.calling(("weather", {"city": "Oslo"})))

    response = make_registry(CHATQ_STREAM=stream).chat(
        request(model, CONVERSATION[:1], tools=[WEATHER])
    )

    assert response.tool_calls == [{"id": "call_0abc", "type": "function",
                                    "function": {"name": "weather",
                                                 "arguments": '{"city": "Oslo"}'}}]  # fmt: skip
    assert (response.content, response.finish_reason) == ("", "tool_calls")


@streamed
def test_an_ollama_answer_that_calls_a_tool_comes_back_in_openai_form(
    make_registry, upstream, stream
):
    upstream.push(Answer.calling(("weather", {"city": "Oslo"}), ("time", {})))

    response = make_registry(CHATQ_STREAM=stream).chat(
        request("ollama/llama3.2", CONVERSATION[:1], tools=[WEATHER])
    )

    assert [(c["id"], c["function"]["name"], json.loads(c["function"]["arguments"]))
            for c in response.tool_calls] == [
        ("call_0", "weather", {"city": "Oslo"}), ("call_1", "time", {})]  # fmt: skip
    assert response.finish_reason == "tool_calls"


def test_a_tool_call_answer_to_a_schema_request_is_not_refused(registry, upstream):
    upstream.push(Answer.calling(("weather", {"city": "Oslo"})))
    schema = {"type": "object", "required": ["sky"]}

    response = registry.chat(request("openrouter/x/y", CONVERSATION[:1], tools=[WEATHER],
                                     format=schema))  # fmt: skip

    assert response.tool_calls and response.parsed is None


def test_the_openai_output_form_carries_tool_calls_with_content_null(registry, upstream):
    upstream.push(Answer.calling(("weather", {"city": "Oslo"})))
    response = registry.chat(request("openrouter/x/y", CONVERSATION[:1], tools=[WEATHER]))

    body = completion(response.model_dump(), "job-1")

    choice = body["choices"][0]
    assert choice["message"] == {"role": "assistant", "content": None,
                                 "tool_calls": response.tool_calls}  # fmt: skip
    assert choice["finish_reason"] == "tool_calls"


@pytest.mark.parametrize("model", OPENAI)
def test_the_openai_family_receives_image_parts_as_given(registry, upstream, model):
    registry.chat(request(model, PICTURE))

    assert upstream.received[0].body["messages"] == PICTURE


def test_ollama_receives_an_image_as_base64_in_images(registry, upstream):
    registry.chat(request("ollama/llava", PICTURE))

    assert upstream.received[0].body["messages"] == [
        {"role": "user", "content": "what is this?", "images": [PIXEL]}
    ]


@pytest.mark.parametrize(
    ("model", "messages", "fields", "words"),
    [
        ("ollama/llava", [{"role": "user", "content": [{"type": "image_url", "image_url": {
            "url": "https://example.org/cat.png"}}]}], {}, "ollama cannot take an image by URL"),
        ("ollama/llama3.2", CONVERSATION, {"tool_choice": "required"},
         "ollama cannot take tool_choice"),
        ("ollama_cloud/gpt-oss:120b", CONVERSATION, {}, "ollama_cloud cannot take an assistant"),
        ("ollama_cloud/gpt-oss:120b", CONVERSATION[:1], {"tools": [WEATHER]},
         "ollama_cloud cannot take tools"),
        ("ollama_cloud/gpt-oss:120b", PICTURE, {}, "ollama_cloud cannot take images"),
        ("ollama/llama3.2", [{"role": "assistant", "content": None, "tool_calls": [
            {**CALL, "function": {"name": "f", "arguments": "[1]"}}]}], {},
         "arguments must be a JSON object"),
    ],
    ids=["ollama-image-url", "ollama-tool-choice", "cloud-tool-calls", "cloud-tools",
         "cloud-images", "ollama-arguments-not-an-object"],
)  # fmt: skip
def test_what_a_provider_cannot_take_is_refused_naming_it_before_any_call(
    registry, upstream, model, messages, fields, words
):
    with pytest.raises(InvalidRequest, match=words) as refused:
        registry.prepare(request(model, messages, **fields))

    assert refused.value.provider == model.split("/")[0]
    assert upstream.calls == 0


@pytest.mark.parametrize(
    ("message", "field"),
    [
        ({"role": "user", "content": None}, "messages.0.content"),
        ({"role": "user", "content": "x", "tool_calls": [CALL]}, "messages.0.tool_calls"),
        ({"role": "user", "content": "x", "tool_call_id": "c"}, "messages.0.tool_call_id"),
        ({"role": "assistant", "content": [PICTURE[0]["content"][1]]}, "messages.0.content"),
        ({"role": "user", "content": [{"type": "input_audio", "input_audio": {}}]},
         "messages.0.content"),
        ({"role": "assistant", "content": None, "tool_calls": [{"id": "c"}]},
         "messages.0.tool_calls.0.function"),
    ],
    ids=["null-content-without-calls", "user-with-calls", "user-with-call-id",
         "assistant-with-image", "audio-part", "call-without-function"],
)  # fmt: skip
def test_a_malformed_tool_or_image_message_is_invalid_and_named(message, field):
    with pytest.raises(InvalidRequest) as caught:
        request("m", [message])

    assert caught.value.facts["field"] == field


def test_tools_must_be_functions_with_names():
    with pytest.raises(InvalidRequest, match="tool 0"):
        request("m", CONVERSATION[:1], tools=[{"type": "function", "function": {}}])
