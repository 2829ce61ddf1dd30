"""Reading batch files: both forms, mixed, and every kind of bad line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from chatq.errors import InvalidRequest, ProviderNotFound
from tasks.batch.input import read_lines

HELLO = [{"role": "user", "content": "hello"}]


def write(tmp_path: Path, *rows) -> Path:
    path = tmp_path / "in.jsonl"
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


def openai_line(custom_id, **body):
    return {"custom_id": custom_id, "method": "POST", "url": "/v1/chat/completions",
            "body": {"model": "mock/echo", "messages": HELLO, **body}}  # fmt: skip


def test_an_openai_batch_api_line_becomes_the_same_chat_request(tmp_path):
    fmt = {"type": "json_object"}
    path = write(tmp_path, openai_line("q1", max_tokens=50, temperature=0, response_format=fmt,
                                       top_p=1))  # fmt: skip
    [line] = read_lines(path)
    assert line.error is None and line.custom_id == "q1"
    r = line.request
    assert (r.model, r.max_tokens, r.temperature, r.format) == ("mock/echo", 50, 0, "json")
    assert r.messages[0].content == "hello"


def test_an_openai_line_carries_its_sampling_options_through(tmp_path):
    sampling = {"seed": 42, "top_p": 0.5, "stop": ["END"], "presence_penalty": 0.1,
                "frequency_penalty": 0.2, "n": 1}  # fmt: skip
    path = write(tmp_path, openai_line("q1", **sampling), {"custom_id": "q2", "model": "m",
                 "messages": HELLO, "seed": 42, "top_k": 5, "min_p": 0.1})  # fmt: skip
    first, second = read_lines(path)
    assert first.request.sampling() == {k: v for k, v in sampling.items() if k != "n"}
    assert second.request.sampling() == {"seed": 42, "top_k": 5, "min_p": 0.1}


def test_an_option_the_lines_provider_cannot_honour_is_that_lines_error(tmp_path):
    def prepare(request):
        if request.top_k is not None:
            raise InvalidRequest("kimi cannot honour top_k", field="top_k", provider="kimi")
        return request

    path = write(tmp_path, openai_line("a", top_k=5), openai_line("b", n=2), openai_line("c"))
    a, b, c = read_lines(path, prepare=prepare)
    assert a.error["type"] == "InvalidRequest" and "top_k" in a.error["message"]
    assert b.error["type"] == "InvalidRequest" and "n must be 1" in b.error["message"]
    assert c.error is None


def test_a_json_schema_response_format_keeps_its_schema_and_name(tmp_path):
    schema = {"type": "object", "properties": {"score": {"type": "integer"}}}
    fmt = {"type": "json_schema", "json_schema": {"name": "score", "schema": schema,
                                                  "strict": True}}  # fmt: skip
    path = write(tmp_path, openai_line("a", response_format=fmt),
                 {"custom_id": "b", "model": "m", "messages": HELLO, "format": schema},
                 openai_line("c", response_format={"type": "json_schema"}))  # fmt: skip
    a, b, c = read_lines(path)
    assert a.request.format == {"title": "score", **schema}
    assert b.request.format == schema
    assert c.error["type"] == "InvalidRequest" and "json_schema.schema" in c.error["message"]


def test_plain_and_openai_lines_mix_freely_in_one_file(tmp_path):
    path = write(tmp_path, openai_line("a"), {"custom_id": "b", "model": "mock/json",
                 "messages": HELLO, "think": False}, openai_line("c"))  # fmt: skip
    lines = list(read_lines(path))
    assert [(x.custom_id, x.request.model) for x in lines] == [
        ("a", "mock/echo"), ("b", "mock/json"), ("c", "mock/echo")]  # fmt: skip


def test_model_fills_lines_that_name_none_and_custom_id_defaults_to_the_line_number(tmp_path):
    path = write(tmp_path, {"messages": HELLO}, "", {"messages": HELLO, "model": "mock/json"})
    lines = list(read_lines(path, model="mock/score"))
    assert [(x.custom_id, x.request.model) for x in lines] == [
        ("1", "mock/score"), ("3", "mock/json")]  # fmt: skip


def test_openai_text_parts_are_joined_and_developer_is_a_system_message(tmp_path):
    messages = [{"role": "developer", "content": "be brief"},
                {"role": "user", "content": [{"type": "text", "text": "hel"},
                                             {"type": "text", "text": "lo"}]}]  # fmt: skip
    [line] = read_lines(write(tmp_path, openai_line("x", messages=messages)))
    assert [(m.role, m.content) for m in line.request.messages] == [
        ("system", "be brief"), ("user", "hello")]  # fmt: skip


def test_an_openai_tool_conversation_with_an_image_is_read_as_written(tmp_path):
    call = {"id": "call_1", "type": "function",
            "function": {"name": "look", "arguments": "{}"}}  # fmt: skip
    image = {"type": "image_url", "image_url": {"url": "https://example.org/a.png"}}
    messages = [{"role": "user", "content": [{"type": "text", "text": "what?"}, image]},
                {"role": "assistant", "tool_calls": [call]},
                {"role": "tool", "tool_call_id": "call_1", "content": "a cat"}]  # fmt: skip
    tools = [{"type": "function", "function": {"name": "look", "parameters": {}}}]
    [line] = read_lines(write(tmp_path, openai_line("x", messages=messages, tools=tools)))
    assert line.error is None
    user, assistant, tool = line.request.messages
    assert user.images == ["https://example.org/a.png"] and user.text == "what?"
    assert assistant.content is None and assistant.tool_calls[0].id == "call_1"
    assert tool.tool_call_id == "call_1"
    assert line.request.tools == tools


@pytest.mark.parametrize(
    ("row", "kind", "words"),
    [
        ("{not json", "InvalidRequest", "not valid JSON"),
        ('["a list"]', "InvalidRequest", "JSON object"),
        ({"custom_id": "x", "model": "mock/echo"}, "InvalidRequest", "no messages"),
        ({"custom_id": "x", "messages": HELLO}, "InvalidRequest", "no model"),
        ({"model": "mock/echo", "messages": [{"role": "robot", "content": "x"}]},
         "InvalidRequest", "messages.0.role"),
        (openai_line("x", n=3), "InvalidRequest", "n must be 1"),
        ({**openai_line("x"), "url": "/v1/embeddings"}, "InvalidRequest", "not supported"),
        ({"model": "mock/echo", "messages": HELLO, "colour": 1}, "InvalidRequest", "colour"),
    ],
)  # fmt: skip
def test_a_bad_line_becomes_its_own_error_with_its_line_number(tmp_path, row, kind, words):
    path = write(tmp_path, openai_line("ok"), row)
    good, bad = read_lines(path)
    assert good.error is None
    assert bad.request is None
    assert bad.error["type"] == kind and bad.error["line"] == 2
    assert words in bad.error["message"] and bad.error["message"].startswith("line 2:")


def test_an_unknown_provider_is_that_lines_error(tmp_path):
    def prepare(request):
        if request.model.startswith("openrouter/"):
            raise ProviderNotFound("provider 'openrouter' is not registered")
        return request

    path = write(tmp_path, {"model": "openrouter/a/b", "messages": HELLO}, openai_line("ok"))
    bad, good = read_lines(path, prepare=prepare)
    assert bad.error["type"] == "ProviderNotFound" and good.error is None


def test_a_duplicate_line_is_refused_naming_the_custom_id(tmp_path):
    [line] = read_lines(write(tmp_path, openai_line("q7")))
    dup = line.duplicate()
    assert dup.error["type"] == "InvalidRequest" and "'q7'" in dup.error["message"]
