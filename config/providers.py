"""Every provider chatq knows, one row each: adding a provider is adding a row.

Settings (default URLs, API keys, default limits), the registry (model-name
prefixes) and the builder (which wire implementation serves it) all read this table.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["KEYED_PROVIDERS", "PROVIDERS", "TABLE", "ProviderSpec", "spec"]


@dataclass(frozen=True)
class ProviderSpec:
    """One provider.

    Attributes:
        name: used in queues (`chat.<name>`), metrics and settings (`<NAME>_URL`, ...).
        prefix: the model-name prefix before the first "/" that selects it.
        family: its wire format: "ollama" (/api/chat), "ollama_cloud" (/api/generate),
            "openai" (chat completions) or "mock" (no network).
        url: its default base URL (None: it makes no network call).
        keyed: it needs an API key (`<NAME>_API_KEY`); without one it is not registered.
        concurrency: calls in flight at once, fleet-wide, unless configured (None:
            unlimited).
        attribution: it takes the app attribution headers (OpenRouter's HTTP-Referer
            and X-Title).
        sampling: sampling options it honours beyond those its family shares (OpenRouter
            passes `top_k` and `min_p` on; the plain OpenAI API has neither).
    """

    name: str
    prefix: str
    family: str
    url: str | None
    keyed: bool = False
    concurrency: int | None = None
    attribution: bool = False
    sampling: tuple[str, ...] = ()

    @property
    def offline(self) -> bool:
        """It answers without any network call (never rate limited unless configured)."""
        return self.url is None


# fmt: off
TABLE: tuple[ProviderSpec, ...] = (
    # name           prefix          family          default URL
    # Local Ollama serves one request at a time unless OLLAMA_NUM_PARALLEL says more.
    ProviderSpec("ollama",       "ollama",       "ollama",       "http://localhost:11434",
                 concurrency=1),
    ProviderSpec("ollama_cloud", "ollama_cloud", "ollama_cloud", "https://ollama.com",
                 keyed=True),
    ProviderSpec("openrouter",   "openrouter",   "openai",       "https://openrouter.ai/api/v1",
                 keyed=True, attribution=True, sampling=("top_k", "min_p")),
    ProviderSpec("opencode",     "opencode",     "openai",       "https://opencode.ai/zen/v1",
                 keyed=True),
    # Kimi For Coding: its keys are not Moonshot keys.
    ProviderSpec("kimi",         "kimi",         "openai",       "https://api.kimi.com/coding/v1",
                 keyed=True),
    ProviderSpec("mock",         "mock",         "mock",         None),
)
# fmt: on

#: Every provider's name, in the table's order.
PROVIDERS: tuple[str, ...] = tuple(p.name for p in TABLE)
#: The providers that need an API key; without one they are not registered.
KEYED_PROVIDERS: tuple[str, ...] = tuple(p.name for p in TABLE if p.keyed)
_BY_NAME = {p.name: p for p in TABLE}


def spec(name: str) -> ProviderSpec:
    """The row of provider `name`.

    Raises:
        KeyError: chatq knows no such provider.
    """
    return _BY_NAME[name]
