"""The built-in mock: deterministic answers without any network."""

from __future__ import annotations

import json

import pytest

from chatq.errors import UpstreamError
from worker.chat.types import ChatRequest


def test_echo_answers_the_last_user_message(registry):
    request = ChatRequest.parse(
        {
            "model": "mock/echo",
            "messages": [
                {"role": "system", "content": "ignored"},
                {"role": "user", "content": "first"},
                {"role": "assistant", "content": "noted"},
                {"role": "user", "content": "second"},
            ],
        }
    )

    response = registry.chat(request)

    assert response.content == "second"
    assert response.finish_reason == "stop"
    assert response.provider == "mock"
    assert response.model == "mock/echo"


def test_json_answers_valid_json_carrying_the_question(registry, ask):
    response = registry.chat(ask("mock/json", 'a "quoted" question', format="json"))

    assert json.loads(response.content)["answer"] == 'a "quoted" question'


def test_score_is_a_number_from_one_to_ten(registry, ask):
    scores = {int(registry.chat(ask("mock/score", f"essay {i}")).content) for i in range(60)}

    assert scores <= set(range(1, 11))
    assert len(scores) > 3, "the score should depend on the input"


def test_score_is_the_same_for_the_same_input(registry, ask):
    first = registry.chat(ask("mock/score", "the same essay")).content

    assert all(
        registry.chat(ask("mock/score", "the same essay")).content == first for _ in range(5)
    )


@pytest.mark.parametrize("model", ["mock/echo", "mock/json", "mock/score"])
def test_token_counts_are_positive(registry, ask, model):
    response = registry.chat(ask(model, "count my tokens please"))

    assert response.input_tokens > 0
    assert response.output_tokens > 0


def test_a_longer_prompt_counts_more_input_tokens(registry, ask):
    short = registry.chat(ask("mock/echo", "hi"))
    long = registry.chat(ask("mock/echo", "hi " * 200))

    assert long.input_tokens > short.input_tokens
    assert long.output_tokens > short.output_tokens


def test_max_tokens_cuts_the_answer_with_finish_reason_length(registry, ask):
    response = registry.chat(ask("mock/echo", "word " * 100, max_tokens=5))

    assert response.finish_reason == "length"
    assert response.output_tokens <= 5
    assert len(response.content) < len("word " * 100)


def test_an_unknown_mock_model_is_a_404_that_names_the_known_ones(registry, ask):
    with pytest.raises(UpstreamError) as caught:
        registry.chat(ask("mock/nope"))

    err = caught.value
    assert err.status == 404
    assert err.provider == "mock"
    assert not err.retryable
    assert all(name in str(err) for name in ("echo", "json", "score"))
