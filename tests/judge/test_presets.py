"""Presets fill template, system, scale, max_tokens and parser; each one, run on the
mock judge, asks for its framework's format and reads the answers by its rule."""

from __future__ import annotations

import asyncio
import json

import pytest

from chatq.errors import InvalidRequest
from tasks.batch.output import Result
from tasks.judge.formats import Scale
from tasks.judge.presets import PRESETS, resolve
from tasks.judge.rows import judge_rows
from tasks.judge.run import JudgeSource
from tasks.judge.summary import Tally
from tasks.judge.template import Template
from worker.chat.mock import MockProvider

ITEM = {"question": "What is 2 + 2?", "answer": "4, since 2 + 2 = 4.", "answer_a": "4",
        "answer_b": "It is 5.", "rubric": "Is the sum right? 1: wrong ... 5: right"}  # fmt: skip


def run_on_mock(tmp_path, options, n=12):
    path = tmp_path / "in.jsonl"
    path.write_text("".join(json.dumps({**ITEM, "id": f"q{i}", "question": f"Q{i}: 2 + {i}?"})
                            + "\n" for i in range(n)))  # fmt: skip
    source = JudgeSource(path, options)
    lines = list(source.lines())
    results = []
    for line in lines:
        response = asyncio.run(MockProvider().chat(line.request, "score"))
        results.append(Result(line.custom_id, line.number, "t", response.model_dump(), None))
    rows = list(judge_rows(results, options, lengths=source.answer_lengths()))
    tally = Tally(options)
    for row in rows:
        tally.add(row)
    return lines, rows, tally.summary()


@pytest.mark.parametrize(
    ("preset", "mode", "marker", "tokens", "scale"),
    [
        ("mt-bench", "score", "[[rating]]", 2048, (1, 10)),
        ("mt-bench", "pairwise", "[[C]]", 2048, (1, 10)),
        ("arena-hard", "pairwise", "[[A>>B]]", 4096, (1, 10)),
        ("prometheus", "score", "[RESULT]", 1024, (1, 5)),
        ("prometheus", "pairwise", "[RESULT]", 1024, (1, 5)),
    ],
)
def test_each_preset_asks_in_its_format_and_reads_every_mock_answer(
    tmp_path, preset, mode, marker, tokens, scale
):
    options = resolve(model="mock/score", preset=preset, mode=mode)
    assert (options.mode, options.tokens, options.parser) == (mode, tokens, preset)
    assert options.scale == Scale(*scale)
    lines, rows, summary = run_on_mock(tmp_path, options)
    prompt = "\n".join(m.content for m in lines[0].request.messages)
    assert marker in prompt and "Q0: 2 + 0?" in prompt
    assert lines[0].request.max_tokens == tokens and lines[0].request.temperature == 0
    assert {r["status"] for r in rows} == {"scored"}, rows
    assert summary["scored"] == 12 and summary["preset"] == preset
    if mode == "score":
        assert {r["rule"] for r in rows} == {preset}
        assert all(scale[0] <= r["score"] <= scale[1] for r in rows)
    else:
        assert summary["arena"]["games"] == 24
        assert {r["longer"] for r in rows} == {"B"}  # "It is 5." is longer than "4"


def test_arena_hard_keeps_the_strength_of_mock_verdicts(tmp_path):
    options = resolve(model="mock/score", preset="arena-hard")
    _, rows, summary = run_on_mock(tmp_path, options, n=40)
    labels = {label for r in rows for label in r["labels"]}
    assert labels == {"A>>B", "A>B", "A=B", "B>A", "B>>A"}
    strong = summary["strength"]["wins"]["strong"] + summary["strength"]["losses"]["strong"]
    assert strong == sum(1 for r in rows if r["strength"] == "strong") > 0


def test_what_the_user_gives_overrides_the_preset():
    mine = Template.parse("Rate {answer} for {question}. Rating: [[n]]")
    options = resolve(model="m", preset="mt-bench", template=mine, system="be brief",
                      scale=Scale(0, 5), max_tokens=300, parser="auto")  # fmt: skip
    assert options.template is mine and options.system == "be brief"
    assert (options.scale, options.tokens, options.parser) == (Scale(0, 5), 300, "auto")


def test_a_run_without_a_preset_leaves_room_for_reasoning_judges():
    options = resolve(model="m", template=Template.parse("{answer}"))
    assert (options.mode, options.tokens, options.parser) == ("score", 1024, "auto")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"preset": "alpaca"}, "no preset"),
        ({"preset": "arena-hard", "mode": "score"}, "no score mode"),
        ({}, "--template"),
        ({"template": Template.parse("{answer}"), "mode": "pairwise"}, "must use"),
        ({"template": Template.parse("{answer}"), "parser": "arena-hard"}, "pairwise"),
    ],
)
def test_a_preset_or_option_that_cannot_work_is_refused(kwargs, message):
    with pytest.raises(InvalidRequest, match=message):
        resolve(model="m", **kwargs)


def test_every_preset_template_parses_and_uses_the_documented_fields():
    for (name, mode), preset in PRESETS.items():
        fields = set(Template.parse(preset.template).fields)
        assert {"question"} <= fields, name
        assert ({"answer_a", "answer_b"} if mode == "pairwise" else {"answer"}) <= fields


def test_a_max_tokens_too_small_for_the_reasoning_truncates_every_answer(tmp_path):
    options = resolve(model="mock/score", preset="mt-bench", max_tokens=8)
    _, rows, summary = run_on_mock(tmp_path, options, n=3)
    assert [r["status"] for r in rows] == ["truncated"] * 3
    assert all(r["raw"] and "[[" not in r["raw"] for r in rows)
    assert (summary["truncated"], summary["scored"], summary["n"]) == (3, 0, 0)
