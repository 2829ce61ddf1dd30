"""A judge run's output rows: each result read into a score, or a pair of results (the
two orders of one item) combined into one verdict.

Row statuses: scored; out_of_range (a number off the scale); unparseable (no verdict, a
refusal, conflicting verdicts: `reason` says which); truncated (the judge was cut off
by max_tokens, `finish_reason` "length": never read, since the verdict comes last);
error (no answer). Only scored rows are counted. Every row keeps the judge's raw text.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from tasks.batch.output import Result
from tasks.judge.formats import (
    OUT_OF_RANGE,
    SCORED,
    TIE,
    TRUNCATED,
    UNPARSEABLE,
    A,
    B,
    Verdict,
    read_score,
    read_verdict,
)
from tasks.judge.options import JudgeOptions

__all__ = ["combine", "combine_verdicts", "judge_rows"]

_SWAP = {A: B, B: A}


def combine(first: str | None, swapped: str | None) -> tuple[str | None, bool | None]:
    """The verdict of an item judged in both orders: (verdict, consistent).

    `first` names A and B as given; `swapped` was judged with them exchanged, so its
    "A" means B. Agreement gives that verdict; disagreement is a tie, inconsistent.
    Either unreadable: (None, None).
    """
    if first is None or swapped is None:
        return None, None
    unswapped = _SWAP.get(swapped, swapped)
    if first == unswapped:
        return first, True
    return TIE, False


def combine_verdicts(
    first: Verdict, swapped: Verdict
) -> tuple[str | None, str | None, bool | None]:
    """(verdict, strength, consistent) of both orders' verdicts. The strength of an
    agreed win is "strong" when both orders said so, "weak" when either said weak."""
    verdict, consistent = combine(first.winner, swapped.winner)
    strengths = {first.strength, swapped.strength}
    strength = None
    if consistent and verdict in (A, B) and strengths & {"strong", "weak"}:
        strength = "strong" if strengths == {"strong"} else "weak"
    return verdict, strength, consistent


def judge_rows(
    results: Iterable[Result],
    options: JudgeOptions,
    *,
    lengths: Mapping[str, tuple[int, int]] | None = None,
) -> Iterator[dict[str, Any]]:
    """One output row per input item, in input order.

    lengths: pairwise only, custom_id -> (length of answer A, of answer B) in
        characters, for the length check (which answer won: the longer one?).
    """
    if options.mode == "score":
        for r in results:
            yield _score_row(r, options)
        return
    iterator = iter(results)
    for first in iterator:
        second = next(iterator)
        yield _pair_row(first, second, options, lengths or {})


def _score_row(r: Result, options: JudgeOptions) -> dict[str, Any]:
    row: dict[str, Any] = {"custom_id": r.custom_id}
    if r.response is None:
        return {**row, "status": "error", "score": None, "raw": None, "error": r.error}
    raw = r.response.get("content", "")
    cached = bool(r.response.get("cached"))
    if _cut_off(r):
        return {**row, "status": TRUNCATED, "score": None, "raw": raw, "error": None,
                "cached": cached}  # fmt: skip
    reading = read_score(raw, options.scale, parser=options.parser, grade_map=options.grades)
    row.update(status=reading.status, score=_number(reading.score), raw=raw, error=None,
               cached=cached, rule=reading.rule)  # fmt: skip
    if reading.status == OUT_OF_RANGE:
        row["value"] = _number(reading.value)
    if reading.status == UNPARSEABLE:
        row["reason"] = reading.reason
    return row


def _pair_row(
    first: Result, second: Result, options: JudgeOptions, lengths: Mapping[str, tuple[int, int]]
) -> dict[str, Any]:
    custom_id = first.custom_id.removesuffix("#ab")
    row: dict[str, Any] = {"custom_id": custom_id}
    error = first.error or second.error
    if first.response is None or second.response is None:
        return {**row, "status": "error", "verdict": None, "strength": None, "consistent": None,
                "verdicts": None, "labels": None, "raw": None, "error": error}  # fmt: skip
    raws = [first.response.get("content", ""), second.response.get("content", "")]
    longer = _longer(lengths.get(custom_id))
    if _cut_off(first) or _cut_off(second):
        return {**row, "status": TRUNCATED, "verdict": None, "strength": None,
                "consistent": None, "verdicts": None, "labels": None, "raw": raws,
                "error": None, "longer": longer}  # fmt: skip
    readings = [read_verdict(raw, parser=options.parser) for raw in raws]
    verdict, strength, consistent = combine_verdicts(*readings)
    row.update(status=SCORED if verdict else UNPARSEABLE, verdict=verdict, strength=strength,
               consistent=consistent, verdicts=[v.winner for v in readings],
               strengths=[v.strength for v in readings], labels=[v.label for v in readings],
               raw=raws, error=None, longer=longer)  # fmt: skip
    if not verdict:
        row["reason"] = "; ".join(v.reason for v in readings if v.reason)
    return row


def _cut_off(r: Result) -> bool:
    return (r.response or {}).get("finish_reason") == "length"


def _longer(lengths: tuple[int, int] | None) -> str | None:
    """Which answer is longer: "A", "B", "same", or None when unknown."""
    if not lengths:
        return None
    a, b = lengths
    return A if a > b else B if b > a else "same"


def _number(value: float | None) -> float | int | None:
    return int(value) if value is not None and value.is_integer() else value
