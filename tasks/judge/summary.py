"""A judge run's summary, accumulated row by row.

Score mode: counts by status, then the mean, median, sd, bootstrap interval and
histogram of the scored rows. Pairwise mode: win, loss and tie rates of answer A (Wilson
intervals), the strength of the wins, the position-consistency rate, an Arena-Hard-style
table of every game (each order of each item, read from A's side) with the score
Arena-Hard gives it (a strong verdict counted three times), and the length check: the
share of wins that went to the longer answer.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tasks.judge.formats import OUT_OF_RANGE, SCORED, TIE, TRUNCATED, UNPARSEABLE, A, B
from tasks.judge.formats.arena_hard import WEIGHT
from tasks.judge.options import JudgeOptions
from tasks.judge.stats import histogram, summarize, wilson

__all__ = ["ARENA_LABELS", "Tally", "summary_path"]

#: Arena-Hard's labels from A's side, and each one's (points for A, battles it counts).
ARENA_LABELS = {"A>>B": (1.0, WEIGHT), "A>B": (1.0, 1), "A=B": (0.5, 1), "B>A": (0.0, 1),
                "B>>A": (0.0, WEIGHT)}  # fmt: skip
_SWAP = {A: B, B: A}


class Tally:
    """Accumulates rows into the run's summary."""

    def __init__(self, options: JudgeOptions):
        self.options = options
        self.items = 0
        self.counts: dict[str, int] = {}
        self.scores: list[float] = []
        self.verdicts: dict[str, int] = {A: 0, B: 0, TIE: 0}
        self.strengths = {A: {"strong": 0, "weak": 0}, B: {"strong": 0, "weak": 0}}
        self.consistent = 0
        self.games = dict.fromkeys(ARENA_LABELS, 0)
        self.wins_with_length = 0
        self.longer_won = 0

    def add(self, row: dict[str, Any]) -> None:
        self.items += 1
        self.counts[row["status"]] = self.counts.get(row["status"], 0) + 1
        if row["status"] != SCORED:
            return
        if self.options.mode == "score":
            self.scores.append(row["score"])
            return
        verdict = row["verdict"]
        self.verdicts[verdict] += 1
        self.consistent += int(bool(row["consistent"]))
        if row.get("strength"):
            self.strengths[verdict][row["strength"]] += 1
        winners, strengths = row["verdicts"], row.get("strengths") or [None, None]
        for winner, strength in ((winners[0], strengths[0]),
                                 (_SWAP.get(winners[1], winners[1]), strengths[1])):  # fmt: skip
            self.games[_arena_label(winner, strength)] += 1
        if verdict in (A, B) and row.get("longer") in (A, B, "same"):
            self.wins_with_length += 1
            self.longer_won += int(row["longer"] == verdict)

    def summary(self) -> dict[str, Any]:
        opts = self.options
        out: dict[str, Any] = {
            "mode": opts.mode, "model": opts.model, "preset": opts.preset,
            "parser": opts.parser, "max_tokens": opts.tokens, "items": self.items,
            "scored": self.counts.get(SCORED, 0),
            "unparseable": self.counts.get(UNPARSEABLE, 0),
            "out_of_range": self.counts.get(OUT_OF_RANGE, 0),
            "truncated": self.counts.get(TRUNCATED, 0),
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
        out["strength"] = {"wins": self.strengths[A], "losses": self.strengths[B]}
        out["position_consistency"] = self.consistent / judged if judged else None
        out["arena"] = self._arena()
        out["length_check"] = self._length_check()
        return out

    def _arena(self) -> dict[str, Any]:
        points = sum(ARENA_LABELS[k][0] * ARENA_LABELS[k][1] * n for k, n in self.games.items())
        battles = sum(ARENA_LABELS[k][1] * n for k, n in self.games.items())
        return {"games": sum(self.games.values()), **self.games,
                "score": points / battles if battles else None}  # fmt: skip

    def _length_check(self) -> dict[str, Any]:
        n, k = self.wins_with_length, self.longer_won
        interval = wilson(k, n)
        return {"wins": n, "longer_won": k, "share": k / n if n else None,
                "ci95": interval.as_list() if interval else None}  # fmt: skip


def _arena_label(winner: str | None, strength: str | None) -> str:
    """A game's verdict as Arena-Hard writes it, from A's side; a win without a graded
    strength counts as a slight one."""
    if winner == TIE:
        return "A=B"
    strong = strength == "strong"
    if winner == A:
        return "A>>B" if strong else "A>B"
    return "B>>A" if strong else "B>A"


def summary_path(output: Path) -> Path:
    """`scores.jsonl` → `scores.summary.json`, beside it."""
    output = Path(output)
    stem = output.name[: -len(output.suffix)] if output.suffix else output.name
    return output.with_name(stem + ".summary.json")
