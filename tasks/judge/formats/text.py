"""Shared reading helpers: a judge's visible answer, and JSON read leniently.

Judges write JSON as people do: inside a ```json fence, after a sentence, with a
trailing comma or a raw newline inside a string. `find_json` reads all of those.
"""

from __future__ import annotations

import json
import re
from typing import Any

__all__ = ["find_json", "visible", "without_fences"]

_THINK = re.compile(r"<think>.*?</think>", re.S | re.I)
_FENCE = re.compile(r"```[ \t]*(?:json|JSON)?[ \t]*\n?(.*?)```", re.S)
_TRAILING_COMMA = re.compile(r",(\s*[}\]])")


def visible(text: str | None) -> str:
    """The answer without reasoning-model `<think>` blocks, stripped."""
    return _THINK.sub("", text or "").strip()


def without_fences(text: str) -> str:
    """The text with code fences' markers removed (their content kept)."""
    return _FENCE.sub(lambda m: m.group(1), text)


def find_json(text: str) -> Any:
    """The JSON document a judge answered with, or None.

    Tried in order: each fenced block (last first), the whole answer, and the span from
    its first `{` to its last `}`. Each is read leniently: raw control characters in
    strings are accepted and trailing commas before `}` or `]` dropped.
    """
    candidates = [*[m.group(1) for m in _FENCE.finditer(text)][::-1], text]
    for candidate in candidates:
        candidate = candidate.strip()
        if candidate.startswith(("{", "[")):
            doc = _loads(candidate)
            if doc is not None:
                return doc
        start, end = candidate.find("{"), candidate.rfind("}")
        if 0 <= start < end:
            doc = _loads(candidate[start : end + 1])
            if doc is not None:
                return doc
    return None


def _loads(text: str) -> Any:
    for attempt in (text, _drop_trailing_commas(text)):
        try:
            return json.loads(attempt, strict=False)
        except ValueError:
            continue
    return None


def _drop_trailing_commas(text: str) -> str:
    """Trailing commas removed outside strings (a comma inside a string stays)."""
    out, in_string, escaped = [], False, False
    for i, char in enumerate(text):
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char == "," and _TRAILING_COMMA.match(text, i):
            continue
        out.append(char)
    return "".join(out)
