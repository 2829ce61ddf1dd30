"""Reading a pairwise verdict from an answer in no framework's format.

`{"winner": "A"}` (lenient JSON), a lone `A`, "Verdict: B", "Assistant A is better", or
a tie in words ("both are equally good"). Two different verdicts ("Verdict: A ...
Final verdict: B") are none.
"""

from __future__ import annotations

import re
from typing import Any

from tasks.judge.formats import arena_hard
from tasks.judge.formats.readings import TIE, A, B, Verdict
from tasks.judge.formats.text import find_json

__all__ = ["read_pair", "verdict_token"]

RULE = "verdict"
_AB = r"((?-i:A|B)|tie|TIE|Tie)"
_NOUN = r"(?:(?:assistant|response|answer|output|model)\s+)?"
_FINAL = re.compile(
    r"\b(?:verdict|winner|decision)\s*(?:is|:|=|-)?\s*[\*\"'\[\(]*\s*" + _NOUN + _AB + r"\b",
    re.I)  # fmt: skip
_LABELLED = re.compile(
    r"(?:verdict|winner|better|choice|preferred|preference|answer|decision)\s*" + _NOUN
    + r"(?:is|:|=|-)?\s*[\*\"'\[\(]*\s*" + _NOUN + _AB + r"\b", re.I)  # fmt: skip
_BETTER = re.compile(
    r"\b(?:assistant|response|answer|output|model)\s+((?-i:A|B))\b[^.\n]{0,40}?\b(?:is|was)\s+"
    r"(?:better|superior|preferred|stronger|the winner)", re.I)  # fmt: skip
_ONLY = re.compile(r"^\W*" + _NOUN + _AB + r"\W*$", re.I)
_TIE = re.compile(r"\b(?:tie|equally (?:good|bad)|both (?:are )?equal|neither)\b", re.I)
_JSON_KEYS = ("winner", "verdict", "better", "choice", "preferred", "preference", "answer")


def read_pair(text: str) -> Verdict:
    """The verdict of a free-form pairwise answer."""
    doc = find_json(text) if "{" in text else None
    if isinstance(doc, dict):
        for key, value in doc.items():
            if str(key).lower() in _JSON_KEYS and isinstance(value, str):
                return _json_verdict(value)
    finals = {verdict_token(m[1]) for m in _FINAL.finditer(text)} - {None}
    if len(finals) > 1:
        return Verdict.none("conflicting verdicts", RULE)
    if finals:
        return Verdict(finals.pop(), label="verdict", rule=RULE)
    for pattern in (_ONLY, _LABELLED, _BETTER):
        match = pattern.search(text)
        if match:
            winner = verdict_token(match[1])
            if winner:
                return Verdict(winner, label=match[0].strip(), rule=RULE)
    if _TIE.search(text):
        return Verdict(TIE, label="tie", rule=RULE)
    return Verdict.none("no verdict in the answer", RULE)


def _json_verdict(value: str) -> Verdict:
    label = value.strip().strip("[]")
    if label in arena_hard.LABELS:
        winner, strength = arena_hard.LABELS[label]
        return Verdict(winner, strength=strength, label=label, rule="json")
    winner = verdict_token(value)
    if winner is None:
        return Verdict.none(f"unknown verdict {value!r}", "json")
    return Verdict(winner, label=value, rule="json")


def verdict_token(token: Any) -> str | None:
    """ "A", "B" or "tie" for a verdict's word ("Assistant A", "C", "draw"), else None."""
    token = str(token).strip().strip("[]()*\"' ").lower()
    if token in ("a", "assistant a", "response a"):
        return A
    if token in ("b", "assistant b", "response b"):
        return B
    if token in ("c", "tie", "draw", "equal"):
        return TIE
    return None
