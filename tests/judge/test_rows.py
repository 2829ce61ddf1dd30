"""Rows and summaries: cut-off answers, strengths, the Arena-Hard table, the length check."""

from __future__ import annotations

import json

import pytest

from tasks.batch.output import Result
from tasks.judge.formats import Scale
from tasks.judge.options import JudgeOptions
from tasks.judge.rows import judge_rows
from tasks.judge.run import JudgeSource
from tasks.judge.summary import Tally
from tasks.judge.template import Template
from tests.judge import answers

SCORE = JudgeOptions(model="m", template=Template.parse("{answer}"))
PAIR = JudgeOptions(model="m", template=Template.parse("{answer_a}{answer_b}"), mode="pairwise")


def result(cid, content, finish="stop"):
    return Result(cid, 1, "t", {"content": content, "finish_reason": finish}, None)


def tally(options, rows):
    t = Tally(options)
    for row in rows:
        t.add(row)
    return t.summary()


def test_an_answer_cut_off_by_max_tokens_is_truncated_kept_and_never_counted():
    cut = answers.MT_BENCH_SCORES[0][0][:120]
    results = [
        result("a", answers.MT_BENCH_SCORES[0][0]),
        result("b", cut, finish="length"),
        result("c", "Rating: [[9]] and the rest was cut", finish="length"),
    ]
    rows = list(judge_rows(results, SCORE))
    assert [r["status"] for r in rows] == ["scored", "truncated", "truncated"]
    assert rows[1]["raw"] == cut and rows[2]["score"] is None
    s = tally(SCORE, rows)
    assert (s["scored"], s["truncated"], s["n"], s["mean"]) == (1, 2, 1, 7)


def test_an_unparseable_row_says_why():
    [row] = judge_rows([result("a", answers.FREE_FORM_SCORES[4][0])], SCORE)
    assert row["status"] == "unparseable" and "declined" in row["reason"]


def test_a_pair_with_one_order_cut_off_is_truncated():
    results = [result("q#ab", "[[A>B]]"), result("q#ba", "My own answer is", finish="length")]
    [row] = judge_rows(results, PAIR)
    assert (row["status"], row["verdict"]) == ("truncated", None)
    assert tally(PAIR, [row])["truncated"] == 1


def pairs(*games):
    out = []
    for i, (first, swapped) in enumerate(games):
        out += [result(f"q{i}#ab", first), result(f"q{i}#ba", swapped)]
    return out


def test_strength_is_kept_in_the_row_and_the_arena_table_counts_every_game():
    results = pairs(
        ("[[A>>B]]", "[[B>>A]]"),  # A strongly, in both orders
        ("[[A>>B]]", "[[B>A]]"),  # A, once strongly and once slightly: weak
        ("[[B>A]]", "[[B>A]]"),  # the second position wins each time: a flip, a tie
        ("[[A=B]]", "[[A=B]]"),
        ("[[A>B]] [[B>A]]", "[[A>B]]"),  # conflicting labels: no verdict
    )
    rows = list(judge_rows(results, PAIR))
    assert [(r["verdict"], r["strength"], r["consistent"]) for r in rows] == [
        ("A", "strong", True),
        ("A", "weak", True),
        ("tie", None, False),
        ("tie", None, True),
        (None, None, None),
    ]
    assert rows[0]["labels"] == ["A>>B", "B>>A"]
    s = tally(PAIR, rows)
    assert s["strength"]["wins"] == {"strong": 1, "weak": 1}
    arena = s["arena"]
    assert {k: arena[k] for k in ("A>>B", "A>B", "A=B", "B>A", "B>>A")} == {
        "A>>B": 3, "A>B": 2, "A=B": 2, "B>A": 1, "B>>A": 0}  # fmt: skip
    assert arena["games"] == 8
    # Arena-Hard's battles: a strong verdict counts 3 times; A=B is half a point.
    # points: 3*3 (A>>B) + 2 (A>B) + 2*0.5 (A=B) = 12; battles: 9 + 2 + 2 + 1 = 14.
    assert arena["score"] == pytest.approx(12 / 14)
    assert s["position_consistency"] == pytest.approx(3 / 4)


def test_the_length_check_reports_the_share_of_wins_that_went_to_the_longer_answer(tmp_path):
    path = tmp_path / "in.jsonl"
    items = [("q0", "a long answer here", "short"), ("q1", "short", "a long answer here"),
             ("q2", "long answer", "tiny"), ("q3", "same", "same")]  # fmt: skip
    path.write_text("".join(json.dumps({"id": i, "answer_a": a, "answer_b": b}) + "\n"
                            for i, a, b in items))  # fmt: skip
    lengths = JudgeSource(path, PAIR).answer_lengths()
    assert lengths["q0"] == (18, 5)
    # q0: A (longer) wins; q1: A (shorter) wins; q2: B (shorter) wins; q3: a tie.
    results = pairs(("[[A]]", "[[B]]"), ("[[A]]", "[[B]]"), ("[[B]]", "[[A]]"),
                    ("[[C]]", "[[C]]"))  # fmt: skip
    rows = list(judge_rows(results, PAIR, lengths=lengths))
    assert [r["longer"] for r in rows] == ["A", "B", "A", "same"]
    check = tally(PAIR, rows)["length_check"]
    assert (check["wins"], check["longer_won"]) == (3, 1)
    assert check["share"] == pytest.approx(1 / 3)


def test_judgelm_and_prometheus_relative_verdicts_combine_over_both_orders():
    results = pairs(("8 6\nA is better.", "6 8\nThe second is better."),
                    ("Feedback: ... [RESULT] B", "Feedback: ... [RESULT] A"))  # fmt: skip
    rows = list(judge_rows(results, PAIR))
    assert [r["verdict"] for r in rows] == ["A", "B"]
    assert [r["consistent"] for r in rows] == [True, True]


def test_a_letter_grade_is_scored_only_with_a_mapping():
    options = JudgeOptions(model="m", template=Template.parse("{answer}"), scale=Scale(0, 1),
                           grades={"C": 1.0, "I": 0.0})  # fmt: skip
    [row] = judge_rows([result("a", "The answer is right.\nGRADE: C")], options)
    assert (row["status"], row["score"]) == ("scored", 1)
    [row] = judge_rows([result("a", "The answer is right.\nGRADE: C")], SCORE)
    assert row["status"] == "unparseable"
