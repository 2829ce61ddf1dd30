"""Long judge answers as the judges of each framework write them, with the label each
framework's own extraction rule gives them (None: that rule reads nothing)."""

from __future__ import annotations

# -- MT-Bench single-answer grading: the first [[n]] (FastChat's one_score_pattern) --------
MT_BENCH_SCORES = [
    (
        "The assistant's answer explains the two approaches to memoization and gives a\n"
        "working example. It covers 3 of the 4 points a complete answer would cover, and\n"
        "misses the cost of the cache (a 10x memory increase on large inputs is not\n"
        "mentioned). The code is correct, although step 2/5 could be clearer.\n\n"
        "Rating: [[7]]",
        7,
    ),
    (
        "**Explanation:** The response is accurate and well organised:\n"
        "1. It defines the term correctly.\n2. It gives 2 examples.\n3. It cites a 2019 study.\n"
        "Its depth is comparable to a reference answer scoring 9 on this scale, but it\n"
        "omits the limitations section.\n\nRating: [[8.5]]",
        8.5,
    ),
    (
        "The answer contradicts itself twice and the final number (42) is wrong; the\n"
        "correct result is 24. I would not give it more than a 3.\n\nRating: [[2]]\n\n"
        "(For comparison, a correct answer would deserve [[9]].)",
        2,  # FastChat takes the first [[n]], even with a later one
    ),
    (
        "The response is in the wrong language and does not address the question at all,\n"
        "so on the 1-10 scale it earns the lowest rating. Rating: [[1]]",
        1,
    ),
    (
        "The assistant gives a thorough, correct and well-formatted answer with code:\n"
        "```python\nprint(sum(range(10)))  # 45\n```\nRating: [[10]]",
        10,
    ),
    (
        "The answer is mostly correct. It explains the first 3 steps clearly, but step 4\n"
        "has an off-by-one error, so overall it deserves a rating of",
        None,  # cut off before its [[rating]]: nothing to read
    ),
]

# -- Prometheus absolute grading: the number after [RESULT] --------------------------------
PROMETHEUS_SCORES = [
    (
        "Feedback: The response addresses the user's request for a 5-day itinerary, and\n"
        "covers 4 of the 5 days in detail. It fails the rubric's criterion on budget (the\n"
        "user asked for under $100 a day). Per the score rubric, a score of 5 requires all\n"
        "criteria to be met, which is not the case here. [RESULT] 4",
        4,
    ),
    (
        "Feedback: The response is polite but does not answer the question; per score 1\n"
        'of the rubric ("The response fails to address the question") this is the\n'
        "lowest level, though it avoids the errors a score of 2 would allow.\n[RESULT] 1",
        1,
    ),
    (
        "Feedback: Strong answer. It meets criteria 1-3 fully and criterion 4 mostly;\n"
        "it would score 5 with a citation. [RESULT] (3)",
        3,
    ),
    (
        "Feedback: The answer is concise and accurate, matching the reference answer in\n"
        "all 3 key facts. [RESULT] 5\n\nFeedback (revised): on reflection [RESULT] 4",
        None,  # two different results: no single verdict
    ),
    (
        "Feedback: The response describes the algorithm in 6 steps and explains its",
        None,  # cut off before [RESULT]
    ),
]

# -- G-Eval and free-form judges: the final verdict ----------------------------------------
FREE_FORM_SCORES = [
    (
        "Coherence analysis: the summary has 3 paragraphs; paragraph 2 repeats 1 point.\n"
        "- Clarity: 9\n- Relevance: 6\n\nScore: 7",
        7,
    ),
    (
        "The response gets 3/4 of the steps right and has a clarity score of 9, but the\n"
        "final step is wrong, which matters most here. It is not a 10; I give it 6.",
        6,
    ),
    (
        "**Strengths**: correct formula, 2 worked examples.\n**Weaknesses**: no units.\n\n"
        "I'd rate it 8 out of 10.",
        8,
    ),
    (
        "Evaluation Form (scores ONLY):\n\n- Fluency: 4/5 would be fair for the first\n"
        "paragraph alone.\n\nOverall score: **3** out of 5",
        3,
    ),
    (
        "I'm sorry, but I can't assign a score from 1 to 10 to this response: it is\n"
        "empty, and rating an empty answer would be meaningless.",
        None,  # a refusal that mentions the scale is no score
    ),
    (
        "I cannot evaluate this answer, since it is written in a language I cannot read\n"
        "well enough to judge on a 1-10 scale.",
        None,
    ),
    (
        "Final score: 7\n\nOn a second reading the proof skips a case.\n\nFinal score: 5",
        None,  # two conflicting final verdicts
    ),
    (
        '```json\n{\n  "reasoning": "Accurate on 2 of 3 claims;\nthe third (1998) is wrong.",\n'
        '  "score": 6,\n}\n```',
        6,  # fenced JSON with a raw newline and a trailing comma
    ),
    (
        'Here is my evaluation: {"clarity": 9, "accuracy": 5, "overall_score": 7}',
        7,
    ),
    (
        "The answer explains 3/4 of the steps and is rated highly for clarity (9/10), but\n"
        "its accuracy",
        None,  # cut off: a sub-score (clarity 9/10) is not the verdict
    ),
]

# -- Arena-Hard pairwise: one [[...]] label, or none -------------------------------------
ARENA_HARD_VERDICTS = [
    (
        "My own answer: the function should return 55 for n=10.\n\nAssistant A returns\n"
        "55 and explains memoization. Assistant B returns 89 (an off-by-one error) and\n"
        "its explanation of step 2 is wrong. A is correct, B is not.\n\n"
        "My final verdict is: Assistant A is significantly better: [[A>>B]]",
        ("A", "strong"),
    ),
    (
        "Both assistants answer correctly; B adds a short table, A is more concise.\n"
        "The table helps a little.\n\nMy final verdict is Assistant B is slightly better: "
        "[[B>A]]",
        ("B", "weak"),
    ),
    (
        "Both answers are correct and equally helpful, with 2 minor stylistic issues each.\n"
        "My final verdict is tie: [[A=B]]",
        ("tie", None),
    ),
    (
        "At first glance A looks better ([[A>B]]), but B handles the edge case of an empty\n"
        "list, which the prompt asked for.\n\nMy final verdict is: [[B>>A]]",
        (None, None),  # two different labels: Arena-Hard records no verdict
    ),
    (
        "Assistant B is much better: [[B>>A]]\n\nTo repeat: [[B>>A]]",
        ("B", "strong"),  # the same label twice is one verdict
    ),
    (
        "My own answer first: the capital of Australia is Canberra. Assistant A says\n"
        "Sydney, which is",
        (None, None),  # cut off before the label
    ),
]

# -- MT-Bench pairwise: [[A]], else [[B]], else [[C]] ---------------------------------------
MT_BENCH_VERDICTS = [
    (
        "Assistant A provides 3 examples and a correct explanation; Assistant B gives only\n"
        "1 example and a factual error about the 1969 date. [[A]]",
        ("A", None),
    ),
    (
        "Both responses are accurate and similarly detailed (about 200 words each).\n"
        'Final verdict: "[[C]]"',
        ("tie", None),
    ),
    (
        "Assistant B follows the user's instruction to answer in 2 sentences, while A\n"
        "writes 5. Therefore: [[B]]",
        ("B", None),
    ),
]

# -- Prometheus relative grading: [RESULT] A or B --------------------------------------------
PROMETHEUS_VERDICTS = [
    (
        "Feedback: Response A meets 4 of the 5 rubric criteria, Response B only 2; B also\n"
        "misstates the 1.5% rate. Response A is better. [RESULT] A",
        ("A", None),
    ),
    (
        "Feedback: Both responses are fluent, but only Response B cites a source as the\n"
        "rubric requires (score 5 criterion). [RESULT] B",
        ("B", None),
    ),
]

# -- JudgeLM: first line "A's score B's score" -------------------------------------------------
JUDGELM_VERDICTS = [
    (
        "8 6\nAssistant 1 gives a precise answer with 2 examples; Assistant 2 misses the\n"
        "second part of the question (rated 10 for fluency but 4 for completeness).",
        ("A", (8.0, 6.0)),
    ),
    (
        "7 9\nAssistant 2 is more complete.",
        ("B", (7.0, 9.0)),
    ),
    (
        "5 5\nBoth are equally vague; neither gives the 3 requested steps.",
        ("tie", (5.0, 5.0)),
    ),
]
