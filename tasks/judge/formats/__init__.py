"""Reading a judge's answer the way the framework that wrote its prompt reads it.

Score mode, in order (`parser="auto"`):
    JSON (also fenced, read leniently)  `{"score": 7}`        a score key
    MT-Bench      mt_bench.py           `Rating: [[8]]`        the first `[[n]]`
    Prometheus    prometheus.py         `... [RESULT] 4`       the number after it
    letter grades grades.py             `GRADE: C`             only with a mapping
    anything else generic.py            "... I give it 6"      the final verdict
Pairwise mode, in order:
    Arena-Hard    arena_hard.py         `[[A>>B]]` ... `[[B>>A]]`  one label, or none
    MT-Bench      mt_bench.py           `[[A]]` `[[B]]` `[[C]]`, `[[8, 6]]`
    Prometheus    prometheus.py         `[RESULT] A`
    JudgeLM       judgelm.py            first line `8 6`
    anything else pairwise.py           `{"winner": "A"}`, "Verdict: B", ...

A framework's rule applies when its marker is in the answer. A parser named for one
framework (`parser="mt-bench"`, as its preset sets) applies only that framework's
rule, as that framework does; an answer without its marker is unparseable.
"""

from __future__ import annotations

from typing import Any

from tasks.judge.formats import (
    arena_hard,
    generic,
    grades,
    judgelm,
    mt_bench,
    pairwise,
    prometheus,
)
from tasks.judge.formats.readings import (
    OUT_OF_RANGE,
    SCORED,
    TIE,
    TRUNCATED,
    UNPARSEABLE,
    A,
    B,
    Scale,
    ScoreReading,
    Verdict,
    parse_scale,
)
from tasks.judge.formats.text import find_json, visible

__all__ = [
    "OUT_OF_RANGE",
    "PARSERS",
    "SCORED",
    "TIE",
    "TRUNCATED",
    "UNPARSEABLE",
    "A",
    "B",
    "Scale",
    "ScoreReading",
    "Verdict",
    "parse_grades",
    "parse_scale",
    "parse_score",
    "parse_verdict",
    "read_score",
    "read_verdict",
]

PARSERS = ("auto", "mt-bench", "arena-hard", "prometheus", "judgelm")
parse_grades = grades.parse_grades
_JSON_KEYS = ("final_score", "overall_score", "overall", "score", "rating", "final_rating",
              "grade", "value")  # fmt: skip


def read_score(
    text: str | None,
    scale: Scale,
    *,
    parser: str = "auto",
    grade_map: dict[str, float] | None = None,
) -> ScoreReading:
    """The score in a judge's answer (see the package's docstring).

    Raises:
        ValueError: an unknown parser, or one that reads no scores (arena-hard, judgelm).
    """
    text = visible(text)
    if parser == "mt-bench":
        return mt_bench.read_score(text, scale, strict=True)
    if parser == "prometheus":
        return prometheus.read_score(text, scale)
    if parser != "auto":
        raise ValueError(f"the {parser} parser reads pairwise verdicts, not scores")
    if not text:
        return ScoreReading.none("empty answer")
    if "{" in text:
        found = _json_score(find_json(text))
        if found is not None:
            return ScoreReading.of(found, scale, "json")
    if mt_bench.has_score_marker(text):
        return mt_bench.read_score(text, scale)
    if prometheus.has_marker(text):
        return prometheus.read_score(text, scale)
    if grades.find_grade(text) is not None:
        return grades.read_score(text, scale, grade_map)
    return generic.read_score(text, scale)


def read_verdict(text: str | None, *, parser: str = "auto") -> Verdict:
    """The pairwise verdict in a judge's answer (see the package's docstring).

    Raises:
        ValueError: an unknown parser.
    """
    text = visible(text)
    strict = {
        "mt-bench": lambda t: mt_bench.read_pair(t, strict=True),
        "arena-hard": arena_hard.read_pair,
        "prometheus": prometheus.read_pair,
        "judgelm": judgelm.read_pair,
    }
    if parser in strict:
        return strict[parser](text)
    if parser != "auto":
        raise ValueError(f"no parser {parser!r} (known: {', '.join(PARSERS)})")
    if not text:
        return Verdict.none("empty answer")
    if arena_hard.has_marker(text):
        return arena_hard.read_pair(text)
    if mt_bench.has_pair_marker(text):
        return mt_bench.read_pair(text)
    if prometheus.has_marker(text):
        return prometheus.read_pair(text)
    if judgelm.has_marker(text):
        return judgelm.read_pair(text)
    return pairwise.read_pair(text)


def parse_score(text: str | None, scale: Scale) -> ScoreReading:
    """`read_score` with the automatic parser."""
    return read_score(text, scale)


def parse_verdict(text: str | None) -> str | None:
    """ "A", "B" or "tie" from a pairwise judge's answer; None when it names none."""
    return read_verdict(text).winner


def _json_score(doc: Any) -> float | None:
    if isinstance(doc, list) and len(doc) == 1:
        doc = doc[0]
    if isinstance(doc, (int, float)) and not isinstance(doc, bool):
        return float(doc)
    if not isinstance(doc, dict):
        return None
    keys = {str(k).lower(): v for k, v in doc.items()}
    for key in _JSON_KEYS:
        value = keys.get(key)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):
            number = value.strip().split("/")[0].strip()
            try:
                return float(number)
            except ValueError:
                continue
    return None
