"""The wire shapes of the fake upstream's good answers: each API's body, and the same
answer streamed as that API streams it (Ollama's NDJSON, OpenAI's server-sent events)."""

from __future__ import annotations

import json
from typing import Any

__all__ = ["ok_body", "stream_events", "stream_type"]


def stream_events(path: str, ok: dict[str, Any], pieces: int) -> tuple[list[bytes], str]:
    """The answer `ok` (a non-streamed body of `path`'s API) as the events of a stream."""
    if path.endswith("/api/chat") or path.endswith("/api/generate"):
        key = "response" if path.endswith("/api/generate") else "message"
        text = ok["response"] if key == "response" else ok["message"]["content"]
        out = []
        for part in _split(text, pieces):
            piece = part if key == "response" else {"role": "assistant", "content": part}
            out.append({"model": ok["model"], key: piece, "done": False})
        if key == "message" and ok["message"].get("tool_calls"):  # in a piece of their own
            calls = {"role": "assistant", "content": "", "tool_calls": ok["message"]["tool_calls"]}
            out.append({"model": ok["model"], key: calls, "done": False})
        last = {**ok, key: "" if key == "response" else {"role": "assistant", "content": ""}}
        out.append(last)
        return [json.dumps(o).encode() + b"\n" for o in out], stream_type(path)
    message = ok["choices"][0]["message"]
    base = {"id": ok["id"], "object": "chat.completion.chunk", "model": ok["model"]}
    chunks = [{**base, "choices": [{"index": 0, "delta": {"role": "assistant", "content": part},
                                    "finish_reason": None}]}
              for part in _split(message["content"] or "", pieces)]  # fmt: skip
    for index, call in enumerate(message.get("tool_calls") or ()):
        # The id and name first, then the arguments' text in pieces, as OpenAI streams.
        head = {"index": index, "id": call["id"], "type": "function",
                "function": {"name": call["function"]["name"], "arguments": ""}}  # fmt: skip
        parts = [{"index": index, "function": {"arguments": p}}
                 for p in _split(call["function"]["arguments"], pieces)]  # fmt: skip
        for p in [head, *parts]:
            delta = {"index": 0, "delta": {"tool_calls": [p]}, "finish_reason": None}
            chunks.append({**base, "choices": [delta]})
    finish = ok["choices"][0]["finish_reason"]
    chunks.append({**base, "choices": [{"index": 0, "delta": {}, "finish_reason": finish}]})
    chunks.append({**base, "choices": [], "usage": ok["usage"]})
    events = [b": keep-alive\n\n"] + [b"data: " + json.dumps(c).encode() + b"\n\n" for c in chunks]
    return [*events, b"data: [DONE]\n\n"], stream_type(path)


def stream_type(path: str) -> str:
    ollama = path.endswith("/api/chat") or path.endswith("/api/generate")
    return "application/x-ndjson" if ollama else "text/event-stream"


def _split(text: str, pieces: int) -> list[str]:
    size = max(1, -(-len(text) // max(1, pieces)))
    return [text[i : i + size] for i in range(0, len(text), size)] or [""]


def ok_body(
    path: str, request: Any, content: str | None, calls: tuple | None = None
) -> dict[str, Any]:
    """A well-formed answer in the wire format of `path`, echoing the last user text (or
    calling tools)."""
    request = request if isinstance(request, dict) else {}
    model = request.get("model", "fake")
    if content is None:
        if "prompt" in request:
            content = str(request.get("prompt"))
        else:
            msgs = [m for m in request.get("messages") or [] if isinstance(m, dict)]
            users = [m.get("content", "") for m in msgs if m.get("role") == "user"]
            content = str(users[-1]) if users else ""
        content = f"echo: {content}"
    prompt_tokens = max(1, len(json.dumps(request)) // 4)
    out_tokens = max(1, len(content) // 4)
    if path.endswith("/api/chat"):
        message: dict[str, Any] = {"role": "assistant", "content": content}
        if calls:
            message["tool_calls"] = [{"function": {"name": n, "arguments": a}} for n, a in calls]
        return {
            "model": model,
            "created_at": "2026-01-01T00:00:00Z",
            "message": message,
            "done": True,
            "done_reason": "stop",
            "prompt_eval_count": prompt_tokens,
            "eval_count": out_tokens,
        }
    if path.endswith("/api/generate"):
        return {
            "model": model,
            "created_at": "2026-01-01T00:00:00Z",
            "response": content,
            "done": True,
            "done_reason": "stop",
            "prompt_eval_count": prompt_tokens,
            "eval_count": out_tokens,
        }
    message = {"role": "assistant", "content": content}
    if calls:
        message = {"role": "assistant", "content": None, "tool_calls": [
            {"id": f"call_{i}abc", "type": "function",
             "function": {"name": n, "arguments": json.dumps(a)}}
            for i, (n, a) in enumerate(calls)]}  # fmt: skip
    return {
        "id": "chatcmpl-fake",
        "object": "chat.completion",
        "created": 1767225600,
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": message,
                "finish_reason": "tool_calls" if calls else "stop",
            }
        ],
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": out_tokens,
            "total_tokens": prompt_tokens + out_tokens,
        },
    }
