"""Fixtures of the provider-layer tests: the fake upstream, settings and registries wired
to it, and fresh API keys for every test.

Settings are always read from an explicit environment and an empty directory of the
test's own, so that neither the process environment nor a `.env` can leak in.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from config import KEYED_PROVIDERS, Settings, load_settings
from tests.fake_upstream import FakeUpstream
from worker.aio import process_loop
from worker.chat.builder import build_registry
from worker.chat.registry import Registry
from worker.chat.types import ChatRequest

#: Where each provider's calls arrive on the fake upstream (the base path of its URL).
BASE_PATHS = {
    "ollama": "",
    "ollama_cloud": "/cloud",
    "openrouter": "/openrouter/v1",
    "opencode": "/opencode/v1",
    "kimi": "/kimi/v1",
}


@pytest.fixture(scope="session")
def _shared_upstream() -> Iterator[FakeUpstream]:
    # One server for the session: stopping one waits out its half-second poll.
    with FakeUpstream() as up:
        yield up


@pytest.fixture
def upstream(_shared_upstream: FakeUpstream) -> FakeUpstream:
    """The fake upstream with an empty script and no calls recorded yet."""
    _shared_upstream.reset()
    return _shared_upstream


@pytest.fixture
def keys() -> dict[str, str]:
    """A fresh API key per keyed provider.

    Unique per test, so that a key one test taught the redaction cannot hide a leak of
    another test's key.
    """
    tag = uuid.uuid4().hex
    return {provider: f"{provider}-key-{tag}" for provider in KEYED_PROVIDERS}


@pytest.fixture
def environ(upstream: FakeUpstream, keys: dict[str, str], tmp_path: Path) -> dict[str, str]:
    """Every provider pointed at the fake upstream, each under its own base path, with a key.

    Key files are pointed into the test's directory (none exists until a test writes it).
    """
    env = {f"{provider.upper()}_URL": upstream.url + path for provider, path in BASE_PATHS.items()}
    env["CHATQ_TIMEOUT"] = "5"
    env["CHATQ_CONNECT_TIMEOUT"] = "2"
    for provider in KEYED_PROVIDERS:
        env[f"{provider.upper()}_API_KEY"] = keys[provider]
        env[f"{provider.upper()}_KEY_FILE"] = str(tmp_path / "keys" / f"{provider}.env")
    return env


@pytest.fixture
def make_settings(environ: dict[str, str], tmp_path: Path) -> Callable[..., Settings]:
    """`make_settings(NAME=value, OTHER=None)`: settings from `environ` with changes (None
    removes a variable), read from an empty directory."""
    directory = tmp_path / "cwd"
    directory.mkdir(exist_ok=True)

    def make(**changes: str | None) -> Settings:
        env = {**environ, **changes}
        return load_settings({k: v for k, v in env.items() if v is not None}, directory=directory)

    return make


@pytest.fixture
def make_registry(make_settings: Callable[..., Settings]) -> Iterator[Callable[..., Registry]]:
    """`make_registry(NAME=value, OTHER=None)`: a registry built from changed settings;
    its pooled connections are closed when the test ends."""
    made: list[Registry] = []

    def make(**changes: str | None) -> Registry:
        made.append(build_registry(make_settings(**changes)))
        return made[-1]

    yield make
    for registry in made:
        process_loop().run(registry.aclose())


@pytest.fixture
def registry(make_registry: Callable[..., Registry]) -> Registry:
    """A registry with every provider registered and pointed at the fake upstream."""
    return make_registry()


@pytest.fixture
def ask() -> Callable[..., ChatRequest]:
    """`ask(model, text="hello", **fields)`: a valid request with one user message."""

    def make(model: str, text: str = "hello", **fields: Any) -> ChatRequest:
        return ChatRequest.parse(
            {"model": model, "messages": [{"role": "user", "content": text}], **fields}
        )

    return make
