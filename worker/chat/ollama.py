"""Local Ollama: `POST /api/chat`, one complete answer per call."""

from __future__ import annotations

from typing import Any

from worker.chat.provider import HttpProvider
from worker.chat.types import ChatRequest

__all__ = ["OllamaProvider", "ollama_options"]


def ollama_options(request: ChatRequest) -> dict[str, Any]:
    """The fields Ollama's /api/chat and /api/generate share: think, format and options."""
    fields: dict[str, Any] = {"stream": False, "think": bool(request.think)}
    if request.format == "json":
        fields["format"] = "json"
    options: dict[str, Any] = {}
    if request.temperature is not None:
        options["temperature"] = request.temperature
    if request.max_tokens is not None:
        options["num_predict"] = request.max_tokens
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


class OllamaProvider(HttpProvider):
    """Translates to and from Ollama's chat API. `think` is off unless asked, so that
    short judge answers do not come back empty with `done_reason: length`."""

    path = "/api/chat"

    def payload(self, request: ChatRequest, upstream_model: str) -> dict[str, Any]:
        return {
            "model": upstream_model,
            "messages": [{"role": m.role, "content": m.content} for m in request.messages],
            **ollama_options(request),
        }

    def parse(self, body: dict[str, Any]) -> dict[str, Any]:
        content = body["message"]["content"]
        if not isinstance(content, str):
            raise TypeError("message.content is not a string")
        return {"content": content, **ollama_usage(body)}
