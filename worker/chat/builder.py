"""Building the registry from settings: which providers exist, and how each is pinned."""

from __future__ import annotations

from config import Settings
from worker.chat.mock import MockProvider
from worker.chat.ollama import OllamaProvider
from worker.chat.ollama_cloud import OllamaCloudProvider
from worker.chat.openai_compat import OpenAICompatProvider
from worker.chat.provider import Provider
from worker.chat.redaction import remember_secret
from worker.chat.registry import Registry
from worker.chat.transport import Timeout, Transport

__all__ = ["build_registry"]

_KEYED = {
    "ollama_cloud": OllamaCloudProvider,
    "openrouter": OpenAICompatProvider,
    "opencode": OpenAICompatProvider,
    "kimi": OpenAICompatProvider,
}


def build_registry(settings: Settings) -> Registry:
    """A registry with local Ollama and mock always, and each keyed provider that has a key.

    Every HTTP provider gets its own pooled transport (one per provider per process).
    """
    timeout = Timeout(connect=settings.connect_timeout, read=settings.timeout)
    providers: dict[str, Provider] = {
        "mock": MockProvider(),
        "ollama": OllamaProvider(
            "ollama",
            Transport("ollama", settings.urls["ollama"], pool_size=settings.http_connections),
            timeout=timeout,
        ),
    }
    hints = {}
    for name, kind in _KEYED.items():
        key = settings.api_keys.get(name)
        env = name.upper()
        hints[name] = f"set {env}_API_KEY, or put it in {env}_KEY_FILE (/etc/chatq/{name}.env)"
        if key is None:
            continue
        remember_secret(key.reveal())
        headers = {"Authorization": f"Bearer {key.reveal()}"}
        if name == "openrouter":
            headers["HTTP-Referer"] = settings.openrouter_referer
            headers["X-Title"] = settings.openrouter_title
        transport = Transport(
            name, settings.urls[name], headers=headers, pool_size=settings.http_connections
        )
        providers[name] = kind(name, transport, timeout=timeout)
    return Registry(providers, hints=hints)
