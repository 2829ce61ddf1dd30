"""A judge prompt template: text with `{field}` placeholders filled from a JSONL line.

`{{` and `}}` are literal braces. A placeholder names a field of the line; a field the
line lacks is that line's error. Non-string values are filled as JSON.
"""

from __future__ import annotations

import json
import string
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from chatq.errors import InvalidRequest

__all__ = ["Template"]


@dataclass(frozen=True)
class Template:
    """A parsed template: its text and the fields it uses, in order of first use."""

    text: str
    fields: tuple[str, ...]

    @classmethod
    def parse(cls, text: str) -> Template:
        """Raises:
        InvalidRequest: a placeholder is malformed (`{}`, `{a!r}`, `{a:>3}`, an
            unmatched brace).
        """
        fields: list[str] = []
        try:
            parts = list(string.Formatter().parse(text))
        except ValueError as exc:
            raise InvalidRequest(f"template: {exc}") from None
        for _literal, name, spec, conversion in parts:
            if name is None:
                continue
            if not name or spec or conversion:
                raise InvalidRequest(f"template: placeholder {{{name}}} must be a plain name")
            if name not in fields:
                fields.append(name)
        return cls(text, tuple(fields))

    @classmethod
    def load(cls, path: Path) -> Template:
        return cls.parse(Path(path).read_text(encoding="utf-8"))

    def fill(self, values: dict[str, Any], **overrides: Any) -> str:
        """The template with each placeholder replaced by its field's value.

        Raises:
            InvalidRequest: fields are missing (all of them are named).
        """
        merged = {**values, **overrides}
        missing = [f for f in self.fields if f not in merged or merged[f] is None]
        if missing:
            raise InvalidRequest(
                "missing field(s) for the template: " + ", ".join(missing), field=missing[0]
            )
        return self.text.format_map({f: _text(merged[f]) for f in self.fields})


def _text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
