"""Reading a batch file: JSONL lines in the OpenAI Batch API form or chatq's plain form.

Both forms may be mixed freely in one file:

    {"custom_id": "q1", "method": "POST", "url": "/v1/chat/completions",
     "body": {"model": "m", "messages": [...], "max_tokens": 50}}
    {"custom_id": "q2", "model": "mock/echo", "messages": [...], "temperature": 0}

The file is streamed, never loaded whole. Each line becomes a `Line`: its request, or
the error that stops it (with its line number), so one bad line never sinks the rest.
Blank lines are skipped; a line's number is its physical line in the file.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from chatq.errors import ChatqError, InvalidRequest
from worker.chat.types import ChatRequest

__all__ = ["Line", "file_digest", "read_lines", "request_from_json"]

#: The OpenAI Batch API endpoint chatq runs; any other `url` is refused on its line.
CHAT_URL = "/v1/chat/completions"
#: OpenAI request parameters chatq accepts and does not send: bookkeeping for OpenAI's
#: own platform (user, metadata, store, service_tier, stream_options) and options no
#: chatq provider is asked for yet. Sampling options (seed, top_p, stop, ...) are not
#: among them: they travel, or the line is refused naming the one its provider lacks.
_IGNORED_OPENAI = frozenset(
    {"logit_bias", "user", "metadata", "store", "service_tier", "parallel_tool_calls",
     "logprobs", "top_logprobs", "stream_options", "reasoning_effort"}
)  # fmt: skip
_CHATQ_FIELDS = frozenset(ChatRequest.model_fields)


@dataclass(frozen=True)
class Line:
    """One line of a batch: `request` to run, or `error` saying why it cannot run.

    `error` is `{"type", "message", "line"}`; `type` is a chatq error name.
    """

    number: int
    custom_id: str
    request: ChatRequest | None = None
    error: dict[str, Any] | None = None

    @classmethod
    def failed(cls, number: int, custom_id: str, error: ChatqError) -> Line:
        message = error.message
        if not message.startswith("line "):
            message = f"line {number}: {message}"
        return cls(number, custom_id, None, {
            "type": type(error).__name__, "message": message, "line": number,
        })  # fmt: skip

    def duplicate(self) -> Line:
        """This line, refused because its custom_id was already used."""
        return Line.failed(
            self.number,
            self.custom_id,
            InvalidRequest(f"custom_id {self.custom_id!r} is used by an earlier line"),
        )


def file_digest(path: Path) -> str:
    """The sha256 of a file's bytes, read in blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_lines(
    path: Path,
    *,
    model: str | None = None,
    prepare: Callable[[ChatRequest], ChatRequest] | None = None,
) -> Iterator[Line]:
    """Each non-blank line of `path` as a Line, in order.

    Args:
        model: fills a line that names no model.
        prepare: validates and routes a request (Producer.prepare); raises a ChatqError
            (ProviderNotFound, say) that becomes the line's error.

    custom_id uniqueness is not checked here (the caller checks it against Redis, so
    memory stays bounded); a missing custom_id defaults to the line number.
    """
    with open(path, "rb") as handle:
        for number, raw in enumerate(handle, start=1):
            if not raw.strip():
                continue
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as exc:  # its own error: never a silently mangled prompt
                yield Line.failed(
                    number,
                    str(number),
                    InvalidRequest(
                        f"not valid UTF-8 (byte 0x{raw[exc.start]:02x} at position {exc.start})"
                    ),
                )
                continue
            yield parse_line(text, number, model=model, prepare=prepare)


def parse_line(
    text: str,
    number: int,
    *,
    model: str | None = None,
    prepare: Callable[[ChatRequest], ChatRequest] | None = None,
) -> Line:
    """One line of text as a Line (see `read_lines`)."""
    try:
        data = json.loads(text)
    except ValueError as exc:
        return Line.failed(number, str(number), InvalidRequest(f"not valid JSON ({exc})"))
    if not isinstance(data, dict):
        kind = type(data).__name__
        return Line.failed(
            number, str(number), InvalidRequest(f"a line must be a JSON object, not {kind}")
        )
    custom_id = data.get("custom_id")
    if custom_id is None or custom_id == "":
        custom_id = str(number)
    elif isinstance(custom_id, (int, float)) and not isinstance(custom_id, bool):
        custom_id = str(custom_id)
    elif not isinstance(custom_id, str):
        return Line.failed(number, str(number), InvalidRequest("custom_id must be a string"))
    try:
        request = request_from_json(data, model=model)
        if prepare is not None:
            request = prepare(request)
    except ChatqError as exc:
        return Line.failed(number, custom_id, exc)
    return Line(number, custom_id, request)


def request_from_json(data: dict[str, Any], *, model: str | None = None) -> ChatRequest:
    """A ChatRequest from one line's object, in either form.

    Raises:
        InvalidRequest: naming the field that is wrong.
    """
    if "body" in data or "url" in data or "method" in data:
        fields = _openai_fields(data)
    else:
        fields = {k: v for k, v in data.items() if k not in ("custom_id", "metadata")}
        if "response_format" in fields:
            fields["format"] = _format(fields.pop("response_format"))
    if "messages" not in fields:
        raise InvalidRequest("the line has no messages", field="messages")
    if not fields.get("model") and model:
        fields["model"] = model
    if not fields.get("model"):
        raise InvalidRequest("the line names no model (give one, or use --model)", field="model")
    if fields.get("format") is None:
        fields.pop("format", None)
    return ChatRequest.parse(fields)


def _openai_fields(data: dict[str, Any]) -> dict[str, Any]:
    method = data.get("method", "POST")
    if str(method).upper() != "POST":
        raise InvalidRequest(f"method must be POST, not {method!r}", field="method")
    url = data.get("url", CHAT_URL)
    if url not in (CHAT_URL, "/chat/completions"):
        raise InvalidRequest(f"url {url!r} is not supported (only {CHAT_URL})", field="url")
    body = data.get("body")
    if not isinstance(body, dict):
        raise InvalidRequest("body must be a JSON object", field="body")
    fields: dict[str, Any] = {}
    for key, value in body.items():
        if key in _IGNORED_OPENAI or value is None:
            continue
        if key == "messages":
            fields["messages"] = _openai_messages(value)
        elif key in ("max_tokens", "max_completion_tokens"):
            fields["max_tokens"] = value
        elif key == "response_format":
            fields["format"] = _format(value)
        elif key == "n":
            if value != 1:
                raise InvalidRequest("n must be 1 (one answer per line)", field="body.n")
        elif key == "stream":
            if value:
                raise InvalidRequest("stream must be false in a batch", field="body.stream")
        elif key in _CHATQ_FIELDS:
            fields[key] = value
        else:
            raise InvalidRequest(f"body.{key} is not supported", field=f"body.{key}")
    return fields


def _openai_messages(messages: Any) -> Any:
    """OpenAI messages as chatq's: `developer` as `system`, a list of text parts joined
    into text, parts with images kept as they are, an assistant's `tool_calls` (content
    null or absent) and a tool's `tool_call_id` kept. Other fields (`name`, `refusal`,
    ...) are left out; ChatRequest names any part type it does not know."""
    if not isinstance(messages, list):
        return messages
    out = []
    for message in messages:
        if not isinstance(message, dict):
            out.append(message)
            continue
        role = message.get("role")
        content = message.get("content")
        if isinstance(content, list) and all(
            isinstance(p, dict) and p.get("type") == "text" for p in content
        ):
            content = "".join(str(p.get("text", "")) for p in content)
        kept = {"role": "system" if role == "developer" else role, "content": content}
        for key in ("tool_calls", "tool_call_id"):
            if message.get(key) is not None:
                kept[key] = message[key]
        out.append(kept)
    return out


def _format(response_format: Any) -> str | dict[str, Any] | None:
    """OpenAI's `response_format` as `ChatRequest.format`: "json" for `json_object`, the
    schema itself for `json_schema` (its `name` kept as the schema's title when it has
    none, so that it is sent upstream again; `strict` is always asked for)."""
    if response_format in (None, "text"):
        return None
    if response_format == "json":
        return "json"
    kind = response_format.get("type") if isinstance(response_format, dict) else None
    if kind == "text":
        return None
    if kind == "json_object":
        return "json"
    if kind == "json_schema":
        spec = response_format.get("json_schema")
        schema = spec.get("schema") if isinstance(spec, dict) else None
        if not isinstance(schema, dict):
            raise InvalidRequest("response_format.json_schema.schema must be a JSON Schema "
                                 "object", field="response_format")  # fmt: skip
        name = spec.get("name")
        if isinstance(name, str) and name and "title" not in schema:
            schema = {"title": name, **schema}
        return schema
    raise InvalidRequest(f"response_format {response_format!r} is not supported",
                         field="response_format")  # fmt: skip
