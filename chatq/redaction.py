"""Keeping secrets out of messages, excerpts, logs and results."""

from __future__ import annotations

import re

__all__ = ["EXCERPT_LIMIT", "excerpt", "redact", "remember_secret"]

EXCERPT_LIMIT = 300

# Keys and Authorization values must never reach a message, a log line or a result.
_SECRET_PATTERNS = [
    (
        re.compile(r"(?i)(authorization[\"']?\s*[:=]\s*[\"']?)(bearer\s+)?[^\s\"',}]+"),
        r"\1\2[redacted]",
    ),
    (re.compile(r"(?i)\bbearer\s+[A-Za-z0-9._~+/=-]+"), "Bearer [redacted]"),
    (re.compile(r"\bsk-[A-Za-z0-9_-]{8,}"), "sk-[redacted]"),
    (
        re.compile(
            r"(?i)((?:api[_-]?key|access[_-]?token|secret)[\"']?\s*[:=]\s*[\"']?)[^\s\"',}&]+"
        ),
        r"\1[redacted]",
    ),
    (re.compile(r"(?i)(\b[a-z][a-z0-9+.-]*://[^:/@\s]*:)[^@\s]+@"), r"\1[redacted]@"),
]
_known_secrets: set[str] = set()


def remember_secret(value: str) -> None:
    """Redact this exact value wherever it appears from now on (the configured API keys)."""
    if len(value) >= 6:
        _known_secrets.add(value)


def redact(text: str) -> str:
    """`text` with API keys, Authorization values and URL passwords replaced."""
    for secret in _known_secrets:
        if secret in text:
            text = text.replace(secret, "[redacted]")
    for pattern, replacement in _SECRET_PATTERNS:
        text = pattern.sub(replacement, text)
    return text


def excerpt(text: str) -> str:
    """At most EXCERPT_LIMIT characters of an upstream body, secrets redacted."""
    text = redact(str(text))
    return text if len(text) <= EXCERPT_LIMIT else text[: EXCERPT_LIMIT - 1] + "…"
