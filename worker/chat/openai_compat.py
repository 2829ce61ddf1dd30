"""The OpenAI-compatible chat completions API, shared by OpenRouter, OpenCode and Kimi.

One implementation; each provider is this class pinned to its base URL, prefix and key
by the builder.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from chatq.errors import MalformedResponse, UpstreamUnavailable
from worker.chat.provider import HttpProvider
from worker.chat.schema import schema_name
from worker.chat.types import SAMPLING, ChatRequest, Message
from worker.chat.upstream_errors import error_in_answer

__all__ = ["OpenAICompatProvider"]


class OpenAICompatProvider(HttpProvider):
    """Translates to and from `POST {base}/chat/completions`."""

    path = "/chat/completions"
    #: What the chat completions API itself knows; a provider row may add more (top_k and
    #: min_p for OpenRouter).
    honours = frozenset(SAMPLING) - {"top_k", "min_p"}

    def payload(self, request: ChatRequest, upstream_model: str) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": upstream_model,
            "messages": [_message(m) for m in request.messages],
            "stream": self.stream,
        }
        if self.stream:
            body["stream_options"] = {"include_usage": True}  # the last event carries usage
        if request.temperature is not None:
            body["temperature"] = request.temperature
        if request.max_tokens is not None:
            body["max_tokens"] = request.max_tokens
        body.update(request.sampling())  # check() refused any this provider cannot honour
        if request.tools:
            body["tools"] = request.tools
        if request.tool_choice is not None:
            body["tool_choice"] = request.tool_choice
        if request.format == "json":
            body["response_format"] = {"type": "json_object"}
        elif request.format is not None:
            schema = {"name": schema_name(request.format), "schema": request.format,
                      "strict": True}  # fmt: skip
            body["response_format"] = {"type": "json_schema", "json_schema": schema}
        return body

    def parse(self, body: dict[str, Any]) -> dict[str, Any]:
        choices = body.get("choices")
        if body.get("error"):  # in a 200: OpenRouter's envelope, with or without choices
            raise error_in_answer(self.name, body["error"], midway=bool(choices))
        if not choices:
            raise MalformedResponse(f"{self.name} answered with no choices",
                                    provider=self.name, excerpt=str(body))  # fmt: skip
        choice = choices[0]
        if choice.get("finish_reason") == "error":
            raise UpstreamUnavailable(f"{self.name}: the answer ended in an error "
                                      "(finish_reason \"error\", no reason given)",
                                      provider=self.name, excerpt=str(body))  # fmt: skip
        message = choice.get("message") or {}
        content = message.get("content")
        if content is not None and not isinstance(content, str):
            raise TypeError("choices[0].message.content is not a string")
        calls = message.get("tool_calls") or None
        if calls is not None and not all(isinstance(c.get("function"), dict) for c in calls):
            raise TypeError("choices[0].message.tool_calls has a call without a function")
        usage = body.get("usage") or {}
        return {
            "content": content or "",
            "tool_calls": calls,
            "input_tokens": int(usage.get("prompt_tokens") or 0),
            "output_tokens": int(usage.get("completion_tokens") or 0),
            "finish_reason": choice.get("finish_reason"),
            **_reported_cost(usage),
        }

    def assemble(self, lines: Iterator[str]) -> dict[str, Any]:
        """Server-sent events (`data: {chunk}` ... `data: [DONE]`) as one completion; tool
        calls come in pieces by index (id and name first, then the arguments' text).

        Raises:
            UpstreamError: (or a subclass) an event carries an error (OpenRouter's
                envelope, as `upstream_errors.error_in_answer` reads it).
        """
        content: list[str] = []
        calls: dict[int, dict[str, Any]] = {}
        finish = model = None
        usage: dict[str, Any] = {}
        seen = False
        for line in lines:
            if not line.startswith("data:"):
                continue  # blank lines, `: keep-alive` comments, event and id fields
            data = line[5:].strip()
            if data == "[DONE]":
                break
            chunk = json.loads(data)
            if not isinstance(chunk, dict):
                raise ValueError(f"expected an object, got {type(chunk).__name__}")
            if chunk.get("error"):  # an error event, or beside finish_reason "error"
                raise error_in_answer(self.name, chunk["error"], midway=seen)
            model = chunk.get("model") or model
            usage = chunk.get("usage") or usage
            for choice in chunk.get("choices") or []:
                seen = True
                delta = choice.get("delta") or {}
                content.append(delta.get("content") or "")
                for piece in delta.get("tool_calls") or ():
                    _add_call_piece(calls, piece)
                finish = choice.get("finish_reason") or finish
        else:
            if finish is None:
                raise MalformedResponse(
                    f"{self.name}: the streamed answer ended before it was done",
                    provider=self.name,
                )
        message: dict[str, Any] = {"role": "assistant", "content": "".join(content)}
        if calls:
            message["tool_calls"] = [calls[i] for i in sorted(calls)]
        choices = [{"index": 0, "message": message, "finish_reason": finish}] if seen else []
        return {"model": model, "choices": choices, "usage": usage}


def _message(message: Message) -> dict[str, Any]:
    """A message as the chat completions API takes it: as given, `content` null beside
    tool calls."""
    out = message.model_dump(mode="json", exclude_none=True)
    out.setdefault("content", None)
    return out


def _add_call_piece(calls: dict[int, dict[str, Any]], piece: dict[str, Any]) -> None:
    """Fold one streamed piece of a tool call into the call of its index."""
    index = piece.get("index", len(calls))
    call = calls.setdefault(index, {"id": None, "type": "function",
                                    "function": {"name": "", "arguments": ""}})  # fmt: skip
    call["id"] = piece.get("id") or call["id"]
    function = piece.get("function") or {}
    call["function"]["name"] += function.get("name") or ""
    call["function"]["arguments"] += function.get("arguments") or ""


def _reported_cost(usage: dict[str, Any]) -> dict[str, float]:
    """The cost the provider reported with its usage (OpenRouter's `usage.cost`), if any."""
    cost = usage.get("cost")
    if isinstance(cost, (int, float)) and not isinstance(cost, bool) and cost >= 0:
        return {"cost": float(cost)}
    return {}
