"""Chat requests are validated before they reach a queue; responses survive JSON."""

from __future__ import annotations

import pytest

from chatq.errors import InvalidRequest
from worker.chat.types import MAX_REQUEST_CHARS, ChatRequest, ChatResponse

HELLO = [{"role": "user", "content": "hello"}]


def _request(**fields):
    return {"model": "llama3.2", "messages": HELLO, **fields}


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"messages": HELLO}, "model"),
        (_request(model=""), "model"),
        (_request(model="   "), "model"),
        (_request(model=None), "model"),
        (_request(model=42), "model"),
        ({"model": "llama3.2"}, "messages"),
        (_request(messages=[]), "messages"),
        (_request(messages="hello"), "messages"),
        (_request(messages=[{"role": "robot", "content": "hi"}]), "messages.0.role"),
        (_request(messages=[*HELLO, {"role": "User", "content": "hi"}]), "messages.1.role"),
        (_request(messages=[{"role": "user", "content": 42}]), "messages.0.content"),
        (_request(messages=[{"role": "user", "content": None}]), "messages.0.content"),
        (_request(messages=[{"role": "user", "content": ["a"]}]), "messages.0.content"),
        (_request(messages=[{"role": "user"}]), "messages.0.content"),
        (_request(temperature=2.01), "temperature"),
        (_request(temperature=-0.1), "temperature"),
        (_request(max_tokens=-1), "max_tokens"),
        (_request(max_tokens=0), "max_tokens"),
        (_request(format="yaml"), "format"),
        (_request(timeout=0), "timeout"),
        (_request(prompt="hello"), "prompt"),
        (_request(n=2), "n"),
        (_request(top_p=1.5), "top_p"),
        (_request(stop=["a", 1]), "stop"),
        (_request(presence_penalty=3), "presence_penalty"),
        (_request(top_k=-1), "top_k"),
        (_request(seed="seven"), "seed"),
    ],
    ids=[
        "model-missing",
        "model-empty",
        "model-blank",
        "model-null",
        "model-not-text",
        "messages-missing",
        "messages-empty",
        "messages-not-a-list",
        "role-unknown",
        "role-wrong-case",
        "content-a-number",
        "content-null",
        "content-a-list",
        "content-missing",
        "temperature-above-2",
        "temperature-below-0",
        "max-tokens-negative",
        "max-tokens-zero",
        "format-unknown",
        "timeout-zero",
        "unknown-field",
        "n-above-1",
        "top-p-above-1",
        "stop-not-text",
        "presence-penalty-above-2",
        "top-k-negative",
        "seed-not-a-number",
    ],
)
def test_a_bad_request_is_invalid_and_names_the_bad_field(data, field):
    with pytest.raises(InvalidRequest) as caught:
        ChatRequest.parse(data)

    err = caught.value
    assert err.facts["field"] == field
    assert f"{field}:" in str(err)
    assert not err.retryable


@pytest.mark.parametrize("data", [None, "llama3.2", ["llama3.2"], 42])
def test_a_request_that_is_not_an_object_is_invalid(data):
    with pytest.raises(InvalidRequest) as caught:
        ChatRequest.parse(data)

    assert "JSON object" in str(caught.value)


def test_every_bad_field_is_named_at_once():
    with pytest.raises(InvalidRequest) as caught:
        ChatRequest.parse(_request(temperature=5, max_tokens=-1))

    assert "temperature:" in str(caught.value)
    assert "max_tokens:" in str(caught.value)


def test_too_much_text_is_invalid():
    huge = [{"role": "user", "content": "x" * (MAX_REQUEST_CHARS + 1)}]

    with pytest.raises(InvalidRequest) as caught:
        ChatRequest.parse(_request(messages=huge))

    assert caught.value.facts["field"] == "messages"


@pytest.mark.parametrize(
    "fields",
    [
        {"temperature": 0},
        {"temperature": 2},
        {"temperature": 0.7, "max_tokens": 1},
        {"format": "json", "think": True},
        {"timeout": 0.5},
        {"messages": [{"role": r, "content": ""} for r in ("system", "user", "assistant", "tool")]},
    ],
)
def test_edge_values_that_are_allowed_are_accepted(fields):
    request = ChatRequest.parse(_request(**fields))

    assert request.model_dump(include=set(fields), exclude_none=True) == fields


def test_the_model_name_is_trimmed():
    assert ChatRequest.parse(_request(model="  ollama/llama3.2 \n")).model == "ollama/llama3.2"


def test_a_parsed_request_is_returned_as_it_is():
    request = ChatRequest.parse(_request())

    assert ChatRequest.parse(request) is request


def test_a_request_cannot_be_changed_after_validation():
    request = ChatRequest.parse(_request())

    with pytest.raises(ValueError):
        request.model = "other"


def test_the_summary_names_model_and_size_but_never_the_prompt():
    secret_prompt = "Rate this confidential essay about Project Nightingale"
    request = ChatRequest.parse(
        _request(
            messages=[
                {"role": "system", "content": "You are a strict judge."},
                {"role": "user", "content": secret_prompt},
            ]
        )
    )

    summary = request.summary()

    for text in ("You are a strict judge.", secret_prompt):
        assert not [word for word in text.split() if len(word) > 3 and word in summary]
    assert "model=llama3.2" in summary
    assert "msgs=2" in summary
    assert f"chars={len('You are a strict judge.') + len(secret_prompt)}" in summary


def test_a_response_survives_a_json_round_trip():
    response = ChatResponse(
        model="kimi/k2",
        content="ok",
        input_tokens=3,
        output_tokens=1,
        finish_reason="stop",
        provider="kimi",
        latency_ms=12.5,
    )

    assert ChatResponse.model_validate_json(response.model_dump_json()) == response
