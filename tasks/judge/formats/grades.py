"""Letter grades, as inspect_ai's model-graded scorers ask for them: `GRADE: C`.

A letter is not a number: `GRADE: C` is no score unless the user maps letters to
numbers (`--grades C=1,P=0.5,I=0`). As inspect_ai reads it, the grade is the one on
the answer's last `GRADE:` line.
"""

from __future__ import annotations

import re

from tasks.judge.formats.readings import NUM, Scale, ScoreReading

__all__ = ["find_grade", "parse_grades", "read_score"]

RULE = "grade"
_GRADE = re.compile(r"\bGRADE\s*:\s*\**\s*([A-Za-z][+-]?)(?![A-Za-z])", re.I)


def parse_grades(text: str) -> dict[str, float]:
    """`C=1,P=0.5,I=0` as {"C": 1.0, "P": 0.5, "I": 0.0}.

    Raises:
        ValueError: not LETTER=NUMBER pairs separated by commas.
    """
    grades = {}
    for part in text.split(","):
        match = re.fullmatch(r"\s*([A-Za-z][+-]?)\s*=\s*(" + NUM + r")\s*", part)
        if not match:
            raise ValueError(f"grades are LETTER=NUMBER pairs, e.g. C=1,P=0.5,I=0, not {text!r}")
        grades[match[1].upper()] = float(match[2])
    return grades


def find_grade(text: str) -> str | None:
    """The letter of the last `GRADE: X`, upper-cased, or None."""
    found = _GRADE.findall(text)
    return found[-1].upper() if found else None


def read_score(text: str, scale: Scale, grades: dict[str, float] | None) -> ScoreReading:
    letter = find_grade(text)
    if letter is None:
        return ScoreReading.none("no GRADE: in the answer", RULE)
    if not grades:
        return ScoreReading.none(f"letter grade {letter} without a mapping (--grades)", RULE)
    if letter not in grades:
        return ScoreReading.none(f"letter grade {letter} is not in the mapping", RULE)
    return ScoreReading.of(grades[letter], scale, RULE)
