"""Presets: judge runs set up as MT-Bench, Arena-Hard and Prometheus set theirs up.

A preset fills, for each mode it supports, the prompt template, the system message,
the scale, max_tokens and the parser, as that framework defines them: the output
format its prompt asks for (`Rating: [[5]]`, `[[A>>B]]`, `[RESULT] 4`), its judges'
token budget (FastChat: 2048; Arena-Hard: 4096; Prometheus: 1024) and its own
extraction rule. The prompts are worded here, in each framework's structure and with
its exact output format; pass `--template`/`--system` with a framework's published
prompt to use that text: whatever the user gives overrides the preset.

Fields a line needs:
    mt-bench    score: question, answer; pairwise: question, answer_a, answer_b
    arena-hard  pairwise: question, answer_a, answer_b
    prometheus  score: question, answer, rubric; pairwise: + answer_a, answer_b
"""

from __future__ import annotations

from dataclasses import dataclass

from chatq.errors import InvalidRequest
from tasks.judge.formats import Scale
from tasks.judge.options import JudgeOptions
from tasks.judge.template import Template

__all__ = ["NAMES", "PRESETS", "Preset", "preset_for", "resolve"]


@dataclass(frozen=True)
class Preset:
    """One framework's setup for one mode."""

    name: str
    mode: str
    template: str
    system: str | None
    scale: Scale
    max_tokens: int
    parser: str


_MT_BENCH_SINGLE = """[Instruction]
Judge, impartially, the quality of the response an AI assistant gave to the user \
question below. Weigh its helpfulness, relevance, accuracy, depth, creativity and \
level of detail. Begin with a short explanation, as objective as you can make it. \
Then rate the response on a scale of 1 to 10, strictly in this format: "[[rating]]", \
for example: "Rating: [[5]]".

[Question]
{question}

[The Start of Assistant's Answer]
{answer}
[The End of Assistant's Answer]"""

_MT_BENCH_PAIR_SYSTEM = """Judge, impartially, the responses two AI assistants gave to \
the user question below, and choose the one that follows the user's instructions and \
answers the question better, weighing helpfulness, relevance, accuracy, depth, \
creativity and level of detail. Compare the two responses and give a short explanation. \
Do not let the order in which they appear, their length or the assistants' names sway \
you; be as objective as you can. After your explanation, give your final verdict \
strictly in this format: "[[A]]" if assistant A is better, "[[B]]" if assistant B is \
better, and "[[C]]" for a tie."""

_MT_BENCH_PAIR = """[User Question]
{question}

[The Start of Assistant A's Answer]
{answer_a}
[The End of Assistant A's Answer]

[The Start of Assistant B's Answer]
{answer_b}
[The End of Assistant B's Answer]"""

_ARENA_HARD_SYSTEM = """You are an impartial judge of the answers two AI assistants \
gave to the user prompt below: decide which answer is better.

First write your own answer to the prompt, before you judge theirs. Then compare both \
assistants' answers with yours, and point out and correct any mistake or inaccuracy.

Consider whether each answer is helpful (it answers the prompt correctly and follows \
its instructions; where the prompt is ambiguous, asking for clarification beats \
assuming), relevant (every part bears on the prompt) and concise (clear, not verbose). \
Weigh creativity and novelty where they matter, and note any important information \
missing from an answer.

After your explanation, give exactly one of these labels as your final verdict:

1. Assistant A is significantly better: [[A>>B]]
2. Assistant A is slightly better: [[A>B]]
3. Tie, relatively the same: [[A=B]]
4. Assistant B is slightly better: [[B>A]]
5. Assistant B is significantly better: [[B>>A]]

For example: "My final verdict is tie: [[A=B]]"."""

_ARENA_HARD = """<|User Prompt|>
{question}

<|The Start of Assistant A's Answer|>
{answer_a}
<|The End of Assistant A's Answer|>

<|The Start of Assistant B's Answer|>
{answer_b}
<|The End of Assistant B's Answer|>"""

_PROMETHEUS_SYSTEM = """You are a fair judge: you give clear, objective feedback on a \
response against a given rubric, and each assessment holds it to the rubric's \
standards, not to your general impression."""

_PROMETHEUS_ABSOLUTE = """###Task Description:
You are given an instruction, a response to evaluate and a score rubric.
1. Write feedback that assesses the response strictly against the rubric.
2. Then give a score, an integer from 1 to 5, as the rubric defines them.
3. Answer in exactly this form: "Feedback: (your feedback) [RESULT] (an integer \
number between 1 and 5)"
4. Write nothing before or after it.

###The instruction to evaluate:
{question}

###Response to evaluate:
{answer}

###Score Rubrics:
{rubric}

###Feedback: """

_PROMETHEUS_RELATIVE = """###Task Description:
You are given an instruction, two responses to evaluate (A and B) and a rubric.
1. Write feedback that compares the two responses strictly against the rubric.
2. Then choose the better response, A or B.
3. Answer in exactly this form: "Feedback: (your feedback) [RESULT] (Either "A" or "B")"
4. Write nothing before or after it.

###Instruction:
{question}

###Response A:
{answer_a}

###Response B:
{answer_b}

###Score Rubric:
{rubric}

###Feedback: """

_TEN, _FIVE = Scale(1, 10), Scale(1, 5)
#: (preset, mode) -> Preset; the first mode listed for a preset is its default.
PRESETS: dict[tuple[str, str], Preset] = {
    ("mt-bench", "score"): Preset("mt-bench", "score", _MT_BENCH_SINGLE,
                                  "You are a helpful assistant.", _TEN, 2048, "mt-bench"),
    ("mt-bench", "pairwise"): Preset("mt-bench", "pairwise", _MT_BENCH_PAIR,
                                     _MT_BENCH_PAIR_SYSTEM, _TEN, 2048, "mt-bench"),
    ("arena-hard", "pairwise"): Preset("arena-hard", "pairwise", _ARENA_HARD,
                                       _ARENA_HARD_SYSTEM, _TEN, 4096, "arena-hard"),
    ("prometheus", "score"): Preset("prometheus", "score", _PROMETHEUS_ABSOLUTE,
                                    _PROMETHEUS_SYSTEM, _FIVE, 1024, "prometheus"),
    ("prometheus", "pairwise"): Preset("prometheus", "pairwise", _PROMETHEUS_RELATIVE,
                                       _PROMETHEUS_SYSTEM, _FIVE, 1024, "prometheus"),
}  # fmt: skip
NAMES = tuple(dict.fromkeys(name for name, _ in PRESETS))


def preset_for(name: str, mode: str | None) -> Preset:
    """The preset `name` in `mode` (None: the preset's first mode).

    Raises:
        InvalidRequest: no such preset, or it has no such mode.
    """
    modes = [m for n, m in PRESETS if n == name]
    if not modes:
        raise InvalidRequest(f"no preset {name!r} (known: {', '.join(NAMES)})")
    mode = mode or modes[0]
    if (name, mode) not in PRESETS:
        raise InvalidRequest(f"the {name} preset has no {mode} mode (it has: {', '.join(modes)})")
    return PRESETS[(name, mode)]


def resolve(
    *,
    model: str,
    preset: str | None = None,
    mode: str | None = None,
    template: Template | None = None,
    system: str | None = None,
    scale: Scale | None = None,
    max_tokens: int | None = None,
    parser: str | None = None,
    grades: dict[str, float] | None = None,
    a_field: str = "answer_a",
    b_field: str = "answer_b",
) -> JudgeOptions:
    """A run's options: what the user gave, else the preset's, else the defaults.

    Raises:
        InvalidRequest: an unknown preset or mode; no template and no preset; a pairwise
            template that lacks either answer's field.
    """
    chosen = preset_for(preset, mode) if preset else None
    if chosen:
        template = template or Template.parse(chosen.template)
        system = system if system is not None else chosen.system
        scale = scale or chosen.scale
        max_tokens = max_tokens or chosen.max_tokens
        parser = parser or chosen.parser
        mode = chosen.mode
    if template is None:
        raise InvalidRequest("judge needs --template (or --preset)")
    mode = mode or "score"
    if mode == "score" and parser in ("arena-hard", "judgelm"):
        raise InvalidRequest(f"the {parser} parser reads pairwise verdicts (--mode pairwise)")
    if mode == "pairwise" and not {a_field, b_field} <= set(template.fields):
        raise InvalidRequest(f"a pairwise template must use {{{a_field}}} and {{{b_field}}}")
    return JudgeOptions(
        model=model, template=template, mode=mode, scale=scale or Scale(1, 10), system=system,
        max_tokens=max_tokens, a_field=a_field, b_field=b_field, parser=parser or "auto",
        grades=grades, preset=preset,
    )  # fmt: skip
