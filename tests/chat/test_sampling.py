"""Sampling options reach every provider that honours them, in its own wire shape, and
are refused (naming option and provider) by one that cannot: never dropped in silence."""

from __future__ import annotations

import pytest

from chatq.errors import InvalidRequest

ALL = {
    "seed": 7,
    "top_p": 0.9,
    "stop": ["\n\n", "END"],
    "presence_penalty": 0.5,
    "frequency_penalty": -0.25,
    "top_k": 40,
    "min_p": 0.05,
}
OPENAI_ONLY = {k: v for k, v in ALL.items() if k not in ("top_k", "min_p")}
streamed = pytest.mark.parametrize("stream", ["1", "0"], ids=["streamed", "in-one-piece"])


@streamed
@pytest.mark.parametrize(
    ("model", "path"),
    [("ollama/llama3.2", "/api/chat"), ("ollama_cloud/gpt-oss:120b", "/cloud/api/generate")],
)
def test_ollama_receives_every_sampling_option_in_options(
    make_registry, upstream, ask, stream, model, path
):
    registry = make_registry(CHATQ_STREAM=stream)

    registry.chat(ask(model, temperature=0.2, max_tokens=64, **ALL))

    (call,) = upstream.received
    assert call.path == path
    assert call.body["options"] == {"temperature": 0.2, "num_predict": 64, **ALL}
    assert not set(ALL) & set(call.body)  # in options only, as Ollama's API reads them


def test_ollama_gets_a_single_stop_string_as_a_list(registry, upstream, ask):
    registry.chat(ask("ollama/llama3.2", stop="END"))

    assert upstream.received[0].body["options"] == {"stop": ["END"]}


@streamed
def test_openrouter_receives_top_k_and_min_p_beside_the_openai_options(
    make_registry, upstream, ask, stream
):
    registry = make_registry(CHATQ_STREAM=stream)

    registry.chat(ask("openrouter/meta-llama/llama-3.1-8b-instruct", **ALL))

    body = upstream.received[0].body
    assert {k: body[k] for k in ALL} == ALL
    assert "options" not in body


@streamed
@pytest.mark.parametrize("model", ["opencode/grok-code", "kimi/kimi-for-coding"])
def test_the_openai_family_receives_the_chat_completions_options_top_level(
    make_registry, upstream, ask, stream, model
):
    registry = make_registry(CHATQ_STREAM=stream)

    registry.chat(ask(model, stop="END", **{k: v for k, v in OPENAI_ONLY.items() if k != "stop"}))

    body = upstream.received[0].body
    assert body["stop"] == "END"  # a string or a list, as the API takes either
    assert {k: body[k] for k in OPENAI_ONLY if k != "stop"} == {
        k: v for k, v in OPENAI_ONLY.items() if k != "stop"
    }


@pytest.mark.parametrize("option", ["top_k", "min_p"])
@pytest.mark.parametrize(("model", "provider"), [("opencode/grok-code", "opencode"),
                                                 ("kimi/kimi-for-coding", "kimi")])  # fmt: skip
def test_an_option_the_provider_cannot_honour_is_refused_before_any_call(
    registry, upstream, ask, option, model, provider
):
    request = ask(model, **{option: ALL[option]})

    with pytest.raises(InvalidRequest) as refused:
        registry.prepare(request)  # what enqueue runs: nothing is queued
    with pytest.raises(InvalidRequest):
        registry.chat(request)

    assert option in refused.value.message and provider in refused.value.message
    assert refused.value.facts["field"] == option
    assert refused.value.provider == provider
    assert upstream.calls == 0


def test_unset_options_are_not_sent(registry, upstream, ask):
    registry.chat(ask("openrouter/openai/gpt-4o-mini"))
    registry.chat(ask("ollama/llama3.2"))

    openai, ollama = (c.body for c in upstream.received)
    assert not set(ALL) & set(openai)
    assert "options" not in ollama


def test_the_mock_accepts_sampling_options_and_stays_deterministic(registry, ask):
    plain = registry.chat(ask("mock/score", "rate this"))
    seeded = registry.chat(ask("mock/score", "rate this", **ALL))

    assert seeded.content == plain.content
