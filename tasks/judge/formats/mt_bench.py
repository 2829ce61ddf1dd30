"""MT-Bench (FastChat's llm_judge): `Rating: [[8]]`, `[[A]]`/`[[B]]`/`[[C]]`, `[[8, 6]]`.

FastChat's own rules, followed here when the marker is present:
- single answer: the FIRST `[[n]]` in the judgment (decimals allowed), whatever comes
  after it; FastChat falls back to the first `[n]`, which this module applies only
  when the mt-bench parser is chosen (a preset), since `[1]` is also how a judge cites.
- pairwise: `[[A]]` anywhere wins, else `[[B]]`, else `[[C]]` (a tie), checked in that
  order (so an answer holding both `[[A]]` and `[[B]]` is A's, as FastChat reads it).
- two scores `[[8, 6]]`: A's and B's scores; within 0.1 of each other is a tie.
"""

from __future__ import annotations

import re

from tasks.judge.formats.readings import TIE, A, B, Scale, ScoreReading, Verdict

__all__ = ["has_pair_marker", "has_score_marker", "read_pair", "read_score"]

RULE = "mt-bench"
_ONE = re.compile(r"\[\[(\d+\.?\d*)\]\]")
_ONE_BACKUP = re.compile(r"\[(\d+\.?\d*)\]")
_TWO = re.compile(r"\[\[(\d+\.?\d*),\s?(\d+\.?\d*)\]\]")
_TWO_BACKUP = re.compile(r"\[(\d+\.?\d*),\s?(\d+\.?\d*)\]")
_TIE_DELTA = 0.1


def has_score_marker(text: str) -> bool:
    return bool(_ONE.search(text))


def has_pair_marker(text: str) -> bool:
    return any(f"[[{x}]]" in text for x in "ABC") or bool(_TWO.search(text))


def read_score(text: str, scale: Scale, *, strict: bool = False) -> ScoreReading:
    """The first `[[n]]` (strict: else the first `[n]`), as FastChat reads a rating."""
    match = _ONE.search(text) or (_ONE_BACKUP.search(text) if strict else None)
    if not match:
        return ScoreReading.none("no [[rating]] in the answer", RULE)
    return ScoreReading.of(float(match[1]), scale, RULE)


def read_pair(text: str, *, strict: bool = False) -> Verdict:
    """`[[A]]`, else `[[B]]`, else `[[C]]`; else the two-score form `[[a, b]]`."""
    for token, winner in (("[[A]]", A), ("[[B]]", B), ("[[C]]", TIE)):
        if token in text:
            return Verdict(winner, label=token, rule=RULE)
    match = _TWO.search(text) or (_TWO_BACKUP.search(text) if strict else None)
    if match:
        a, b = float(match[1]), float(match[2])
        winner = TIE if abs(a - b) <= _TIE_DELTA else (A if a > b else B)
        return Verdict(winner, label=match[0], rule=RULE, scores=(a, b))
    return Verdict.none("no [[A]], [[B]] or [[C]] in the answer", RULE)
