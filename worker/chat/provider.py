"""What every provider is: a name, and a translation of our request to its wire format
and of its answer back. The HTTP call, the timing and the error mapping are shared.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from typing import Any

from chatq.errors import MalformedResponse
from worker.chat.transport import Timeout, Transport
from worker.chat.types import ChatRequest, ChatResponse

__all__ = ["HttpProvider", "Provider"]


class Provider(ABC):
    """Answers a chat request for an already resolved upstream model name."""

    name: str

    @abstractmethod
    def chat(
        self, request: ChatRequest, upstream_model: str, *, deadline: float | None = None
    ) -> ChatResponse:
        """Make one upstream call.

        Args:
            request: the validated request (its `model` still carries the prefix).
            upstream_model: the name to send upstream, as the registry resolved it.
            deadline: a `time.monotonic()` instant no wait may outlast.

        Raises:
            UpstreamError: or a subclass, when the call fails.
        """


class HttpProvider(Provider):
    """A provider behind one HTTP endpoint: subclasses give the path, payload and parsing."""

    path: str

    def __init__(self, name: str, transport: Transport, *, timeout: Timeout):
        self.name = name
        self.transport = transport
        self.timeout = timeout

    def chat(
        self, request: ChatRequest, upstream_model: str, *, deadline: float | None = None
    ) -> ChatResponse:
        timeout = self.timeout
        if request.timeout is not None:
            timeout = Timeout(timeout.connect, request.timeout)
        if deadline is not None:
            timeout = timeout.clipped(deadline - time.monotonic())
        started = time.perf_counter()
        body = self.transport.post_json(
            self.path, self.payload(request, upstream_model), timeout=timeout
        )
        latency_ms = (time.perf_counter() - started) * 1000.0
        if not isinstance(body, dict):
            raise self.malformed(f"expected a JSON object, got {type(body).__name__}", body)
        try:
            fields = self.parse(body)
        except (KeyError, TypeError, ValueError, IndexError) as exc:
            what = f"unexpected answer shape ({type(exc).__name__}: {exc})"
            raise self.malformed(what, body) from None
        return ChatResponse(
            model=request.model, provider=self.name, latency_ms=round(latency_ms, 2), **fields
        )

    @abstractmethod
    def payload(self, request: ChatRequest, upstream_model: str) -> dict[str, Any]:
        """The JSON body of the upstream call."""

    @abstractmethod
    def parse(self, body: dict[str, Any]) -> dict[str, Any]:
        """`content`, token counts and `finish_reason` from the upstream's answer."""

    def malformed(self, what: str, body: Any) -> MalformedResponse:
        """The error for an answer that does not have the shape the API promises."""
        return MalformedResponse(f"{self.name}: {what}", provider=self.name, excerpt=str(body))
