"""LLM-as-judge scoring: a batch of judge prompts built from a template, then the
verdicts read back and summarized.

A judge run IS a batch: its id is a digest of the input, the template, the model and
the options, so running the same command again resumes it and pays for nothing twice.

Score mode: one request per line; the score is read from the answer on the scale.
Pairwise mode: two requests per line, answers A and B in both positions
(`<custom_id>#ab`, `<custom_id>#ba`); a verdict that flips with the order is a tie.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from chatq.errors import ChatqError, InvalidRequest
from tasks.batch.input import Line, file_digest
from tasks.batch.output import Result
from tasks.batch.service import default_batch_id
from tasks.judge.formats import (
    OUT_OF_RANGE,
    SCORED,
    TIE,
    UNPARSEABLE,
    A,
    B,
    Scale,
    parse_score,
    parse_verdict,
)
from tasks.judge.stats import histogram, summarize, wilson
from tasks.judge.template import Template
from worker.chat.types import ChatRequest

__all__ = ["JudgeOptions", "JudgeSource", "combine", "judge_rows", "summary_path"]

MODES = ("score", "pairwise")


@dataclass(frozen=True)
class JudgeOptions:
    """What shapes a judge's requests (and so its batch id)."""

    model: str
    template: Template
    mode: str = "score"
    scale: Scale = field(default_factory=lambda: Scale(1, 10))
    system: str | None = None
    max_tokens: int | None = None
    a_field: str = "answer_a"
    b_field: str = "answer_b"

    @property
    def tokens(self) -> int:
        """Short judge answers by default: a number, or a verdict with a few words."""
        return self.max_tokens or (16 if self.mode == "score" else 32)

    def fingerprint(self) -> str:
        parts = [self.model, self.template.text, self.mode, repr(self.scale), self.system or "",
                 str(self.tokens), self.a_field, self.b_field]  # fmt: skip
        return hashlib.sha256("\x00".join(parts).encode("utf-8")).hexdigest()


class JudgeSource:
    """The judge requests generated from an input file (a batch Source)."""

    kind = "judge"

    def __init__(self, path: Path, options: JudgeOptions, *, prepare: Callable | None = None):
        self.path = str(Path(path).resolve())
        self.options = options
        self.model = options.model
        self._prepare = prepare
        self._digest: str | None = None

    def digest(self) -> str:
        if self._digest is None:
            inner = file_digest(Path(self.path)) + self.options.fingerprint()
            self._digest = hashlib.sha256(inner.encode()).hexdigest()
        return self._digest

    def batch_id(self) -> str:
        return default_batch_id("judge", self.digest())

    def lines(self) -> Iterator[Line]:
        with open(self.path, encoding="utf-8", errors="replace") as handle:
            for number, text in enumerate(handle, start=1):
                if text.strip():
                    yield from self._lines(number, text)

    def _lines(self, number: int, text: str) -> Iterator[Line]:
        opts = self.options
        try:
            data = json.loads(text)
            if not isinstance(data, dict):
                raise InvalidRequest("a line must be a JSON object")
        except (ValueError, InvalidRequest) as exc:
            error = (
                exc
                if isinstance(exc, InvalidRequest)
                else InvalidRequest(f"not valid JSON ({exc})")
            )
            yield from self._each(number, str(number), lambda _swap: _raise(error))
            return
        custom_id = data.get("custom_id", data.get("id"))
        custom_id = str(number) if custom_id in (None, "") else str(custom_id)

        def build(swap: bool) -> ChatRequest:
            values = data
            if swap:
                values = {**data, opts.a_field: data.get(opts.b_field),
                          opts.b_field: data.get(opts.a_field)}  # fmt: skip
            messages = [{"role": "user", "content": opts.template.fill(values)}]
            if opts.system:
                messages.insert(0, {"role": "system", "content": opts.system})
            request = ChatRequest.parse({
                "model": opts.model, "messages": messages, "temperature": 0,
                "think": False, "max_tokens": opts.tokens,
            })  # fmt: skip
            return self._prepare(request) if self._prepare else request

        yield from self._each(number, custom_id, build)

    def _each(self, number: int, custom_id: str, build: Callable[[bool], ChatRequest]):
        orders = [("", False)] if self.options.mode == "score" else [("#ab", False), ("#ba", True)]
        for suffix, swap in orders:
            try:
                yield Line(number, custom_id + suffix, build(swap))
            except ChatqError as exc:
                yield Line.failed(number, custom_id + suffix, exc)


def _raise(error: Exception):
    raise error


def combine(first: str | None, swapped: str | None) -> tuple[str | None, bool | None]:
    """The verdict of an item judged in both orders: (verdict, consistent).

    `first` names A and B as given; `swapped` was judged with them exchanged, so its
    "A" means B. Agreement gives that verdict; disagreement is a tie, inconsistent.
    Either unreadable: (None, None).
    """
    if first is None or swapped is None:
        return None, None
    unswapped = {A: B, B: A}.get(swapped, swapped)
    if first == unswapped:
        return first, True
    return TIE, False


def judge_rows(results: Iterable[Result], options: JudgeOptions) -> Iterator[dict[str, Any]]:
    """One output row per input item, in input order."""
    if options.mode == "score":
        for r in results:
            yield _score_row(r, options.scale)
        return
    iterator = iter(results)
    for first in iterator:
        second = next(iterator)
        yield _pair_row(first, second)


def _score_row(r: Result, scale: Scale) -> dict[str, Any]:
    row: dict[str, Any] = {"custom_id": r.custom_id}
    if r.response is None:
        return {**row, "status": "error", "score": None, "raw": None, "error": r.error}
    raw = r.response.get("content", "")
    reading = parse_score(raw, scale)
    row.update(status=reading.status, score=_number(reading.score), raw=raw, error=None,
               cached=bool(r.response.get("cached")))  # fmt: skip
    if reading.status == OUT_OF_RANGE:
        row["value"] = _number(reading.value)
    return row


def _number(value: float | None) -> float | int | None:
    return int(value) if value is not None and value.is_integer() else value


def _pair_row(first: Result, second: Result) -> dict[str, Any]:
    custom_id = first.custom_id.removesuffix("#ab")
    row: dict[str, Any] = {"custom_id": custom_id}
    error = first.error or second.error
    if first.response is None or second.response is None:
        return {**row, "status": "error", "verdict": None, "consistent": None,
                "verdicts": None, "raw": None, "error": error}  # fmt: skip
    raws = [first.response.get("content", ""), second.response.get("content", "")]
    verdicts = [parse_verdict(raws[0]), parse_verdict(raws[1])]
    verdict, consistent = combine(*verdicts)
    row.update(status=SCORED if verdict else UNPARSEABLE, verdict=verdict,
               consistent=consistent, verdicts=verdicts, raw=raws, error=None)  # fmt: skip
    return row


class Tally:
    """Accumulates rows into the run's summary."""

    def __init__(self, options: JudgeOptions):
        self.options = options
        self.items = 0
        self.counts: dict[str, int] = {}
        self.scores: list[float] = []
        self.verdicts: dict[str, int] = {A: 0, B: 0, TIE: 0}
        self.consistent = 0

    def add(self, row: dict[str, Any]) -> None:
        self.items += 1
        self.counts[row["status"]] = self.counts.get(row["status"], 0) + 1
        if row["status"] != SCORED:
            return
        if self.options.mode == "score":
            self.scores.append(row["score"])
        else:
            self.verdicts[row["verdict"]] += 1
            self.consistent += int(bool(row["consistent"]))

    def summary(self) -> dict[str, Any]:
        opts = self.options
        out: dict[str, Any] = {
            "mode": opts.mode, "model": opts.model, "items": self.items,
            "scored": self.counts.get(SCORED, 0),
            "unparseable": self.counts.get(UNPARSEABLE, 0),
            "out_of_range": self.counts.get(OUT_OF_RANGE, 0),
            "errors": self.counts.get("error", 0),
        }  # fmt: skip
        if opts.mode == "score":
            out["scale"] = [opts.scale.low, opts.scale.high]
            out.update(summarize(self.scores).as_dict())
            out["histogram"] = histogram(self.scores, low=opts.scale.low, high=opts.scale.high)
            return out
        judged = sum(self.verdicts.values())
        for name, key in (("win", A), ("loss", B), ("tie", TIE)):
            count = self.verdicts[key]
            interval = wilson(count, judged)
            out[f"{name}_rate"] = count / judged if judged else None
            out[f"{name}_ci95"] = interval.as_list() if interval else None
        out["position_consistency"] = self.consistent / judged if judged else None
        return out


def summary_path(output: Path) -> Path:
    """`scores.jsonl` → `scores.summary.json`, beside it."""
    output = Path(output)
    stem = output.name[: -len(output.suffix)] if output.suffix else output.name
    return output.with_name(stem + ".summary.json")
