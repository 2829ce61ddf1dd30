"""Routing model names to providers (the table of DESIGN.md, row by row), failing at once
for providers that are not registered, and counting calls."""

from __future__ import annotations

import pytest

from chatq.errors import InvalidRequest, ProviderNotFound, UpstreamError
from tests.chat.conftest import BASE_PATHS
from tests.fake_upstream import Answer
from worker.chat.registry import Route, route

ROUTING_TABLE = [
    # model name, provider, name sent upstream
    ("ollama/llama3.2", "ollama", "llama3.2"),
    ("ollama/qwen3:8b", "ollama", "qwen3:8b"),
    ("ollama_cloud/gpt-oss:120b", "ollama_cloud", "gpt-oss:120b"),
    ("gpt-oss:120b:cloud", "ollama_cloud", "gpt-oss:120b"),
    ("kimi-k2:cloud", "ollama_cloud", "kimi-k2"),
    ("openrouter/anthropic/claude-sonnet-4", "openrouter", "anthropic/claude-sonnet-4"),
    ("opencode/grok-code", "opencode", "grok-code"),
    ("kimi/kimi-for-coding", "kimi", "kimi-for-coding"),
    ("mock/echo", "mock", "echo"),
    ("llama3.2", "ollama", "llama3.2"),
    ("qwen3:8b", "ollama", "qwen3:8b"),
    ("unknown/x", "ollama", "unknown/x"),
    ("meta-llama/llama-3-8b", "ollama", "meta-llama/llama-3-8b"),
]


@pytest.mark.parametrize(("model", "provider", "upstream_model"), ROUTING_TABLE)
def test_each_routing_rule_picks_its_provider_and_upstream_name(model, provider, upstream_model):
    assert route(model) == Route(provider, upstream_model)


@pytest.mark.parametrize(
    ("model", "provider", "upstream_model"),
    [row for row in ROUTING_TABLE if row[1] != "mock"],
)
def test_a_call_reaches_the_routed_provider_with_the_routed_name(
    registry, upstream, ask, model, provider, upstream_model
):
    response = registry.chat(ask(model))

    (call,) = upstream.received
    assert call.path.startswith(BASE_PATHS[provider] + "/")
    assert call.body["model"] == upstream_model
    assert response.provider == provider
    assert response.model == model


def test_a_mock_model_is_answered_without_any_upstream_call(registry, upstream, ask):
    response = registry.chat(ask("mock/echo", "ping"))

    assert response.provider == "mock"
    assert response.content == "ping"
    assert upstream.calls == 0


@pytest.mark.parametrize(
    ("model", "missing_key"),
    [
        ("llama3:cloud", "OLLAMA_CLOUD_API_KEY"),
        ("ollama_cloud/llama3", "OLLAMA_CLOUD_API_KEY"),
        ("openrouter/openai/gpt-4o", "OPENROUTER_API_KEY"),
        ("opencode/grok-code", "OPENCODE_API_KEY"),
        ("kimi/kimi-for-coding", "KIMI_API_KEY"),
    ],
)
def test_a_rule_naming_an_unregistered_provider_fails_at_once_with_not_found(
    make_registry, upstream, ask, model, missing_key
):
    registry = make_registry(**{missing_key: None})

    with pytest.raises(ProviderNotFound) as caught:
        registry.chat(ask(model))

    assert upstream.calls == 0, "the model fell through to another provider"
    assert missing_key in str(caught.value), "the message should say which key to set"
    assert caught.value.model == model
    assert not caught.value.retryable


def test_a_cloud_suffix_without_a_cloud_key_fails_at_once_with_not_found(
    make_registry, upstream, ask
):
    registry = make_registry(OLLAMA_CLOUD_API_KEY=None)

    with pytest.raises(ProviderNotFound):
        registry.chat(ask("gpt-oss:120b:cloud"))

    assert upstream.calls == 0


def test_without_keys_bare_and_unknown_prefix_names_still_reach_local_ollama(
    make_registry, upstream, ask
):
    registry = make_registry(
        OLLAMA_CLOUD_API_KEY=None, OPENROUTER_API_KEY=None, OPENCODE_API_KEY=None, KIMI_API_KEY=None
    )

    registry.chat(ask("llama3.2"))
    registry.chat(ask("openai/gpt-4o"))

    assert [(c.path, c.body["model"]) for c in upstream.received] == [
        ("/api/chat", "llama3.2"),
        ("/api/chat", "openai/gpt-4o"),
    ]


@pytest.mark.parametrize("model", ["", "   ", "ollama/", "openrouter/  ", ":cloud"])
def test_a_name_that_names_no_model_is_an_invalid_request(model):
    with pytest.raises(InvalidRequest) as caught:
        route(model)

    assert caught.value.facts["field"] == "model"
    assert not caught.value.retryable


def test_resolve_gives_the_provider_and_the_upstream_name(registry):
    provider, upstream_model = registry.resolve("openrouter/vendor/model-x")

    assert provider.name == "openrouter"
    assert upstream_model == "vendor/model-x"


def test_providers_lists_every_provider_when_every_key_is_set(registry):
    assert registry.providers() == [
        "kimi",
        "mock",
        "ollama",
        "ollama_cloud",
        "opencode",
        "openrouter",
    ]


@pytest.mark.parametrize(
    ("keys_set", "expected"),
    [
        ({}, ["mock", "ollama"]),
        ({"OPENROUTER_API_KEY"}, ["mock", "ollama", "openrouter"]),
        ({"OLLAMA_CLOUD_API_KEY", "KIMI_API_KEY"}, ["kimi", "mock", "ollama", "ollama_cloud"]),
    ],
)
def test_providers_lists_exactly_the_registered_ones(make_registry, keys_set, expected):
    all_keys = ["OLLAMA_CLOUD_API_KEY", "OPENROUTER_API_KEY", "OPENCODE_API_KEY", "KIMI_API_KEY"]
    registry = make_registry(**{k: None for k in all_keys if k not in keys_set})

    assert registry.providers() == expected


def test_telemetry_counts_calls_successes_and_errors_by_type(registry, upstream, ask):
    upstream.push(Answer(), Answer.error(500), Answer.error(404))

    registry.chat(ask("llama3.2"))
    for _ in range(2):
        with pytest.raises(UpstreamError):
            registry.chat(ask("llama3.2"))
    registry.chat(ask("mock/echo"))

    stats = registry.telemetry.snapshot()
    assert stats["ollama"]["calls"] == 3
    assert stats["ollama"]["ok"] == 1
    assert stats["ollama"]["errors"] == {"UpstreamUnavailable": 1, "ModelNotFound": 1}
    assert stats["ollama"]["latency_ms_max"] >= stats["ollama"]["latency_ms_avg"] > 0
    assert stats["mock"]["calls"] == stats["mock"]["ok"] == 1


def test_a_name_that_cannot_be_routed_is_not_counted_as_a_call(make_registry, ask):
    registry = make_registry(OPENROUTER_API_KEY=None)

    with pytest.raises(ProviderNotFound):
        registry.chat(ask("openrouter/openai/gpt-4o"))

    assert registry.telemetry.snapshot() == {}


def test_an_upstream_error_carries_the_model_that_was_asked_for(registry, upstream, ask):
    upstream.push(Answer.error(500))

    with pytest.raises(UpstreamError) as caught:
        registry.chat(ask("ollama/llama3.2"))

    assert caught.value.model == "ollama/llama3.2"
    assert caught.value.provider == "ollama"
    assert caught.value.to_dict()["model"] == "ollama/llama3.2"
