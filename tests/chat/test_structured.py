"""Structured output: a JSON Schema reaches each provider in its own shape, the answer is
checked against it here, and a provider that refuses schemas gets JSON mode instead."""

from __future__ import annotations

import json

import pydantic
import pytest

from chatq.errors import BadRequest, InvalidAnswer, InvalidRequest
from tests.fake_upstream import Answer
from worker.chat.types import ChatRequest

SCORE = {
    "title": "Score",
    "type": "object",
    "properties": {"score": {"type": "integer", "minimum": 1, "maximum": 10}},
    "required": ["score"],
    "additionalProperties": False,
}
OPENAI = ["openrouter/openai/gpt-4o-mini", "opencode/grok-code", "kimi/kimi-for-coding"]
OLLAMA = ["ollama/llama3.2", "ollama_cloud/gpt-oss:120b"]
streamed = pytest.mark.parametrize("stream", ["1", "0"], ids=["streamed", "in-one-piece"])


class Score(pydantic.BaseModel):
    score: int


@streamed
@pytest.mark.parametrize("model", OPENAI)
def test_the_openai_family_receives_a_json_schema_response_format(
    make_registry, upstream, ask, stream, model
):
    upstream.push(Answer(content='{"score": 7}'))

    response = make_registry(CHATQ_STREAM=stream).chat(ask(model, format=SCORE))

    assert upstream.received[0].body["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "Score", "schema": SCORE, "strict": True},
    }
    assert response.parsed == {"score": 7}
    assert response.content == '{"score": 7}'


@streamed
@pytest.mark.parametrize("model", OLLAMA)
def test_ollama_receives_the_schema_itself_as_format(make_registry, upstream, ask, stream, model):
    upstream.push(Answer(content='{"score": 3}'))

    response = make_registry(CHATQ_STREAM=stream).chat(ask(model, format=SCORE))

    assert upstream.received[0].body["format"] == SCORE
    assert response.parsed == {"score": 3}


def test_a_pydantic_model_class_stands_for_its_schema(registry, upstream, ask):
    upstream.push(Answer(content='{"score": 5}'))

    request = ask("ollama/llama3.2", format=Score)
    response = registry.chat(request)

    assert request.format == Score.model_json_schema()
    assert upstream.received[0].body["format"]["properties"] == {
        "score": {"title": "Score", "type": "integer"}
    }
    assert Score.model_validate(response.parsed).score == 5


def test_a_schema_without_a_title_is_named_response(registry, upstream, ask):
    schema = {"type": "object"}
    upstream.push(Answer(content="{}"))

    registry.chat(ask("openrouter/openai/gpt-4o-mini", format=schema))

    assert upstream.received[0].body["response_format"]["json_schema"]["name"] == "response"


@pytest.mark.parametrize(
    ("content", "why"),
    [('{"score": 11}', "maximum"), ("the score is 7", "not JSON"), ('{"mark": 7}', "score")],
    ids=["out-of-range", "not-json", "missing-property"],
)
def test_an_answer_that_does_not_match_is_invalid_and_worth_asking_again(
    registry, upstream, ask, content, why
):
    upstream.push(Answer(content=content))

    with pytest.raises(InvalidAnswer) as caught:
        registry.chat(ask("openrouter/openai/gpt-4o-mini", format=SCORE))

    err = caught.value
    assert why in err.message
    assert err.retryable
    assert err.usage["output_tokens"] > 0  # the call was paid for: its tokens travel


def test_json_fenced_in_a_code_block_is_read(registry, upstream, ask):
    upstream.push(Answer(content='```json\n{"score": 2}\n```'))

    response = registry.chat(ask("ollama/llama3.2", format=SCORE))

    assert response.parsed == {"score": 2}


def test_json_mode_answers_are_parsed_when_they_parse_and_never_refused(registry, upstream, ask):
    upstream.push(Answer(content='{"a": 1}'), Answer(content="not json"))

    first = registry.chat(ask("ollama/llama3.2", format="json"))
    second = registry.chat(ask("ollama/llama3.2", format="json"))

    assert (first.parsed, second.parsed) == ({"a": 1}, None)


@streamed
@pytest.mark.parametrize("model", [*OPENAI, *OLLAMA])
def test_a_provider_that_refuses_schemas_is_asked_once_more_in_json_mode(
    make_registry, upstream, ask, stream, model
):
    upstream.refuse_schemas = True
    upstream.push(Answer(content='{"score": 9}'))  # the answer the second call gets

    response = make_registry(CHATQ_STREAM=stream).chat(ask(model, format=SCORE))

    refused, json_mode = upstream.received
    assert refused.answer == "400"
    if "response_format" in refused.body:
        assert json_mode.body["response_format"] == {"type": "json_object"}
    else:
        assert json_mode.body["format"] == "json"
    assert response.parsed == {"score": 9}
    assert "refused the JSON Schema (400)" in response.notes[0]


def test_a_model_that_refused_a_schema_is_asked_in_json_mode_from_then_on(registry, upstream, ask):
    upstream.refuse_schemas = True
    upstream.push(*(Answer(content=f'{{"score": {n}}}') for n in (1, 2, 3)))
    model = "openrouter/acme/no-schemas"

    registry.chat(ask(model, format=SCORE))
    second = registry.chat(ask(model, format=SCORE))
    registry.chat(ask("openrouter/acme/other", format=SCORE))  # another model: asked anew

    refused, fallback, direct, other, _ = upstream.received
    assert [c.answer for c in (refused, fallback, direct)] == ["400", "ok", "ok"]
    assert direct.body["response_format"] == {"type": "json_object"}
    assert second.parsed == {"score": 2} and "earlier" in second.notes[0]
    assert other.answer == "400"


def test_the_json_mode_fallback_is_checked_against_the_schema_too(registry, upstream, ask):
    upstream.refuse_schemas = True
    upstream.push(Answer(content='{"score": "high"}'))

    with pytest.raises(InvalidAnswer, match="score"):
        registry.chat(ask("openrouter/openai/gpt-4o-mini", format=SCORE))


def test_a_400_without_a_schema_is_not_retried_in_json_mode(registry, upstream, ask):
    upstream.push(Answer.error(400, {"error": {"code": 400, "message": "bad"}}))

    with pytest.raises(BadRequest):
        registry.chat(ask("openrouter/openai/gpt-4o-mini", format="json"))

    assert upstream.calls == 1


@pytest.mark.parametrize(
    "fmt", [{"type": "objekt"}, {}, "yaml", {"properties": {"a": {"type": 3}}}]
)
def test_a_format_that_is_neither_json_nor_a_valid_schema_is_refused(fmt):
    with pytest.raises(InvalidRequest) as caught:
        ChatRequest.parse(
            {"model": "m", "messages": [{"role": "user", "content": "x"}], "format": fmt}
        )

    assert caught.value.facts["field"] == "format"


def test_a_request_with_a_schema_survives_the_json_round_trip_of_a_task_message(ask):
    request = ask("ollama/llama3.2", format=Score)

    again = ChatRequest.parse(json.loads(request.model_dump_json(exclude_none=True)))

    assert again == request
