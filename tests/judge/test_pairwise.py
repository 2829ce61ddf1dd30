"""Pairwise judging: both orders, flips as ties, the consistency rate."""

from __future__ import annotations

import json

import pytest

from chatq.errors import InvalidRequest
from tasks.batch.output import Result
from tasks.judge.options import JudgeOptions
from tasks.judge.rows import combine, judge_rows
from tasks.judge.run import JudgeSource
from tasks.judge.summary import Tally, summary_path
from tasks.judge.template import Template


@pytest.mark.parametrize(
    ("first", "swapped", "verdict", "consistent"),
    [
        ("A", "B", "A", True),  # A wins in both positions
        ("B", "A", "B", True),
        ("tie", "tie", "tie", True),
        ("A", "A", "tie", False),  # the first position wins each time: a flip
        ("B", "B", "tie", False),
        ("A", "tie", "tie", False),
        (None, "A", None, None),
    ],
)
def test_a_verdict_that_flips_with_the_order_is_a_tie(first, swapped, verdict, consistent):
    assert combine(first, swapped) == (verdict, consistent)


def test_each_item_is_judged_twice_with_the_answers_swapped(tmp_path):
    path = tmp_path / "in.jsonl"
    path.write_text(json.dumps({"id": "q1", "answer_a": "cat", "answer_b": "dog"}) + "\n")
    options = JudgeOptions(model="mock/echo", template=Template.parse("1:{answer_a} 2:{answer_b}"),
                           mode="pairwise")  # fmt: skip
    first, second = JudgeSource(path, options).lines()
    assert (first.custom_id, second.custom_id) == ("q1#ab", "q1#ba")
    assert first.request.messages[-1].content == "1:cat 2:dog"
    assert second.request.messages[-1].content == "1:dog 2:cat"
    assert first.request.temperature == 0 and first.request.think is False
    assert first.request.max_tokens == 1024  # room for reasoning before the verdict


def test_rows_and_summary_count_wins_ties_and_consistency():
    def pair(cid, v1, v2):
        return [Result(f"{cid}#ab", 1, "t", {"content": v1}, None),
                Result(f"{cid}#ba", 1, "t", {"content": v2}, None)]  # fmt: skip

    results = (
        pair("a", "[[A]]", "[[B]]")
        + pair("b", "[[A]]", "[[A]]")
        + pair("c", "B", "A")
        + pair("d", "hmm", "A")
    )
    options = JudgeOptions(model="m", template=Template.parse("{answer_a}{answer_b}"),
                           mode="pairwise")  # fmt: skip
    tally = Tally(options)
    rows = list(judge_rows(results, options))
    for row in rows:
        tally.add(row)
    assert [r["verdict"] for r in rows] == ["A", "tie", "B", None]
    s = tally.summary()
    assert (s["items"], s["scored"], s["unparseable"]) == (4, 3, 1)
    assert s["win_rate"] == pytest.approx(1 / 3) and s["tie_rate"] == pytest.approx(1 / 3)
    assert s["position_consistency"] == pytest.approx(2 / 3)
    assert s["win_ci95"][0] < 1 / 3 < s["win_ci95"][1]


def test_a_missing_template_field_is_that_lines_error(tmp_path):
    path = tmp_path / "in.jsonl"
    path.write_text(json.dumps({"id": "q1", "question": "?"}) + "\n")
    options = JudgeOptions(model="mock/score", template=Template.parse("{question} {answer}"))
    [line] = JudgeSource(path, options).lines()
    assert line.request is None and "answer" in line.error["message"]
    with pytest.raises(InvalidRequest):
        Template.parse("{answer:>3}")


def test_the_summary_sits_beside_the_output():
    from pathlib import Path

    assert summary_path(Path("/x/scores.jsonl")) == Path("/x/scores.summary.json")
