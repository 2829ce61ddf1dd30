"""Reading a judge's answer: a score on a scale, or a pairwise verdict.

Real judges answer "7", "7/10", "Score: 7", "**7**", "[[7]]", `{"score": 7}`, or a
sentence ending in the number. A number out of the scale is recorded as out of range,
an answer with no number as unparseable: neither is ever counted as a score.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

__all__ = ["Scale", "ScoreReading", "parse_scale", "parse_score", "parse_verdict"]

SCORED, OUT_OF_RANGE, UNPARSEABLE = "scored", "out_of_range", "unparseable"
_NUM = r"[-+]?\d+(?:\.\d+)?"
_THINK = re.compile(r"<think>.*?</think>", re.S | re.I)
_FENCE = re.compile(r"```(?:json)?\s*(.*?)```", re.S | re.I)
_BRACKETS = re.compile(r"\[\[\s*(" + _NUM + r")\s*(?:/\s*\d+\s*)?\]\]")
_LABELLED = re.compile(
    r"(?:score|rating|grade|mark|rated|rate)\**\s*(?:is|of|=|:|-)?\s*[\*\[\(\"']*\s*("
    + _NUM + r")(?!\s*[-\u2013]\s*\d)", re.I)  # fmt: skip
_OUT_OF = re.compile(r"(" + _NUM + r")\s*(?:/|out of)\s*(\d+(?:\.\d+)?)", re.I)
_BOLD = re.compile(r"\*\*\s*(" + _NUM + r")\s*\**")
_ONLY = re.compile(r"^\W*(" + _NUM + r")\W*$")
_FIRST_LINE = re.compile(r"^\s*[\*\[\(]*(" + _NUM + r")[\*\]\)]*\s*(?:\n|$)")
_ENDS = re.compile(r"(" + _NUM + r")\s*[\*\]\)\"'`]*\s*[.!]?\s*$")
_JSON_KEYS = ("score", "rating", "grade", "overall", "value")


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
    match = re.fullmatch(r"\s*(" + _NUM + r")\s*[-:]\s*(" + _NUM + r")\s*", text)
    if not match or float(match[1]) >= float(match[2]):
        raise ValueError(f"a scale is LOW-HIGH, e.g. 1-10, not {text!r}")
    return Scale(float(match[1]), float(match[2]))


@dataclass(frozen=True)
class ScoreReading:
    """status: scored, out_of_range or unparseable; score only when scored; value is
    the number read (also when out of range)."""

    status: str
    score: float | None = None
    value: float | None = None


def parse_score(text: str, scale: Scale) -> ScoreReading:
    """The score in a judge's answer (see the module's docstring)."""
    value = _find_number(text)
    if value is None:
        return ScoreReading(UNPARSEABLE)
    if value not in scale:
        return ScoreReading(OUT_OF_RANGE, value=value)
    return ScoreReading(SCORED, score=value, value=value)


def _find_number(text: str) -> float | None:
    text = _THINK.sub("", text or "").strip()
    if not text:
        return None
    for candidate in [m.group(1) for m in _FENCE.finditer(text)] + [text]:
        found = _from_json(candidate.strip())
        if found is not None:
            return found
    for pattern in (_BRACKETS, _LABELLED):
        match = pattern.search(text)
        if match:
            return float(match[1])
    match = _OUT_OF.search(text)
    if match:
        return float(match[1])
    for pattern in (_ONLY, _FIRST_LINE):
        match = pattern.search(text)
        if match:
            return float(match[1])
    match = _BOLD.search(text)
    if match:
        return float(match[1])
    match = _ENDS.search(text)
    return float(match[1]) if match else None


def _from_json(text: str) -> float | None:
    if not text.startswith(("{", "[")):
        return None
    try:
        doc = json.loads(text)
    except ValueError:
        start, end = text.find("{"), text.rfind("}")
        try:
            doc = json.loads(text[start : end + 1]) if 0 <= start < end else None
        except ValueError:
            return None
    return _json_score(doc)


def _json_score(doc: Any) -> float | None:
    if isinstance(doc, list) and len(doc) == 1:
        doc = doc[0]
    if isinstance(doc, (int, float)) and not isinstance(doc, bool):
        return float(doc)
    if not isinstance(doc, dict):
        return None
    for key, value in doc.items():
        if str(key).lower() in _JSON_KEYS:
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                return float(value)
            if isinstance(value, str) and re.fullmatch(r"\s*" + _NUM + r"\s*", value):
                return float(value)
    return None


# -- pairwise ----------------------------------------------------------------------------
A, B, TIE = "A", "B", "tie"
_AB = r"((?-i:A|B)|tie|TIE|Tie)"
_NOUN = r"(?:(?:assistant|response|answer|output|model)\s+)?"
_V_BRACKETS = re.compile(r"\[\[\s*(A|B|C|tie)\s*\]\]", re.I)
_V_LABELLED = re.compile(
    r"(?:verdict|winner|better|choice|preferred|preference|answer|decision)\s*" + _NOUN
    + r"(?:is|:|=|-)?\s*[\*\"'\[\(]*\s*" + _NOUN + _AB + r"\b", re.I)  # fmt: skip
_V_BETTER = re.compile(
    r"\b(?:assistant|response|answer|output|model)\s+((?-i:A|B))\b[^.\n]{0,40}?\b(?:is|was)\s+"
    r"(?:better|superior|preferred|stronger|the winner)", re.I)  # fmt: skip
_V_ONLY = re.compile(r"^\W*" + _NOUN + _AB + r"\W*$", re.I)
_V_TIE = re.compile(r"\b(?:tie|equally (?:good|bad)|both (?:are )?equal|neither)\b", re.I)
_JSON_VERDICT_KEYS = ("winner", "verdict", "better", "choice", "preferred", "answer")


def parse_verdict(text: str) -> str | None:
    """ "A", "B" or "tie" from a pairwise judge's answer; None when it names none."""
    text = _THINK.sub("", text or "").strip()
    if not text:
        return None
    try:
        doc = json.loads(text)
    except ValueError:
        doc = None
    if isinstance(doc, dict):
        for key, value in doc.items():
            if str(key).lower() in _JSON_VERDICT_KEYS and isinstance(value, str):
                return _verdict(value)
    for pattern in (_V_BRACKETS, _V_ONLY, _V_LABELLED, _V_BETTER):
        match = pattern.search(text)
        if match:
            return _verdict(match[1])
    return TIE if _V_TIE.search(text) else None


def _verdict(token: str) -> str | None:
    token = token.strip().strip("[]()*\"' ").lower()
    if token in ("a", "assistant a", "response a"):
        return A
    if token in ("b", "assistant b", "response b"):
        return B
    if token in ("c", "tie", "draw", "equal"):
        return TIE
    return None
