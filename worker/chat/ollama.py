"""Local Ollama: `POST /api/chat`, streamed (one JSON object a line) or in one piece."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from typing import Any

from chatq.errors import MalformedResponse, UpstreamUnavailable
from chatq.redaction import redact
from worker.chat.provider import HttpProvider
from worker.chat.types import ChatRequest, Message

__all__ = ["OllamaProvider", "assemble_ndjson", "ollama_options"]

#: An image Ollama can take: base64 data in a data: URL.
_BASE64_IMAGE = re.compile(r"^data:image/[\w.+-]+;base64,[A-Za-z0-9+/=\s]+$")


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
    non-streamed body: the pieces `text(obj)` joined, the tool calls of every line
    gathered, the counts of the last object."""
    pieces: list[str] = []
    calls: list[Any] = []
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
        calls.extend((obj.get("message") or {}).get("tool_calls") or ())
        if obj.get("done"):
            return {**obj, "_text": "".join(pieces), "_tool_calls": calls}
    raise MalformedResponse(f"{provider.name}: the streamed answer ended before it was done",
                            provider=provider.name)  # fmt: skip


def ollama_message(message: Message, tool_names: dict[str, str]) -> dict[str, Any]:
    """One message as Ollama's chat API takes it: text in `content`, images as base64 in
    `images`, tool-call arguments as objects, a tool reply named by its function."""
    out: dict[str, Any] = {"role": message.role, "content": message.text}
    if message.images:
        out["images"] = [url.partition(",")[2] for url in message.images]
    if message.tool_calls:
        out["tool_calls"] = [
            {"function": {"name": c.function.name, "arguments": json.loads(c.function.arguments)}}
            for c in message.tool_calls
        ]
    if message.role == "tool" and message.tool_call_id in tool_names:
        out["tool_name"] = tool_names[message.tool_call_id]
    return out


def openai_tool_calls(calls: list[Any]) -> list[dict[str, Any]] | None:
    """Ollama's tool calls (arguments as an object, an id only from newer servers) in
    OpenAI's form (arguments as JSON text, an id always)."""
    out = []
    for index, call in enumerate(calls):
        function = call["function"]
        arguments = function.get("arguments")
        if not isinstance(arguments, str):
            arguments = json.dumps(arguments if arguments is not None else {})
        call_id = call.get("id") or f"call_{index}"
        out.append({"id": call_id, "type": "function",
                    "function": {"name": function["name"], "arguments": arguments}})  # fmt: skip
    return out or None


class OllamaProvider(HttpProvider):
    """Translates to and from Ollama's chat API. `think` is off unless asked, so that
    short judge answers do not come back empty with `done_reason: length`."""

    path = "/api/chat"

    def refuse_unsupported(self, request: ChatRequest) -> None:
        if request.tool_choice is not None:
            raise self.cannot("tool_choice (its chat API has none; leave it out)", "tool_choice")
        for index, message in enumerate(request.messages):
            for url in message.images:
                if not _BASE64_IMAGE.match(url):
                    raise self.cannot(
                        "an image by URL: it takes images as base64 only (send a "
                        "data:image/...;base64,... URL; chatq fetches nothing)",
                        f"messages.{index}.content",
                    )
            for call in message.tool_calls or ():
                try:
                    arguments = json.loads(call.function.arguments)
                except ValueError:
                    arguments = None
                if not isinstance(arguments, dict):
                    raise self.cannot(
                        f"tool call {call.id!r}: its arguments must be a JSON object",
                        f"messages.{index}.tool_calls",
                    )

    def payload(self, request: ChatRequest, upstream_model: str) -> dict[str, Any]:
        names = {c.id: c.function.name for m in request.messages for c in m.tool_calls or ()}
        body: dict[str, Any] = {
            "model": upstream_model,
            "messages": [ollama_message(m, names) for m in request.messages],
            **ollama_options(request, stream=self.stream),
        }
        if request.tools:
            body["tools"] = request.tools
        return body

    def assemble(self, lines: Iterator[str]) -> dict[str, Any]:
        body = assemble_ndjson(self, lines, lambda o: (o.get("message") or {}).get("content"))
        message = {"role": "assistant", "content": body.pop("_text")}
        calls = body.pop("_tool_calls")
        if calls:
            message["tool_calls"] = calls
        return {**body, "message": message}

    def parse(self, body: dict[str, Any]) -> dict[str, Any]:
        message = body["message"]
        content = message["content"]
        if not isinstance(content, str):
            raise TypeError("message.content is not a string")
        fields = {"content": content, **ollama_usage(body)}
        calls = openai_tool_calls(message.get("tool_calls") or [])
        if calls:
            # Ollama says `stop`; what a caller of the OpenAI form looks for is this.
            fields.update(tool_calls=calls, finish_reason="tool_calls")
        return fields
