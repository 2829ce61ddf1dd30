"""What every provider is: a name, and a translation of our request to its wire format
and of its answer back. The HTTP call, the timing and the error mapping are shared.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Iterator
from typing import Any

from chatq.errors import BadRequest, InvalidRequest, MalformedResponse
from worker.chat.transport import Reply, Timeout, Transport
from worker.chat.types import SAMPLING, ChatRequest, ChatResponse

__all__ = ["HttpProvider", "Provider"]


class Provider(ABC):
    """Answers a chat request for an already resolved upstream model name."""

    name: str
    #: The sampling options (`types.SAMPLING`) this provider sends on; a request that
    #: sets any other is refused, never sent without it.
    honours: frozenset[str] = frozenset(SAMPLING)

    def check(self, request: ChatRequest) -> None:
        """Refuse what this provider cannot honour (a sampling option, or a part of the
        request its wire cannot carry); called before a request is queued and again
        before each call.

        Raises:
            InvalidRequest: naming the option and the provider.
        """
        for option in request.sampling():
            if option not in self.honours:
                known = ", ".join(o for o in SAMPLING if o in self.honours) or "none"
                raise InvalidRequest(
                    f"{self.name} cannot honour {option} (of the sampling options it "
                    f"knows {known}); leave it out or use another provider",
                    field=option,
                    provider=self.name,
                )
        self.refuse_unsupported(request)

    def refuse_unsupported(self, request: ChatRequest) -> None:
        """Raise `self.cannot(...)` for any part of `request` this provider's wire cannot
        carry (tools, images, ...); the base class takes everything."""
        return None

    def cannot(self, what: str, field: str) -> InvalidRequest:
        """The refusal of `what`, naming this provider."""
        return InvalidRequest(f"{self.name} cannot take {what}", field=field, provider=self.name)

    @abstractmethod
    async def chat(
        self, request: ChatRequest, upstream_model: str, *, deadline: float | None = None
    ) -> ChatResponse:
        """Make one upstream call (a coroutine on the process's loop).

        Args:
            request: the validated request (its `model` still carries the prefix).
            upstream_model: the name to send upstream, as the registry resolved it.
            deadline: a `time.monotonic()` instant no wait may outlast.

        Raises:
            UpstreamError: or a subclass, when the call fails.
        """

    async def aclose(self) -> None:
        """Let go of what the provider holds open (its pooled connections); the base
        class holds nothing."""
        return None


class HttpProvider(Provider):
    """A provider behind one HTTP endpoint: subclasses give the path, payload and parsing."""

    path: str

    def __init__(
        self,
        name: str,
        transport: Transport,
        *,
        timeout: Timeout,
        stream: bool = False,
        idle_timeout: float | None = None,
        also_honours: tuple[str, ...] = (),
    ):
        self.name = name
        #: Options its family does not share but this provider knows (provider table).
        self.honours = type(self).honours | frozenset(also_honours)
        #: Upstream models that answered a JSON Schema with 400/422 but JSON mode with an
        #: answer (shared by every call of the process, all on its one loop).
        self._refuses_schemas: set[str] = set()
        self.transport = transport
        self.timeout = timeout
        #: Ask for a streamed answer: a stall then costs `idle_timeout`, while a long
        #: answer that keeps coming may take as long as the job's deadline allows.
        self.stream = stream
        self.idle_timeout = idle_timeout or timeout.read

    async def chat(
        self, request: ChatRequest, upstream_model: str, *, deadline: float | None = None
    ) -> ChatResponse:
        """One call; when the provider refuses a JSON Schema (400, 422), one more in JSON
        mode, whose answer the worker then checks against the schema itself. A model
        that refused once is asked in JSON mode from then on (by this process), so a
        batch does not pay each of its lines a refused call."""
        started = time.perf_counter()
        notes = []
        if isinstance(request.format, dict) and upstream_model in self._refuses_schemas:
            notes.append(f"{self.name} refused JSON Schemas for {upstream_model} earlier: "
                         "asked in JSON mode; the answer was checked against the schema "
                         "by chatq")  # fmt: skip
            reply = await self._call_in_json_mode(request, upstream_model, deadline)
        else:
            try:
                reply = await self._call(request, self.payload(request, upstream_model), deadline)
            except BadRequest as exc:
                if not isinstance(request.format, dict):
                    raise
                notes.append(f"{self.name} refused the JSON Schema ({exc.status}): asked in "
                             "JSON mode instead; the answer was checked against the schema "
                             "by chatq")  # fmt: skip
                reply = await self._call_in_json_mode(request, upstream_model, deadline)
                # Only once JSON mode was taken: a 400 for another cause fails again above.
                self._refuses_schemas.add(upstream_model)
        latency_ms = (time.perf_counter() - started) * 1000.0
        body = reply.body
        if not isinstance(body, dict):
            raise self.malformed(f"expected a JSON object, got {type(body).__name__}", body)
        try:
            fields = self.parse(body)
        except (KeyError, TypeError, ValueError, IndexError) as exc:
            what = f"unexpected answer shape ({type(exc).__name__}: {exc})"
            raise self.malformed(what, body) from None
        return ChatResponse(
            model=request.model,
            provider=self.name,
            latency_ms=round(latency_ms, 2),
            notes=notes,
            budget=reply.budget,
            **fields,
        )

    async def _call_in_json_mode(
        self, request: ChatRequest, upstream_model: str, deadline: float | None
    ) -> Reply:
        """`request` asked for JSON (any JSON) instead of its JSON Schema."""
        json_mode = request.model_copy(update={"format": "json"})
        return await self._call(json_mode, self.payload(json_mode, upstream_model), deadline)

    async def _call(
        self, request: ChatRequest, payload: dict[str, Any], deadline: float | None
    ) -> Reply:
        """POST `payload`, streamed or not; the decoded body and the budget it announced."""
        now = time.monotonic()
        if self.stream:
            # The request's own timeout bounds the whole streamed answer; the idle
            # timeout bounds each wait for the next bytes.
            ends = [t for t in (deadline, request.timeout and now + request.timeout) if t]
            until = min(ends) if ends else None
            # No silence outlasts the read timeout (the request's own, else CHATQ_TIMEOUT).
            read = request.timeout or self.timeout.read
            idle = Timeout(self.timeout.connect, min(self.idle_timeout, read))
            timeout = idle.clipped(until - now if until is not None else None)
            return await self.transport.post_stream(
                self.path, payload, timeout=timeout, until=until, assemble=self.assemble
            )
        timeout = self.timeout
        if request.timeout is not None:
            timeout = Timeout(timeout.connect, request.timeout)
        if deadline is not None:
            timeout = timeout.clipped(deadline - now)
        return await self.transport.post_json(self.path, payload, timeout=timeout, until=deadline)

    async def aclose(self) -> None:
        """Close the transport's pooled connections."""
        await self.transport.aclose()

    @abstractmethod
    def payload(self, request: ChatRequest, upstream_model: str) -> dict[str, Any]:
        """The JSON body of the upstream call."""

    @abstractmethod
    def parse(self, body: dict[str, Any]) -> dict[str, Any]:
        """`content`, token counts and `finish_reason` from the upstream's answer."""

    @abstractmethod
    def assemble(self, lines: Iterator[str]) -> dict[str, Any]:
        """A streamed answer's lines as the body a non-streamed call would have got.

        Raises:
            ValueError: a line is not JSON.
            MalformedResponse: the stream ended before the answer did.
        """

    def malformed(self, what: str, body: Any) -> MalformedResponse:
        """The error for an answer that does not have the shape the API promises."""
        return MalformedResponse(f"{self.name}: {what}", provider=self.name, excerpt=str(body))
