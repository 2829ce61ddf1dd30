"""Local Ollama: `POST /api/chat`, streamed (one JSON object a line) or in one piece."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

from chatq.errors import MalformedResponse, UpstreamUnavailable
from chatq.redaction import redact
from worker.chat.provider import HttpProvider
from worker.chat.types import ChatRequest

__all__ = ["OllamaProvider", "assemble_ndjson", "ollama_options"]


def ollama_options(request: ChatRequest, *, stream: bool = False) -> dict[str, Any]:
    """The fields Ollama's /api/chat and /api/generate share: stream, think, format and
    options (temperature, num_predict and the sampling options)."""
    fields: dict[str, Any] = {"stream": stream, "think": bool(request.think)}
    if request.format is not None:
        fields["format"] = request.format  # "json", or the JSON Schema itself
    options: dict[str, Any] = {}
    if request.temperature is not None:
        options["temperature"] = request.temperature
    if request.max_tokens is not None:
        options["num_predict"] = request.max_tokens
    # Every sampling option has an Ollama option of the same name; `stop` is a list there.
    for name, value in request.sampling().items():
        options[name] = [value] if name == "stop" and isinstance(value, str) else value
    if options:
        fields["options"] = options
    return fields


def ollama_usage(body: dict[str, Any]) -> dict[str, Any]:
    """Token counts and finish reason from an Ollama answer."""
    return {
        "input_tokens": int(body.get("prompt_eval_count") or 0),
        "output_tokens": int(body.get("eval_count") or 0),
        "finish_reason": body.get("done_reason"),
    }


def assemble_ndjson(provider: HttpProvider, lines: Iterator[str], text: Callable) -> dict:
    """Ollama's streamed answer (one JSON object a line, the last one `done`) as its
    non-streamed body: the pieces `text(obj)` joined, the counts of the last object."""
    pieces: list[str] = []
    for line in lines:
        if not line.strip():
            continue
        obj = json.loads(line)
        if not isinstance(obj, dict):
            raise ValueError(f"expected an object, got {type(obj).__name__}")
        if obj.get("error"):
            raise UpstreamUnavailable(
                f"{provider.name} failed in the middle of its answer: {redact(str(obj['error']))}",
                provider=provider.name,
                excerpt=str(obj),
            )
        pieces.append(text(obj) or "")
        if obj.get("done"):
            return {**obj, "_text": "".join(pieces)}
    raise MalformedResponse(f"{provider.name}: the streamed answer ended before it was done",
                            provider=provider.name)  # fmt: skip


class OllamaProvider(HttpProvider):
    """Translates to and from Ollama's chat API. `think` is off unless asked, so that
    short judge answers do not come back empty with `done_reason: length`."""

    path = "/api/chat"

    def payload(self, request: ChatRequest, upstream_model: str) -> dict[str, Any]:
        return {
            "model": upstream_model,
            "messages": [{"role": m.role, "content": m.content} for m in request.messages],
            **ollama_options(request, stream=self.stream),
        }

    def assemble(self, lines: Iterator[str]) -> dict[str, Any]:
        body = assemble_ndjson(self, lines, lambda o: (o.get("message") or {}).get("content"))
        return {**body, "message": {"role": "assistant", "content": body.pop("_text")}}

    def parse(self, body: dict[str, Any]) -> dict[str, Any]:
        content = body["message"]["content"]
        if not isinstance(content, str):
            raise TypeError("message.content is not a string")
        return {"content": content, **ollama_usage(body)}
