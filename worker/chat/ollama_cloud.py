"""Ollama Cloud: `POST /api/generate` with a Bearer key, the chat flattened to one prompt."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from worker.chat.ollama import assemble_ndjson, ollama_options, ollama_usage
from worker.chat.provider import HttpProvider
from worker.chat.types import ChatRequest, Message

__all__ = ["OllamaCloudProvider", "flatten"]

_LABELS = {"user": "User", "assistant": "Assistant", "tool": "Tool"}


def flatten(messages: list[Message]) -> tuple[str | None, str]:
    """(system, prompt): system messages joined, the rest as one prompt.

    A lone user message is sent as it is; a conversation becomes labelled turns
    (`User: ...`, `Assistant: ...`) separated by blank lines.
    """
    system = "\n\n".join(m.text for m in messages if m.role == "system") or None
    turns = [m for m in messages if m.role != "system"]
    if len(turns) == 1 and turns[0].role == "user":
        return system, turns[0].text
    return system, "\n\n".join(f"{_LABELS[m.role]}: {m.text}" for m in turns)


class OllamaCloudProvider(HttpProvider):
    """Translates to and from Ollama Cloud's generate API."""

    path = "/api/generate"

    def refuse_unsupported(self, request: ChatRequest) -> None:
        # The generate API takes one prompt: a conversation's tool calls, tools and images
        # would not survive flattening.
        if request.tools or request.tool_choice is not None:
            raise self.cannot("tools (its generate API has none)", "tools")
        for index, message in enumerate(request.messages):
            if message.tool_calls:
                raise self.cannot("an assistant's tool calls (its generate API takes one "
                                  "prompt)", f"messages.{index}.tool_calls")  # fmt: skip
            if message.images:
                raise self.cannot("images in a chat (its generate API takes one prompt)",
                                  f"messages.{index}.content")  # fmt: skip

    def payload(self, request: ChatRequest, upstream_model: str) -> dict[str, Any]:
        system, prompt = flatten(request.messages)
        body: dict[str, Any] = {"model": upstream_model, "prompt": prompt}
        if system is not None:
            body["system"] = system
        return {**body, **ollama_options(request, stream=self.stream)}

    def assemble(self, lines: Iterator[str]) -> dict[str, Any]:
        body = assemble_ndjson(self, lines, lambda o: o.get("response"))
        return {**body, "response": body.pop("_text")}

    def parse(self, body: dict[str, Any]) -> dict[str, Any]:
        content = body["response"]
        if not isinstance(content, str):
            raise TypeError("response is not a string")
        return {"content": content, **ollama_usage(body)}
