"""JudgeLM: the answer's first line holds two scores, A's then B's (`8 6`, `8, 6`).

JudgeLM's own rule: only the first line is read; it must be exactly two numbers
(a comma counts as a space). The higher score wins; equal scores are a tie.
"""

from __future__ import annotations

import re

from tasks.judge.formats.readings import TIE, A, B, Verdict

__all__ = ["has_marker", "read_pair"]

RULE = "judgelm"
_FIRST_LINE = re.compile(r"\s*(\d+(?:\.\d+)?)[ ,]+(\d+(?:\.\d+)?)\s*")


def has_marker(text: str) -> bool:
    return bool(_FIRST_LINE.fullmatch(text.strip().split("\n", 1)[0]))


def read_pair(text: str) -> Verdict:
    """A's and B's scores from the first line; the higher one wins."""
    match = _FIRST_LINE.fullmatch(text.strip().split("\n", 1)[0])
    if not match:
        return Verdict.none("the first line is not two scores", RULE)
    a, b = float(match[1]), float(match[2])
    winner = TIE if a == b else (A if a > b else B)
    return Verdict(winner, label=f"{match[1]} {match[2]}", rule=RULE, scores=(a, b))
