"""Long judge answers of each framework, each read by that framework's own rule."""

from __future__ import annotations

import pytest

from tasks.judge.formats import Scale, parse_grades, read_score, read_verdict
from tests.judge import answers

TEN, FIVE = Scale(1, 10), Scale(1, 5)


def _ids(table):
    return [f"{i}-{text.split(chr(10))[0][:30]}" for i, (text, _) in enumerate(table)]


@pytest.mark.parametrize(("answer", "label"), answers.MT_BENCH_SCORES,
                         ids=_ids(answers.MT_BENCH_SCORES))  # fmt: skip
@pytest.mark.parametrize("parser", ["auto", "mt-bench"])
def test_mt_bench_ratings_are_the_first_double_bracketed_number(answer, label, parser):
    reading = read_score(answer, TEN, parser=parser)
    assert reading.score == label
    assert reading.status == ("scored" if label is not None else "unparseable")


@pytest.mark.parametrize(("answer", "label"), answers.PROMETHEUS_SCORES,
                         ids=_ids(answers.PROMETHEUS_SCORES))  # fmt: skip
@pytest.mark.parametrize("parser", ["auto", "prometheus"])
def test_prometheus_results_are_the_number_after_the_result_marker(answer, label, parser):
    reading = read_score(answer, FIVE, parser=parser)
    assert reading.score == label
    assert reading.status == ("scored" if label is not None else "unparseable")


@pytest.mark.parametrize(("answer", "label"), answers.FREE_FORM_SCORES,
                         ids=_ids(answers.FREE_FORM_SCORES))  # fmt: skip
def test_a_free_form_answer_is_read_for_its_final_verdict(answer, label):
    scale = FIVE if "out of 5" in answer else TEN
    reading = read_score(answer, scale)
    assert reading.score == label
    assert reading.status == ("scored" if label is not None else "unparseable")


def test_a_refusal_and_conflicting_verdicts_say_why_they_are_unparseable():
    refusal = read_score("I can't assign a score from 1 to 10 to an empty answer.", TEN)
    assert "declined" in refusal.reason
    conflict = read_score("Score: 7\n\nThe proof skips a case.\n\nScore: 5", TEN)
    assert "conflicting" in conflict.reason and conflict.value is None


@pytest.mark.parametrize(
    ("answer", "score"),
    [
        ("I would not give it a 10, but it is close. I give it a 9.", 9),
        ("The response covers 3/4 of the steps. Clarity 9, depth 6. Score: 6", 6),
        ("Clarity: 9/10\nAccuracy: 5/10\n\nOverall: 6/10", 6),
        ("Clarity: 9/10\nAccuracy: 5/10", None),  # sub-scores only: no verdict
        ("On a scale from 1 to 10.", None),
        ("The answer earns a clarity of 9.", None),
        ("I can't give it a 10 because of the typo; I'd give it 8.", 8),
        (
            "1. Accuracy (score: 8/10): right.\n2. Clarity (score: 6/10)\n\n**Final Score: 7/10**",
            7,
        ),
        ("Rating: 7/10. A 10/10 answer would also cite sources.", 7),
        ("The score I would give is 8, considering 2 minor errors.", 8),
        ("Final rating: 6/10\n\nBreakdown: helpfulness 7, accuracy 5.", 6),
        ("Let me think. 5 steps, 2 wrong. I can't give it more than 4. Score: 4", 4),
        ("Score: N/A - the response is empty.", None),
    ],
)
def test_numbers_in_the_reasoning_are_not_the_score(answer, score):
    assert read_score(answer, TEN).score == score


def test_a_letter_grade_is_no_score_unless_the_letters_are_mapped():
    answer = "The submission states the key fact (1969) but not the 2nd.\n\nGRADE: P"
    assert read_score(answer, TEN).status == "unparseable"
    grades = parse_grades("C=1,P=0.5,I=0")
    reading = read_score(answer, Scale(0, 1), grade_map=grades)
    assert (reading.status, reading.score) == ("scored", 0.5)
    assert read_score("GRADE: X", Scale(0, 1), grade_map=grades).status == "unparseable"
    with pytest.raises(ValueError):
        parse_grades("C:1")


@pytest.mark.parametrize(
    "answer",
    [
        '{"reasoning": "fine", "score": 7,}',
        '{"reasoning": "two\nlines", "score": 7}',
        'Verdict below.\n```json\n{"score": 7}\n```',
        '```\n{"rating": "7/10"}\n```',
    ],
)
def test_json_answers_are_read_leniently(answer):
    assert read_score(answer, TEN).score == 7


@pytest.mark.parametrize(("answer", "label"), answers.ARENA_HARD_VERDICTS,
                         ids=_ids(answers.ARENA_HARD_VERDICTS))  # fmt: skip
@pytest.mark.parametrize("parser", ["auto", "arena-hard"])
def test_arena_hard_labels_keep_their_strength_and_conflicts_are_no_verdict(answer, label, parser):
    verdict = read_verdict(answer, parser=parser)
    assert (verdict.winner, verdict.strength) == label


@pytest.mark.parametrize(("answer", "label"), answers.MT_BENCH_VERDICTS,
                         ids=_ids(answers.MT_BENCH_VERDICTS))  # fmt: skip
@pytest.mark.parametrize("parser", ["auto", "mt-bench"])
def test_mt_bench_verdicts_are_a_b_or_c_for_a_tie(answer, label, parser):
    verdict = read_verdict(answer, parser=parser)
    assert (verdict.winner, verdict.strength) == label


def test_mt_bench_checks_a_before_b_as_fastchat_does():
    assert read_verdict("Not [[B]]: my verdict is [[A]]").winner == "A"
    assert read_verdict("[[8, 6]]").scores == (8, 6)
    assert read_verdict("Rating pair: [[7, 7.05]]").winner == "tie"


@pytest.mark.parametrize(("answer", "label"), answers.PROMETHEUS_VERDICTS,
                         ids=_ids(answers.PROMETHEUS_VERDICTS))  # fmt: skip
@pytest.mark.parametrize("parser", ["auto", "prometheus"])
def test_prometheus_relative_grading_names_a_or_b(answer, label, parser):
    verdict = read_verdict(answer, parser=parser)
    assert (verdict.winner, verdict.strength) == label


@pytest.mark.parametrize(("answer", "label"), answers.JUDGELM_VERDICTS,
                         ids=_ids(answers.JUDGELM_VERDICTS))  # fmt: skip
@pytest.mark.parametrize("parser", ["auto", "judgelm"])
def test_judgelm_scores_both_answers_on_its_first_line(answer, label, parser):
    verdict = read_verdict(answer, parser=parser)
    assert (verdict.winner, verdict.scores) == label


def test_a_parser_named_for_a_framework_reads_only_that_frameworks_marker():
    assert read_score("Score: 7", TEN, parser="mt-bench").status == "unparseable"
    assert read_score("As in [3], the answer is good. [8]", TEN, parser="mt-bench").score == 3
    assert read_verdict("Assistant A is better.", parser="arena-hard").winner is None
    assert read_verdict("Assistant A is better.").winner == "A"
    with pytest.raises(ValueError):
        read_score("7", TEN, parser="arena-hard")


@pytest.mark.parametrize(
    ("answer", "winner"),
    [
        ("Answer A is concise, but B is complete and correct on 2 counts. Verdict: B", "B"),
        ("Verdict: A\n\nOn reflection, B handles the empty list.\nFinal verdict: B", None),
        ('```json\n{"reason": "B cites 2 sources,\nA none", "winner": "B",}\n```', "B"),
        ('{"verdict": "[[A>>B]]"}', "A"),
        ("Both are equally good; neither has the 3 errors I looked for.", "tie"),
    ],
)
def test_a_free_form_pairwise_answer_is_read_and_conflicts_are_no_verdict(answer, winner):
    assert read_verdict(answer).winner == winner
