"""A batch's output lines, in chatq's form or the OpenAI Batch API's.

chatq:  {"custom_id", "response": ChatResponse | null, "error": {"type", "message"} | null}
openai: {"id", "custom_id", "response": {"status_code", "request_id", "body":
         <chat.completion>} | null, "error": {"code", "message"} | null}
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["FORMATS", "Result", "completion", "format_line", "write_results", "write_rows"]

FORMATS = ("chatq", "openai")
PENDING_ERROR = {"type": "Pending", "message": "no result yet (the batch is still running)"}


@dataclass(frozen=True)
class Result:
    """One line's outcome as collected: a response or an error (never both)."""

    custom_id: str
    line: int
    task_id: str | None
    response: dict[str, Any] | None
    error: dict[str, Any] | None


def format_line(result: Result, form: str = "chatq") -> dict[str, Any]:
    """The output object for one line in `form` ("chatq" or "openai")."""
    if form == "openai":
        return _openai(result)
    return {"custom_id": result.custom_id, "response": result.response, "error": result.error}


def _openai(result: Result) -> dict[str, Any]:
    request_id = result.task_id or f"line-{result.line}"
    out: dict[str, Any] = {"id": f"batch_req_{request_id}", "custom_id": result.custom_id}
    if result.response is None:
        error = result.error or PENDING_ERROR
        out.update(response=None, error={"code": error["type"], "message": error["message"]})
        return out
    body = completion(result.response, request_id)
    out.update(response={"status_code": 200, "request_id": request_id, "body": body}, error=None)
    return out


def completion(r: dict[str, Any], request_id: str) -> dict[str, Any]:
    """A ChatResponse (as a dict) as OpenAI's `chat.completion` object."""
    body = {
        "id": f"chatcmpl-{request_id}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": r.get("model"),
        "choices": [{
            "index": 0,
            "message": _message(r),
            "finish_reason": r.get("finish_reason") or "stop",
        }],
        "usage": {
            "prompt_tokens": r.get("input_tokens", 0),
            "completion_tokens": r.get("output_tokens", 0),
            "total_tokens": r.get("input_tokens", 0) + r.get("output_tokens", 0),
        },
    }  # fmt: skip
    extra = {"cached": True} if r.get("cached") else {}
    if r.get("notes"):
        extra["notes"] = r["notes"]  # a fallback taken, for instance: never silent
    if extra:
        body["chatq"] = extra
    return body


def _message(r: dict[str, Any]) -> dict[str, Any]:
    """The answer as OpenAI's assistant message: content null beside tool calls when
    there is no text, as OpenAI sends it."""
    message: dict[str, Any] = {"role": "assistant", "content": r.get("content", "")}
    if r.get("tool_calls"):
        message.update(content=r.get("content") or None, tool_calls=r["tool_calls"])
    return message


def write_results(results: Iterable[Result], path: Path, *, form: str = "chatq") -> int:
    """Write one line per result to `path` atomically; how many lines."""
    return write_rows((format_line(r, form) for r in results), path)


def write_rows(rows: Iterable[dict[str, Any]], path: Path) -> int:
    """Write one JSON line per row to `path` atomically (a temporary file, then a
    rename), so a reader never sees half a file; how many lines."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    count = 0
    try:
        with open(tmp, "w", encoding="utf-8") as handle:
            for row in rows:
                handle.write(json.dumps(row, ensure_ascii=False))
                handle.write("\n")
                count += 1
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return count
