"""What the fake upstream (tests/fake_upstream.py) answers: its scripted answers, the
errors real providers send, and what it recorded of each request."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

__all__ = ["REAL_ERRORS", "Answer", "Received", "has_schema", "schema_refused"]


@dataclass(frozen=True)
class Answer:
    """What the fake upstream does for one call.

    kind: "ok" (a proper answer in the route's wire format), "status" (`status` with
    `body`), "garbage" (200, not JSON), "truncated" (200, JSON cut short), "cut" (headers
    promise more body than is sent, then the connection closes), "zero_choices",
    "reset" (the connection closes before any answer), "json" (200 with `body` as JSON).
    """

    kind: str = "ok"
    status: int = 200
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    content: str | None = None
    #: A proper answer that calls these tools: [(name, arguments as a dict), ...].
    tool_calls: tuple | None = None

    @classmethod
    def error(cls, status: int, body: Any = None, **headers: str) -> Answer:
        """A `status` answer with `body` (JSON when not a string) and headers."""
        hdrs = {k.replace("_", "-"): v for k, v in headers.items()}
        return cls(kind="status", status=status, body=body, headers=hdrs)

    @classmethod
    def rate_limited(cls, retry_after: float | str | None = None) -> Answer:
        """A 429, with `Retry-After` when given."""
        hdrs = {} if retry_after is None else {"Retry-After": str(retry_after)}
        return cls(kind="status", status=429, body={"error": "rate limited"}, headers=hdrs)

    @classmethod
    def calling(cls, *calls: tuple[str, dict]) -> Answer:
        """A proper answer that asks for tool calls `(name, arguments)`, in the route's
        real shape: Ollama's arguments as an object (no id), the OpenAI family's as JSON
        text with an id, content null and finish_reason `tool_calls`."""
        return cls(content="", tool_calls=tuple(calls))

    @classmethod
    def error_in_200(cls, error: dict, *, streamed: bool = False, after: str = "",
                     finish_error: bool = False) -> Answer:  # fmt: skip
        """An error object inside a 200, as OpenRouter sends one once a model was asked:
        the whole JSON body, or (`streamed`) a server-sent event after `after` was
        streamed as content; `finish_error` puts it beside a choice whose finish_reason
        is "error", as OpenRouter ends a stream that failed mid-answer."""
        if not streamed:
            return cls(kind="json", body={"error": error})
        base = {"id": "gen-1", "object": "chat.completion.chunk", "model": "fake"}
        delta = {"role": "assistant", "content": after}
        chunks = [{**base, "choices": [{"index": 0, "delta": delta, "finish_reason": None}]}]
        failed = {**base, "error": error}
        if finish_error:
            failed["choices"] = [{"index": 0, "delta": {"content": ""}, "finish_reason": "error"}]
        events = [": OPENROUTER PROCESSING", *(f"data: {json.dumps(c)}" for c in chunks),
                  f"data: {json.dumps(failed)}", "data: [DONE]"]  # fmt: skip
        return cls(kind="raw_stream", body="\n\n".join(events) + "\n\n")

    @classmethod
    def slow(cls, seconds: float, content: str | None = None) -> Answer:
        """A proper answer after `seconds` (not a byte before then)."""
        return cls(delay=seconds, content=content)

    @classmethod
    def stall(cls, seconds: float, *, after: int = 1) -> Answer:
        """A streamed answer that stops for `seconds` after its first `after` pieces (an
        upstream that hangs mid-answer), then ends properly."""
        return cls(kind="stall", body={"after": after, "seconds": seconds})

    @classmethod
    def trickle(cls, seconds: float, *, pieces: int = 8, content: str | None = None) -> Answer:
        """A healthy long answer: streamed in `pieces`, spread over `seconds`."""
        return cls(kind="trickle", body={"pieces": pieces, "seconds": seconds}, content=content)


#: Errors as real providers send them (status and body), by the behaviour they show.
REAL_ERRORS: dict[str, Answer] = {
    # OpenAI (and the APIs that copy it): the account has no quota left.
    "openai_insufficient_quota": Answer.error(429, {"error": {
        "message": "You exceeded your current quota, please check your plan and billing "
                   "details.",
        "type": "insufficient_quota", "param": None, "code": "insufficient_quota"}}),
    # OpenRouter: too little credit for the call, as a 402 in its own envelope.
    "openrouter_402": Answer.error(402, {"error": {
        "code": 402,
        "message": "This request requires more credits, or fewer max_tokens. You requested "
                   "up to 4096 tokens, but can only afford 112."}}),
    # OpenRouter: an upstream provider's refusal, named in metadata.
    "openrouter_upstream_400": Answer.error(400, {"error": {
        "code": 400, "message": "Provider returned error",
        "metadata": {"provider_name": "Fireworks", "raw": "prompt is too long"}}}),
    # OpenRouter: an error once the model was asked comes in a 200, its code the status
    # it stands for: as the whole body, as an event mid-stream, or beside a choice that
    # finishes with "error" (a string code: the provider broke off).
    "openrouter_502_in_200": Answer.error_in_200({
        "code": 502, "message": "Provider returned error",
        "metadata": {"provider_name": "Together", "raw": "upstream connect error"}}),
    "openrouter_429_event_midstream": Answer.error_in_200({
        "code": 429, "message": "Provider returned error",
        "metadata": {"provider_name": "DeepInfra", "raw": "rate limit exceeded, retry"}},
        streamed=True, after="The answer beg"),
    "openrouter_finish_reason_error": Answer.error_in_200({
        "code": "server_error", "message": "Provider disconnected unexpectedly"},
        streamed=True, after="The answer beg", finish_error=True),
    # OpenRouter: input its moderation flagged (a 403 no key passes).
    "openrouter_moderation_403": Answer.error(403, {"error": {
        "code": 403, "message": "meta-llama/llama-guard requires moderation",
        "metadata": {"reasons": ["violence"], "flagged_input": "...",
                     "provider_name": "Lepton", "model_slug": "x/y"}}}),
    # Ollama Cloud's usage limits: 429s that waiting seconds will not cure.
    "ollama_cloud_hourly_limit": Answer.error(429, {
        "error": "you've reached your hourly usage limit, please wait or upgrade to continue"}),
    "ollama_cloud_session_limit": Answer.error(429, {
        "error": "you (someone) have reached your session usage limit, upgrade for higher "
                 "limits: https://ollama.com/upgrade"}),
    "ollama_cloud_weekly_limit": Answer.error(429, {
        "error": "you (someone) have reached your weekly usage limit, upgrade for higher "
                 "limits: https://ollama.com/upgrade"}),
    # Ollama: its queue of pending requests is full (OLLAMA_MAX_QUEUE).
    "ollama_busy": Answer.error(503, {
        "error": "server busy, please try again.  maximum pending requests exceeded"}),
    # Ollama: the model is not pulled on this server.
    "ollama_model_not_found": Answer.error(404, {
        "error": 'model "llama9" not found, try pulling it first'}),
    # Ollama: a format it cannot turn into a grammar.
    "ollama_invalid_schema": Answer.error(400, {"error": "invalid JSON schema in format"}),
    # "Client closed request": the call was cut before its answer (no body).
    "499": Answer.error(499, ""),
}  # fmt: skip


@dataclass(frozen=True)
class Received:
    """One request as the fake upstream saw it."""

    path: str
    headers: dict[str, str]
    body: Any
    at: float
    #: How it was answered: "ok", a chaos fault's name, or a scripted answer's kind.
    answer: str = "ok"


def has_schema(body: Any) -> bool:
    """Whether a request asks for a JSON Schema: Ollama's `format: {...}`, the OpenAI
    family's `response_format: {"type": "json_schema"}`."""
    if not isinstance(body, dict):
        return False
    fmt = body.get("response_format")
    return isinstance(body.get("format"), dict) or (
        isinstance(fmt, dict) and fmt.get("type") == "json_schema"
    )


def schema_refused(path: str) -> Answer:
    """The 400 a provider sends for a schema it cannot take: Ollama's `{"error": text}`,
    OpenRouter's envelope (code, message, metadata naming the upstream provider)."""
    if path.endswith("/api/chat") or path.endswith("/api/generate"):
        return Answer.error(400, {"error": "invalid format: json schema is not supported"})
    return Answer.error(400, {"error": {
        "code": 400,
        "message": "Provider returned error",
        "metadata": {"provider_name": "Fake", "raw": "response_format json_schema is not "
                     "supported by this model"},
    }})  # fmt: skip
