"""Reading a score from an answer in no framework's format: the FINAL verdict.

Judges reason before they rate, and the reasoning holds other numbers ("not a 10",
"3/4 of the steps", "clarity 9"). Candidates, strongest first:

1. final verdicts: a number after "final"/"overall" (score, rating, verdict), or a line
   that is only a label and a number ("Score: 7", "Rating: 8/10"). When these disagree
   the answer has two verdicts and is unparseable.
2. stated scores: after "score"/"rating"/"grade" ("my rating is 7"), or a rating phrase
   ("I give it 6", "I'd rate this an 8"); the LAST one counts. A phrase right after a
   negation ("would not give it a 10") is not a verdict.
3. ratios over the scale's top: "8/10", "4 out of 5" on 1-5; the last one counts. A
   ratio over anything else ("3/4 of the steps") is never a score, nor is one named
   for a criterion ("Clarity: 9/10", "clarity (9/10)"): that is a sub-score.
4. a bare answer: only a number, a number on the first line, a bold number, or a
   number ending the answer after "is", "a", "deserves" or a colon ("a clarity of 9."
   ends in no verdict).

A refusal ("I can't assign a score from 1 to 10") is unparseable unless a verdict of
kinds 1-3 follows it; a bare number never overrides a refusal.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from tasks.judge.formats.readings import NUM, Scale, ScoreReading

__all__ = ["read_score"]

RULE = "final-verdict"
_NOT_RANGE = r"(?!\s*(?:-|\u2013|to)\s*\d)"
_OPEN = r"[\*\[\(\"'`]*\s*"
_DENOM = r"(?:\s*[\*\]\)]*\s*(?:/|out\s+of)\s*(\d+(?:\.\d+)?))?"
_FINAL = re.compile(
    r"\b(?:final|overall)\s*(?:score|rating|verdict|grade|mark)?\**\s*(?:is|of|=|:|-)?\s*"
    + _OPEN + "(" + NUM + ")" + _NOT_RANGE + _DENOM, re.I)  # fmt: skip
_LINE = re.compile(
    r"^[\W_]*(?:score|rating|verdict|grade|mark)[\W_]*?\s*(?:is|=|:|-)\s*" + _OPEN + "("
    + NUM + ")" + _DENOM + r"[\s\*\]\)\.\"'`]*$", re.I | re.M)  # fmt: skip
_LABELLED = re.compile(
    r"\b(?:score|rating|grade|mark)s?\b\**\s*(?:is|of|=|:|-|would be|should be)?\s*"
    + _OPEN + "(" + NUM + ")" + _NOT_RANGE + _DENOM, re.I)  # fmt: skip
_PHRASE = re.compile(
    r"\b(?:give|giving|gave|rate|rating|score|scoring|assign|assigning|award|awarding)\s+"
    r"(?:(?:it|this|that|the)\s+)?(?:(?:response|answer|output|submission|one)\s+)?"
    r"(?:is\s+|would be\s+|:\s*)?(?:(?:a|an)\s+)?(?:(?:score|rating)\s+of\s+)?" + _OPEN
    + "(" + NUM + ")" + _NOT_RANGE + _DENOM, re.I)  # fmt: skip
_NEGATED = re.compile(r"(?:\bnot|n't|\bnever|\brather than|\binstead of)\s+(?:\w+\s+){0,2}$", re.I)
_CRITERION = re.compile(r"[A-Za-z]\**\s*[:(\-\u2013]\s*\**\s*$")
_RATIO = re.compile(r"(?<![\d./])(" + NUM + r")\s*[\*]*\s*(?:/|out\s+of)\s*(\d+(?:\.\d+)?)", re.I)
_ONLY = re.compile(r"^\W*(" + NUM + r")\W*$")
_FIRST_LINE = re.compile(r"^\s*[\*\[\(]*(" + NUM + r")[\*\]\)]*\s*(?:\n|$)")
_BOLD = re.compile(r"\*\*\s*(" + NUM + r")\s*\**")
_ENDS = re.compile(
    r"(?:\b(?:deserves|merits|earns|gets|is|a|an)\s+|[:=\u2192]\s*)[\*\[\(\"'`]*("
    + NUM + r")\s*[\*\]\)\"'`]*\s*[.!]?\s*$", re.I)  # fmt: skip
_REFUSAL = re.compile(
    r"\b(?:can(?:no|')t|can not|unable to|won'?t|will not|decline to|refuse to|"
    r"not (?:able|possible) to)\s+(?:\w+\s+){0,3}?"
    r"(?:assign|give|provide|rate|score|grade|evaluate|judge|assess)\b", re.I)  # fmt: skip


@dataclass(frozen=True)
class _Found:
    at: int
    value: float
    tier: int


def read_score(text: str, scale: Scale) -> ScoreReading:
    """The final verdict of a free-form answer (see the module's docstring)."""
    found = _candidates(text, scale)
    refusals = list(_REFUSAL.finditer(text))
    if refusals:
        after = refusals[-1].end()
        found = [f for f in found if f.at >= after]
        if not found:
            return ScoreReading.none("the judge declined to score", RULE)
    finals = [f for f in found if f.tier == 1]
    if finals:
        values = {f.value for f in finals}
        if len(values) > 1:
            listed = ", ".join(f"{v:g}" for v in sorted(values))
            return ScoreReading.none(f"conflicting final verdicts ({listed})", RULE)
        return ScoreReading.of(finals[-1].value, scale, RULE)
    for tier in (2, 3):
        ranked = [f for f in found if f.tier == tier]
        if ranked:
            return ScoreReading.of(max(ranked, key=lambda f: f.at).value, scale, RULE)
    if refusals:
        return ScoreReading.none("the judge declined to score", RULE)
    for pattern in (_ONLY, _FIRST_LINE, _BOLD, _ENDS):
        match = pattern.search(text)
        if match:
            return ScoreReading.of(float(match[1]), scale, RULE)
    return ScoreReading.none("no score in the answer", RULE)


def _candidates(text: str, scale: Scale) -> list[_Found]:
    found: list[_Found] = []
    for tier, patterns in ((1, (_FINAL, _LINE)), (2, (_LABELLED, _PHRASE))):
        for pattern in patterns:
            for m in pattern.finditer(text):
                if _over_other_scale(m[2], scale):
                    continue
                if pattern is _PHRASE and _NEGATED.search(text, 0, m.start()):
                    continue
                found.append(_Found(m.start(1), float(m[1]), tier))
    taken = {f.at for f in found}
    for m in _RATIO.finditer(text):
        if m.start(1) in taken or _over_other_scale(m[2], scale):
            continue
        if not _CRITERION.search(text, 0, m.start()):
            found.append(_Found(m.start(1), float(m[1]), 3))
    return found


def _over_other_scale(denominator: str | None, scale: Scale) -> bool:
    return denominator is not None and float(denominator) != scale.high
