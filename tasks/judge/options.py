"""What shapes a judge run: the requests it sends, and how their answers are read."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

from tasks.judge.formats import Scale
from tasks.judge.template import Template

__all__ = ["DEFAULT_MAX_TOKENS", "MODES", "JudgeOptions"]

MODES = ("score", "pairwise")
#: Room for a judge that reasons before its verdict, as MT-Bench, Arena-Hard and
#: Prometheus judges do; a bare number needs a few tokens, an explanation hundreds.
DEFAULT_MAX_TOKENS = 1024


@dataclass(frozen=True)
class JudgeOptions:
    """A judge run's options.

    The request options (model, template, mode, scale, system, max_tokens, fields) make
    the batch id; the reading options (parser, grades) do not, so reading the same
    answers another way pays for nothing again.
    """

    model: str
    template: Template
    mode: str = "score"
    scale: Scale = field(default_factory=lambda: Scale(1, 10))
    system: str | None = None
    max_tokens: int | None = None
    a_field: str = "answer_a"
    b_field: str = "answer_b"
    parser: str = "auto"
    grades: dict[str, float] | None = field(default=None, compare=False)
    preset: str | None = None

    @property
    def tokens(self) -> int:
        """max_tokens of each judge request."""
        return self.max_tokens or DEFAULT_MAX_TOKENS

    def fingerprint(self) -> str:
        parts = [self.model, self.template.text, self.mode, repr(self.scale), self.system or "",
                 str(self.tokens), self.a_field, self.b_field]  # fmt: skip
        return hashlib.sha256("\x00".join(parts).encode("utf-8")).hexdigest()
