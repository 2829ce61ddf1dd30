"""OpenAI's API on chatq, with the official `openai` package as the client: chat
completions, files, and batches that run through the queue to their output files."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import openai
import pytest

from tests.fake_upstream import Answer

HELLO = [{"role": "user", "content": "hello"}]
# No Ollama Cloud key: `x:cloud` has no provider.
GATEWAY_ENV = {"OLLAMA_CLOUD_API_KEY": None}


@pytest.fixture
def client(gw) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{gw.url}/v1", api_key="unused", max_retries=0, timeout=30)


def _batch_file(tmp_path: Path, n: int, model: str = "mock/echo", bad: int = 0) -> Path:
    path = tmp_path / "input.jsonl"
    with path.open("w") as out:
        for i in range(n):
            body = {"model": model, "messages": [{"role": "user", "content": f"line {i}"}]}
            line = {"custom_id": f"r{i}", "method": "POST", "url": "/v1/chat/completions",
                    "body": body}  # fmt: skip
            out.write(json.dumps(line) + "\n")
        for i in range(bad):
            out.write(json.dumps({"custom_id": f"bad{i}", "body": {"model": model}}) + "\n")
    return path


def _until(client: openai.OpenAI, batch_id: str, *states: str, timeout: float = 30):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        batch = client.batches.retrieve(batch_id)
        if batch.status in states:
            return batch
        time.sleep(0.2)
    raise AssertionError(f"batch {batch_id} stayed {batch.status}")


def test_chat_completions_on_mock(client):
    answer = client.chat.completions.create(model="mock/echo", messages=HELLO, temperature=0)
    assert answer.object == "chat.completion"
    assert answer.choices[0].message.content == "hello"
    assert answer.usage.prompt_tokens > 0 and answer.model == "mock/echo"


def test_chat_completions_against_the_fake_upstream(gw, client):
    gw.upstream.push(Answer.rate_limited(0.05), Answer(content="retried fine"))
    answer = client.chat.completions.create(
        model="openrouter/acme/m1",
        messages=HELLO,
        max_tokens=7,
        response_format={"type": "json_object"},
    )
    assert answer.choices[0].message.content == "retried fine"
    sent = gw.upstream.received[-1]
    assert sent.path == "/v1/chat/completions" and sent.body["model"] == "acme/m1"
    assert sent.body["max_tokens"] == 7 and gw.upstream.calls == 2


def test_the_sdks_tool_conversation_and_seed_reach_the_upstream_and_tool_calls_come_back(
    gw, client
):
    tools = [{"type": "function", "function": {"name": "weather", "parameters": {
        "type": "object", "properties": {"city": {"type": "string"}}}}}]  # fmt: skip
    call = {"id": "call_9", "type": "function",
            "function": {"name": "weather", "arguments": '{"city": "Oslo"}'}}  # fmt: skip
    messages = [*HELLO, {"role": "assistant", "content": None, "tool_calls": [call]},
                {"role": "tool", "tool_call_id": "call_9", "content": "clear"}]  # fmt: skip
    gw.upstream.push(Answer.calling(("weather", {"city": "Bergen"})))
    answer = client.chat.completions.create(
        model="openrouter/acme/m1", messages=messages, tools=tools, seed=7, top_p=0.5
    )
    sent = gw.upstream.received[-1].body
    assert sent["messages"] == messages and sent["tools"] == tools
    assert (sent["seed"], sent["top_p"]) == (7, 0.5)
    choice = answer.choices[0]
    assert choice.finish_reason == "tool_calls" and choice.message.content is None
    assert choice.message.tool_calls[0].function.name == "weather"
    assert json.loads(choice.message.tool_calls[0].function.arguments) == {"city": "Bergen"}


def test_the_sdks_parse_gets_a_pydantic_answer_through_a_json_schema(gw, client):
    import pydantic

    class Verdict(pydantic.BaseModel):
        score: int

    gw.upstream.push(Answer(content='{"score": 8}'))
    answer = client.beta.chat.completions.parse(
        model="openrouter/acme/m1", messages=HELLO, response_format=Verdict
    )
    assert answer.choices[0].message.parsed == Verdict(score=8)
    sent = gw.upstream.received[-1].body["response_format"]
    assert sent["type"] == "json_schema" and sent["json_schema"]["name"] == "Verdict"


def test_chat_completion_errors_arrive_as_the_sdks_own_exceptions(gw, client):
    with pytest.raises(openai.BadRequestError) as bad:
        client.chat.completions.create(model="mock/echo", messages=HELLO, stream=True)
    assert bad.value.body["param"] == "stream"
    with pytest.raises(openai.BadRequestError) as bad:
        client.chat.completions.create(model="mock/echo", messages=[])
    assert "messages" in bad.value.message
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="gpt-oss:cloud", messages=HELLO)
    gw.upstream.push(*[Answer.error(401, {"error": "bad key"})])
    with pytest.raises(openai.APIStatusError) as failed:
        client.chat.completions.create(model="kimi/k2", messages=HELLO)
    assert failed.value.status_code == 502
    assert failed.value.body["upstream_status"] == 401


def test_models_lists_the_providers_prefixes(client):
    ids = {m.id for m in client.models.list()}
    assert {"mock/", "ollama/", "openrouter/", "kimi/", "opencode/"} <= ids


def test_a_batch_runs_to_completed_with_output_and_error_files(gw, client, tmp_path):
    path = _batch_file(tmp_path, 40, bad=2)
    uploaded = client.files.create(file=path.open("rb"), purpose="batch")
    assert uploaded.bytes == path.stat().st_size
    assert client.files.retrieve(uploaded.id).filename == "input.jsonl"
    assert client.files.content(uploaded.id).content == path.read_bytes()
    batch = client.batches.create(input_file_id=uploaded.id, endpoint="/v1/chat/completions",
                                  completion_window="24h", metadata={"run": "t1"})  # fmt: skip
    assert batch.status == "validating" and batch.metadata == {"run": "t1"}
    done = _until(client, batch.id, "completed", "failed")
    assert done.status == "completed", done
    assert (done.request_counts.total, done.request_counts.completed,
            done.request_counts.failed) == (42, 40, 2)  # fmt: skip
    assert done.in_progress_at and done.finalizing_at and done.completed_at
    output = [json.loads(x) for x in client.files.content(done.output_file_id).text.splitlines()]
    assert [o["custom_id"] for o in output] == [f"r{i}" for i in range(40)]
    assert output[3]["response"]["body"]["choices"][0]["message"]["content"] == "line 3"
    errors = [json.loads(x) for x in client.files.content(done.error_file_id).text.splitlines()]
    assert [e["custom_id"] for e in errors] == ["bad0", "bad1"]
    assert "messages" in errors[0]["error"]["message"]
    # the same batch, as the command line sees it
    status = subprocess.run(
        [sys.executable, "-m", "tasks.cli", "batch", "status", done.id, "--json"],
        env={**os.environ, **gw.env, "PYTHONPATH": str(Path(__file__).parents[2])},
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert status.returncode == 0, status.stderr
    assert json.loads(status.stdout)["state"] == "done"


def test_a_file_with_no_valid_line_fails_the_batch(client, tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"custom_id": "a", "body": {"model": "mock/echo"}}\nnot json\n')
    uploaded = client.files.create(file=path.open("rb"), purpose="batch")
    batch = client.batches.create(input_file_id=uploaded.id, endpoint="/v1/chat/completions",
                                  completion_window="24h")  # fmt: skip
    failed = _until(client, batch.id, "failed", "completed")
    assert failed.status == "failed" and failed.failed_at
    assert len(failed.errors.data) == 2 and "JSON" in failed.errors.data[1].message


def test_cancelling_a_batch_mid_run(gw, client, tmp_path):
    path = _batch_file(tmp_path, 60, model="ollama/slow")
    gw.upstream.delay = 0.3  # 8 calls at a time: the batch takes a few seconds
    try:
        uploaded = client.files.create(file=path.open("rb"), purpose="batch")
        batch = client.batches.create(input_file_id=uploaded.id,
                                      endpoint="/v1/chat/completions",
                                      completion_window="24h")  # fmt: skip
        _until(client, batch.id, "in_progress")
        time.sleep(0.5)
        cancelling = client.batches.cancel(batch.id)
        assert cancelling.status in ("cancelling", "cancelled")
        over = _until(client, batch.id, "cancelled", timeout=30)
    finally:
        gw.upstream.delay = 0.0
    counts = over.request_counts
    assert 0 < counts.completed < 60 and over.cancelled_at
    calls = gw.upstream.calls
    time.sleep(1.0)
    assert gw.upstream.calls == calls  # nothing more runs once cancelled
    done = len(client.files.content(over.output_file_id).text.splitlines())
    assert done == counts.completed
    errors = client.files.content(over.error_file_id).text.splitlines()
    assert len(errors) == 60 - done and "ancel" in errors[0]
    with pytest.raises(openai.ConflictError):
        client.batches.cancel(batch.id)


def test_batches_list_pages_newest_first(client, tmp_path):
    path = _batch_file(tmp_path, 2)
    uploaded = client.files.create(file=path.open("rb"), purpose="batch")
    made = [
        client.batches.create(input_file_id=uploaded.id, endpoint="/v1/chat/completions",
                              completion_window="24h").id
        for _ in range(3)
    ]  # fmt: skip
    first = client.batches.list(limit=2)
    assert [b.id for b in first.data] == made[::-1][:2] and first.has_more
    rest = client.batches.list(limit=2, after=first.data[-1].id)
    assert rest.data[0].id == made[0]
    seen = [b.id for b in client.batches.list(limit=2)]  # the SDK's auto-pagination
    assert seen[:3] == made[::-1]


def test_deleted_files_are_gone(client, tmp_path):
    path = _batch_file(tmp_path, 1)
    uploaded = client.files.create(file=path.open("rb"), purpose="batch")
    assert client.files.delete(uploaded.id).deleted
    with pytest.raises(openai.NotFoundError):
        client.files.retrieve(uploaded.id)
    with pytest.raises(openai.NotFoundError):
        client.files.content(uploaded.id)


def test_the_http_api_speaks_openais_error_envelope(gw):
    reply = httpx.get(f"{gw.url}/v1/batches/batch_nope")
    assert reply.status_code == 404
    assert set(reply.json()["error"]) >= {"message", "type", "param", "code"}
