"""Building the registry from settings: which providers exist, and how each is pinned.

Each row of the provider table (config/providers.py) names its wire family; this
module maps a family to the class that speaks it.
"""

from __future__ import annotations

from chatq.redaction import remember_secret
from config import TABLE, ProviderSpec, Settings
from worker.chat.mock import MockProvider
from worker.chat.ollama import OllamaProvider
from worker.chat.ollama_cloud import OllamaCloudProvider
from worker.chat.openai_compat import OpenAICompatProvider
from worker.chat.provider import HttpProvider, Provider
from worker.chat.registry import Registry
from worker.chat.transport import Timeout, Transport

__all__ = ["FAMILIES", "build_registry"]

#: The class that speaks each wire family over HTTP.
FAMILIES: dict[str, type[HttpProvider]] = {
    "ollama": OllamaProvider,
    "ollama_cloud": OllamaCloudProvider,
    "openai": OpenAICompatProvider,
}


def build_registry(settings: Settings) -> Registry:
    """A registry with every provider that needs no key, and each keyed one that has one.

    Every HTTP provider gets its own pooled transport (one per provider per process).
    """
    timeout = Timeout(connect=settings.connect_timeout, read=settings.timeout)
    providers: dict[str, Provider] = {}
    hints = {}
    for row in TABLE:
        if row.offline:
            providers[row.name] = MockProvider()
            continue
        env = row.name.upper()
        if row.keyed:
            hints[row.name] = (
                f"set {env}_API_KEY, or put it in {env}_KEY_FILE (/etc/chatq/{row.name}.env)"
            )
            if row.name not in settings.api_keys:
                continue
        transport = Transport(
            row.name,
            settings.urls[row.name],
            headers=_headers(row, settings),
            pool_size=settings.http_connections,
        )
        providers[row.name] = FAMILIES[row.family](
            row.name,
            transport,
            timeout=timeout,
            stream=settings.stream,
            idle_timeout=settings.idle_timeout,
            also_honours=row.sampling,
        )
    return Registry(providers, hints=hints)


def _headers(row: ProviderSpec, settings: Settings) -> dict[str, str]:
    """The headers every call of `row` carries: its key, and attribution where it takes it."""
    headers = {}
    key = settings.api_keys.get(row.name)
    if key is not None:
        remember_secret(key.reveal())
        headers["Authorization"] = f"Bearer {key.reveal()}"
    if row.attribution:
        headers["HTTP-Referer"] = settings.openrouter_referer
        headers["X-Title"] = settings.openrouter_title
    return headers
