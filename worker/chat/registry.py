"""Which provider answers a model name, and under which upstream name (chatd's rules).

| model name                | provider              | name sent upstream        |
|---------------------------|-----------------------|---------------------------|
| ollama/<m>                | ollama                | <m>                       |
| ollama_cloud/<m>          | ollama_cloud          | <m>                       |
| <m>:cloud                 | ollama_cloud          | <m>                       |
| openrouter/<vendor>/<m>   | openrouter            | <vendor>/<m>              |
| opencode/<m>              | opencode              | <m>                       |
| kimi/<m>                  | kimi                  | <m>                       |
| mock/<m>                  | mock                  | <m>                       |
| a bare name               | the default (ollama)  | the name as given         |
| unknown/<m>               | the default           | the name unchanged        |

A rule that names a provider which is not registered fails with ProviderNotFound: it
never falls through to another provider.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import NamedTuple

from chatq.errors import ChatqError, InvalidRequest, ProviderNotFound
from config.providers import TABLE
from worker.aio import process_loop
from worker.chat.provider import Provider
from worker.chat.structured import check_answer
from worker.chat.telemetry import Telemetry
from worker.chat.types import ChatRequest, ChatResponse

__all__ = ["PREFIXES", "Registry", "Route", "route"]

#: Model-name prefixes (before the first "/") and the provider each one selects.
PREFIXES = {p.prefix: p.name for p in TABLE}
CLOUD_SUFFIX = ":cloud"
DEFAULT_PROVIDER = "ollama"


class Route(NamedTuple):
    """Where a model name goes: the provider and the name sent upstream."""

    provider: str
    upstream_model: str


def route(model: str, *, default: str = DEFAULT_PROVIDER) -> Route:
    """Apply the routing table to `model` (whether or not the provider is registered).

    Raises:
        InvalidRequest: the name is empty, or a known prefix names no model.
    """
    model = model.strip()
    if not model:
        raise InvalidRequest("a chat request needs a model", field="model")
    prefix, slash, rest = model.partition("/")
    if slash and prefix in PREFIXES:
        if not rest.strip():
            raise InvalidRequest(f"model {model!r} names no model after {prefix}/", field="model")
        return Route(PREFIXES[prefix], rest)
    if model.endswith(CLOUD_SUFFIX):
        name = model[: -len(CLOUD_SUFFIX)]
        if not name.strip():
            raise InvalidRequest(f"model {model!r} names no model before :cloud", field="model")
        return Route("ollama_cloud", name)
    return Route(default, model)


class Registry:
    """The registered providers, resolving model names and counting calls.

    Args:
        providers: the available providers by name (those with no key are left out).
        default: the provider of bare and unknown-prefix names.
        hints: per provider, how to register it (shown in ProviderNotFound).
    """

    def __init__(
        self,
        providers: Mapping[str, Provider],
        *,
        default: str = DEFAULT_PROVIDER,
        hints: Mapping[str, str] | None = None,
    ):
        self._providers = dict(providers)
        self._default = default
        self._hints = dict(hints or {})
        self.telemetry = Telemetry()

    def providers(self) -> list[str]:
        """The names of the registered providers, sorted."""
        return sorted(self._providers)

    def get(self, name: str) -> Provider:
        """The provider registered as `name`.

        Raises:
            ProviderNotFound: nothing is registered under that name.
        """
        try:
            return self._providers[name]
        except KeyError:
            hint = self._hints.get(name, "")
            raise ProviderNotFound(
                f"provider {name!r} is not registered" + (f": {hint}" if hint else ""),
                provider=name,
            ) from None

    def resolve(self, model: str) -> tuple[Provider, str]:
        """(provider, upstream model name) for `model`.

        Raises:
            InvalidRequest: the name is empty or names no model after its prefix.
            ProviderNotFound: the rule's provider is not registered.
        """
        target = route(model, default=self._default)
        try:
            return self.get(target.provider), target.upstream_model
        except ProviderNotFound as exc:
            raise ProviderNotFound(
                f"model {model!r} needs {exc.message}", provider=target.provider, model=model
            ) from None

    def prepare(self, request: ChatRequest) -> tuple[Provider, str]:
        """`resolve`, then refuse what the provider cannot honour: what runs at enqueue
        time, so that nothing its provider would refuse or drop is queued.

        Raises:
            InvalidRequest: as `resolve`, or an option the provider cannot honour.
            ProviderNotFound: the rule's provider is not registered.
        """
        provider, upstream_model = self.resolve(request.model)
        provider.check(request)
        return provider, upstream_model

    async def achat(self, request: ChatRequest, *, deadline: float | None = None) -> ChatResponse:
        """Resolve the request's model and make one upstream call, counting it (a
        coroutine on the process's loop, `worker.aio`).

        Args:
            request: the validated request.
            deadline: a `time.monotonic()` instant no wait of the call may outlast.

        Raises:
            InvalidRequest, ProviderNotFound: the model cannot be routed, or its provider
                cannot honour the request.
            InvalidAnswer: the request has a JSON Schema the answer does not match.
            UpstreamError: or a subclass, when the call fails.
        """
        provider, upstream_model = self.prepare(request)
        started = time.perf_counter()
        try:
            response = await provider.chat(request, upstream_model, deadline=deadline)
            response = check_answer(response, request.format)
        except ChatqError as exc:
            exc.facts.setdefault("model", request.model)
            self.telemetry.record(provider.name, _ms_since(started), exc)
            raise
        self.telemetry.record(provider.name, _ms_since(started), None)
        return response

    def chat(self, request: ChatRequest, *, deadline: float | None = None) -> ChatResponse:
        """`achat`, blocking: for callers that are not on the loop (tests, one-off tools).
        It runs on this process's loop; never call it from the loop's own thread.

        Raises:
            As `achat`; RuntimeError when called from the loop's thread.
        """
        return process_loop().run(self.achat(request, deadline=deadline))

    async def aclose(self) -> None:
        """Close every provider's pooled connections (on the loop the calls ran on)."""
        for provider in self._providers.values():
            await provider.aclose()


def _ms_since(started: float) -> float:
    return (time.perf_counter() - started) * 1000.0
