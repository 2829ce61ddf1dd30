"""Building the registry from settings: which providers exist, with which key."""

from __future__ import annotations

from pathlib import Path

import pytest

from chatq.errors import ProviderNotFound, UpstreamError
from config import KEYED_PROVIDERS

NO_KEYS = {f"{p.upper()}_API_KEY": None for p in KEYED_PROVIDERS}
MODELS = {
    "ollama_cloud": "ollama_cloud/gpt-oss:120b",
    "openrouter": "openrouter/openai/gpt-4o-mini",
    "opencode": "opencode/grok-code",
    "kimi": "kimi/kimi-for-coding",
}
each_keyed_provider = pytest.mark.parametrize("provider", KEYED_PROVIDERS)


def _write_key_file(environ: dict[str, str], provider: str, text: str) -> None:
    path = Path(environ[f"{provider.upper()}_KEY_FILE"])
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def _bearer(upstream) -> str:
    headers = {k.lower(): v for k, v in upstream.received[-1].headers.items()}
    return headers["authorization"]


def test_local_ollama_and_mock_are_always_registered(make_registry):
    assert make_registry(**NO_KEYS).providers() == ["mock", "ollama"]


@each_keyed_provider
def test_a_key_from_the_environment_registers_the_provider(make_registry, upstream, ask, provider):
    registry = make_registry(**{**NO_KEYS, f"{provider.upper()}_API_KEY": "env-key-123456"})

    registry.chat(ask(MODELS[provider]))

    assert provider in registry.providers()
    assert _bearer(upstream) == "Bearer env-key-123456"


@each_keyed_provider
def test_a_key_from_the_key_file_registers_the_provider(
    make_registry, environ, upstream, ask, provider
):
    var = f"{provider.upper()}_API_KEY"
    _write_key_file(environ, provider, f"# {provider} key\n{var}=file-key-123456\n")
    registry = make_registry(**NO_KEYS)

    registry.chat(ask(MODELS[provider]))

    assert registry.providers() == sorted(["mock", "ollama", provider])
    assert _bearer(upstream) == "Bearer file-key-123456"


def test_the_environment_wins_over_the_key_file(make_registry, environ, upstream, ask):
    _write_key_file(environ, "kimi", "KIMI_API_KEY=file-key-123456\n")
    registry = make_registry(KIMI_API_KEY="env-key-123456")

    registry.chat(ask("kimi/kimi-for-coding"))

    assert _bearer(upstream) == "Bearer env-key-123456"


def test_a_blank_environment_key_falls_back_to_the_key_file(make_registry, environ, upstream, ask):
    _write_key_file(environ, "opencode", 'OPENCODE_API_KEY="file-key-123456"\n')
    registry = make_registry(OPENCODE_API_KEY="  ")

    registry.chat(ask("opencode/grok-code"))

    assert _bearer(upstream) == "Bearer file-key-123456"


@pytest.mark.parametrize(
    "text",
    ["", "OPENROUTER_API_KEY=\n", "KIMI_API_KEY=belongs-to-kimi\n", "not a dotenv file at all"],
)
def test_a_key_file_without_the_providers_key_leaves_it_unregistered(
    make_registry, environ, ask, text
):
    _write_key_file(environ, "openrouter", text)
    registry = make_registry(**NO_KEYS)

    assert "openrouter" not in registry.providers()
    with pytest.raises(ProviderNotFound):
        registry.chat(ask("openrouter/openai/gpt-4o-mini"))


@each_keyed_provider
def test_a_provider_without_a_key_says_how_to_give_it_one(make_registry, ask, provider):
    registry = make_registry(**NO_KEYS)

    with pytest.raises(ProviderNotFound) as caught:
        registry.chat(ask(MODELS[provider]))

    message = str(caught.value)
    assert f"{provider.upper()}_API_KEY" in message
    assert f"{provider.upper()}_KEY_FILE" in message
    assert caught.value.provider == provider


def test_a_configured_key_is_redacted_wherever_it_appears(make_registry, keys):
    make_registry()
    key = keys["opencode"]  # no pattern would recognise it: only the builder knows it

    err = UpstreamError(f"upstream said: {key} is wrong", status=401, excerpt=f"key={key}!")

    assert key not in str(err)
    assert key not in err.excerpt


def test_each_provider_calls_its_own_url(make_registry, upstream, ask):
    registry = make_registry(KIMI_URL=upstream.url + "/elsewhere/v1")

    registry.chat(ask("kimi/kimi-for-coding"))

    assert upstream.received[0].path == "/elsewhere/v1/chat/completions"
