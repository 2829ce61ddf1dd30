"""JSON Schemas in requests: checked when a request is made, named as the OpenAI family
wants them."""

from __future__ import annotations

import re
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError

__all__ = ["check_schema", "schema_name"]

_NAME = re.compile(r"[^a-zA-Z0-9_-]+")


def check_schema(schema: dict[str, Any]) -> dict[str, Any]:
    """`schema`, once known to be a valid JSON Schema (draft 2020-12).

    Raises:
        ValueError: naming what is wrong with it.
    """
    try:
        Draft202012Validator.check_schema(schema)
    except SchemaError as exc:
        where = "/".join(str(p) for p in exc.path) or "its top"
        raise ValueError(f"not a valid JSON Schema at {where}: {exc.message}") from None
    return schema


def schema_name(schema: dict[str, Any]) -> str:
    """The name the OpenAI family wants beside a schema: its title, cut to the letters
    that API allows (`a-z A-Z 0-9 _ -`, 64 at most), else "response"."""
    title = schema.get("title")
    name = _NAME.sub("_", title).strip("_")[:64] if isinstance(title, str) else ""
    return name or "response"
