"""Judge answers as real judges write them, through the score and verdict parsers."""

from __future__ import annotations

import pytest

from tasks.judge.formats import Scale, parse_scale, parse_score, parse_verdict

TEN = Scale(1, 10)


@pytest.mark.parametrize(
    ("answer", "score"),
    [
        ("7", 7),
        ("7/10", 7),
        ("Score: 7", 7),
        ("**7**", 7),
        ("[[7]]", 7),
        ('{"score": 7}', 7),
        ("I would rate this response a 7.", 7),
        ("Rating: 8/10\nClear and correct.", 8),
        ("8\n\nThe answer is mostly right but misses an edge case.", 8),
        ('```json\n{"score": "6", "reason": "ok"}\n```', 6),
        ("<think>it could be a 3 or so</think>Score: 9", 9),
        ("On a scale of 1-10, I give it 6.", 6),
        ("Overall score: **4** out of 10", 4),
        ("7.5/10", 7.5),
        ("Final verdict: [[3]]", 3),
        ('{"reasoning": "concise, accurate", "rating": 5}', 5),
        ("Score - 2", 2),
        ("The response is accurate and complete. Score: 10", 10),
        ("Helpfulness: good. Accuracy: fine.\nFinal score: 8", 8),
        ("I'd give this a 9 out of 10 because it is thorough.", 9),
        ("  10  ", 10),
        ("Rating: [[6]]", 6),
        ("The answer deserves 5.", 5),
    ],
)
def test_a_score_is_read_from_a_real_looking_judge_answer(answer, score):
    reading = parse_score(answer, TEN)
    assert (reading.status, reading.score) == ("scored", score)


@pytest.mark.parametrize(
    ("answer", "value"),
    [("11", 11), ("Score: 0", 0), ("[[12]]", 12), ('{"score": -1}', -1), ("15/10", 15)],
)
def test_a_number_outside_the_scale_is_out_of_range_never_a_score(answer, value):
    reading = parse_score(answer, TEN)
    assert (reading.status, reading.score, reading.value) == ("out_of_range", None, value)


@pytest.mark.parametrize(
    "answer", ["", "I cannot judge this.", "The response is good.", '{"score": "high"}', "   "]
)
def test_an_answer_without_a_number_is_unparseable_never_zero(answer):
    reading = parse_score(answer, TEN)
    assert (reading.status, reading.score) == ("unparseable", None)


def test_scales_are_written_low_dash_high():
    assert parse_scale("1-5") == Scale(1, 5)
    assert parse_score("5", parse_scale("1-5")).status == "scored"
    assert parse_score("7", parse_scale("1-5")).status == "out_of_range"
    with pytest.raises(ValueError):
        parse_scale("10-1")


@pytest.mark.parametrize(
    ("answer", "verdict"),
    [
        ("[[A]]", "A"),
        ("[[B]]", "B"),
        ("[[C]]", "tie"),
        ("A", "A"),
        ("**B**", "B"),
        ("Verdict: B", "B"),
        ("Assistant A is better.", "A"),
        ("Response B was preferred over A for its accuracy.", "B"),
        ('{"winner": "tie"}', "tie"),
        ("The better response is B.", "B"),
        ("Both are equally good.", "tie"),
        ("It is a tie.", "tie"),
        ("Hard to say.", None),
        ("The winner is a close call", None),
    ],
)
def test_a_pairwise_verdict_is_read_from_a_real_looking_answer(answer, verdict):
    assert parse_verdict(answer) == verdict
