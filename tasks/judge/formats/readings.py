"""What reading a judge's answer yields: a score on a scale, or a pairwise verdict."""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = [
    "OUT_OF_RANGE",
    "SCORED",
    "TIE",
    "TRUNCATED",
    "UNPARSEABLE",
    "A",
    "B",
    "Scale",
    "ScoreReading",
    "Verdict",
    "parse_scale",
]

SCORED, OUT_OF_RANGE, UNPARSEABLE, TRUNCATED = "scored", "out_of_range", "unparseable", "truncated"
A, B, TIE = "A", "B", "tie"
STRONG, WEAK = "strong", "weak"
NUM = r"[-+]?\d+(?:\.\d+)?"


@dataclass(frozen=True)
class Scale:
    """Inclusive bounds of a score scale, e.g. 1-10."""

    low: float
    high: float

    def __contains__(self, value: float) -> bool:
        return self.low <= value <= self.high


def parse_scale(text: str) -> Scale:
    """`1-10` as Scale(1, 10).

    Raises:
        ValueError: not `LOW-HIGH` with LOW < HIGH.
    """
    match = re.fullmatch(r"\s*(" + NUM + r")\s*[-:]\s*(" + NUM + r")\s*", text)
    if not match or float(match[1]) >= float(match[2]):
        raise ValueError(f"a scale is LOW-HIGH, e.g. 1-10, not {text!r}")
    return Scale(float(match[1]), float(match[2]))


@dataclass(frozen=True)
class ScoreReading:
    """status: scored, out_of_range or unparseable; score only when scored; value is
    the number read (also when out of range); rule names the extraction rule that read
    it; reason says why nothing was read (a refusal, conflicting verdicts, ...)."""

    status: str
    score: float | None = None
    value: float | None = None
    rule: str | None = None
    reason: str | None = None

    @classmethod
    def of(cls, value: float, scale: Scale, rule: str) -> ScoreReading:
        if value not in scale:
            return cls(OUT_OF_RANGE, value=value, rule=rule)
        return cls(SCORED, score=value, value=value, rule=rule)

    @classmethod
    def none(cls, reason: str, rule: str | None = None) -> ScoreReading:
        return cls(UNPARSEABLE, rule=rule, reason=reason)


@dataclass(frozen=True)
class Verdict:
    """A pairwise verdict: winner "A", "B", "tie" or None (unreadable).

    strength: "strong" or "weak" when the judge graded it (Arena-Hard's `>>` and `>`),
    else None; label: the judge's own label (`A>>B`, `[[C]]`, `8 6`); scores: (A, B)
    when the judge scored both answers (JudgeLM, MT-Bench's two-score format).
    """

    winner: str | None
    strength: str | None = None
    label: str | None = None
    rule: str | None = None
    reason: str | None = None
    scores: tuple[float, float] | None = None

    @classmethod
    def none(cls, reason: str, rule: str | None = None) -> Verdict:
        return cls(None, rule=rule, reason=reason)
