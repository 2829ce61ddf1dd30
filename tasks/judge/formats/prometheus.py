"""Prometheus (prometheus-eval): feedback, then `[RESULT] 4` (absolute, 1-5) or
`[RESULT] A` (relative grading).

Prometheus' own rule, followed here when `[RESULT]` is present: the result is what
follows the marker (an integer for absolute grading; `A` or `B` for relative grading,
which has no tie). Its first parser split the answer on `[RESULT]` and required exactly
two parts; here several markers are accepted only when they all give the same result,
and conflicting ones are unparseable. A number off the scale is out of range (its
parser returns nothing for one outside 1-5).
"""

from __future__ import annotations

import re

from tasks.judge.formats.readings import A, B, Scale, ScoreReading, Verdict

__all__ = ["has_marker", "read_pair", "read_score"]

RULE = "prometheus"
_MARKER = re.compile(r"\[RESULT\]", re.I)
_SCORE = re.compile(
    r"\[RESULT\]\s*:?\s*[\(\[\*]*\s*(\d+(?:\.\d+)?)\s*[\)\]\*]*(?:\s*(?:/|out\s+of)\s*(\d+))?",
    re.I)  # fmt: skip
_CHOICE = re.compile(r"\[RESULT\]\s*:?\s*[\(\[\*]*\s*(?:Response\s+)?(A|B)\b", re.I)


def has_marker(text: str) -> bool:
    return bool(_MARKER.search(text))


def read_score(text: str, scale: Scale) -> ScoreReading:
    """The number after `[RESULT]`."""
    values = {float(m[1]) for m in _SCORE.finditer(text)}
    if not values:
        return ScoreReading.none("no number after [RESULT]", RULE)
    if len(values) > 1:
        return ScoreReading.none("conflicting [RESULT] values", RULE)
    return ScoreReading.of(values.pop(), scale, RULE)


def read_pair(text: str) -> Verdict:
    """`A` or `B` after `[RESULT]` (relative grading)."""
    found = {m[1].upper() for m in _CHOICE.finditer(text)}
    if not found:
        return Verdict.none("no A or B after [RESULT]", RULE)
    if len(found) > 1:
        return Verdict.none("conflicting [RESULT] choices", RULE)
    winner = A if found.pop() == "A" else B
    return Verdict(winner, label=f"[RESULT] {winner}", rule=RULE)
