"""Structured output: a request's JSON Schema, how it is named upstream, and the check of
an answer against it (the worker's, whatever the provider promised).

`ChatRequest.format` is "json" (any JSON) or a JSON Schema object. An answer to a
schema must parse and validate, else it is an `InvalidAnswer` and the job asks again;
an answer in JSON mode is parsed when it can be, and never re-asked.
"""

from __future__ import annotations

import json
import re
from typing import Any

from jsonschema import Draft202012Validator

from chatq.errors import InvalidAnswer
from worker.chat.types import ChatResponse

__all__ = ["check_answer"]

#: A fenced block around the JSON (```json ... ```), as models in JSON mode may write.
_FENCE = re.compile(r"^\s*```(?:json)?\s*\n(.*)\n\s*```\s*$", re.DOTALL)


def check_answer(response: ChatResponse, fmt: str | dict[str, Any] | None) -> ChatResponse:
    """`response` with its `parsed` value when `fmt` asks for JSON.

    An answer of tool calls is not checked: it asks the caller to run a tool first.

    Raises:
        InvalidAnswer: `fmt` is a schema and the answer is not JSON, or does not match;
            carries the call's tokens, since the call was paid for.
    """
    if fmt is None or response.tool_calls:
        return response
    try:
        value = _loads(response.content)
    except ValueError as exc:
        if fmt == "json":
            return response
        raise _invalid(response, f"the answer is not JSON ({exc})") from None
    if isinstance(fmt, dict):
        error = next(iter(Draft202012Validator(fmt).iter_errors(value)), None)
        if error is not None:
            where = "/".join(str(p) for p in error.absolute_path) or "the answer"
            raise _invalid(response, f"the answer does not match the schema at {where}: "
                           f"{error.message}")  # fmt: skip
    return response.model_copy(update={"parsed": value})


def _loads(content: str) -> Any:
    fenced = _FENCE.match(content)
    return json.loads(fenced.group(1) if fenced else content)


def _invalid(response: ChatResponse, why: str) -> InvalidAnswer:
    return InvalidAnswer(
        f"{response.provider}: {why}",
        provider=response.provider,
        model=response.model,
        excerpt=response.content,
        usage={"input_tokens": response.input_tokens, "output_tokens": response.output_tokens},
    )
