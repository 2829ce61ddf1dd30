"""An OpenAI Batch file written for OpenAI runs unchanged on a real worker: its sampling
options and JSON Schemas reach the provider, and what the job paid for is counted."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tasks.batch.follow import Follower
from tasks.batch.output import write_results
from tasks.batch.service import Batches, FileSource
from tests.fake_upstream import REAL_ERRORS, Answer

pytestmark = pytest.mark.integration

SCORE = {"type": "object", "properties": {"score": {"type": "integer", "maximum": 10}},
         "required": ["score"], "additionalProperties": False}  # fmt: skip


def openai_line(custom_id: str, model: str, **body) -> dict:
    return {"custom_id": custom_id, "method": "POST", "url": "/v1/chat/completions",
            "body": {"model": model, "messages": [{"role": "user", "content": "rate it"}],
                     **body}}  # fmt: skip


def run_file(env, producer_for, start_worker, tmp_path: Path, *lines: dict) -> Batches:
    path = tmp_path / "in.jsonl"
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    batches = Batches(producer_for(env))
    source = FileSource(path, prepare=batches.producer.prepare)
    batches.submit("wire", source)
    start_worker(env)
    Follower(batches.store, batches.cache, "wire").run(poll=0.05, timeout=60)
    return batches


def test_a_schema_answer_that_does_not_match_is_asked_again_and_both_calls_are_counted(
    env, upstream, producer_for, start_worker, tmp_path
):
    fmt = {"type": "json_schema", "json_schema": {"name": "score", "schema": SCORE,
                                                  "strict": True}}  # fmt: skip
    upstream.push(Answer(content='{"score": 11}'), Answer(content='{"score": 7}'))

    batches = run_file(env, producer_for, start_worker, tmp_path, openai_line(
        "q1", "openrouter/openai/gpt-4o-mini", response_format=fmt, seed=42, top_p=0.5,
        stop="END", user="someone"))  # fmt: skip

    first, again = upstream.received
    assert again.body == first.body  # asked again as it was
    assert first.body["response_format"] == {"type": "json_schema", "json_schema": {
        "name": "score", "schema": {"title": "score", **SCORE}, "strict": True}}  # fmt: skip
    assert (first.body["seed"], first.body["top_p"], first.body["stop"]) == (42, 0.5, "END")
    assert "user" not in first.body
    [result] = batches.results("wire")
    response = result.response
    assert response["parsed"] == {"score": 7}
    assert response["attempts"] == 2
    per_call_prompt = max(1, len(json.dumps(first.body)) // 4)
    assert response["input_tokens"] == 2 * per_call_prompt
    assert response["output_tokens"] == len('{"score": 11}') // 4 + len('{"score": 7}') // 4
    out = tmp_path / "out.jsonl"
    write_results(batches.results("wire"), out, form="openai")
    body = json.loads(out.read_text())["response"]["body"]
    assert json.loads(body["choices"][0]["message"]["content"]) == {"score": 7}
    assert body["usage"]["prompt_tokens"] == 2 * per_call_prompt


def test_a_line_whose_provider_cannot_honour_an_option_fails_alone_and_is_never_queued(
    env, upstream, producer_for, start_worker, tmp_path
):
    batches = run_file(env, producer_for, start_worker, tmp_path,
                       openai_line("kimi", "kimi/kimi-for-coding", top_k=20),
                       openai_line("ollama", "ollama/llama3.2", top_k=20, min_p=0.1))  # fmt: skip

    kimi, ollama = batches.results("wire")
    assert kimi.error["type"] == "InvalidRequest"
    assert "kimi cannot honour top_k" in kimi.error["message"]
    assert ollama.response is not None
    [call] = upstream.received
    assert call.body["options"] == {"top_k": 20, "min_p": 0.1}


def test_an_empty_account_costs_one_call_a_batch_and_the_pause_shows_in_chatq_limits(
    env, upstream, producer_for, start_worker, tmp_path, settings_for
):
    import redis

    from worker.limits import RedisBackend
    from worker.limits.report import limits_report

    env = {**env, "CHATQ_KIMI_CONCURRENCY": "1"}  # one call at a time: the first tells
    upstream.push(REAL_ERRORS["openai_insufficient_quota"])

    lines = [openai_line(f"q{i}", "kimi/kimi-for-coding") for i in range(5)]
    batches = run_file(env, producer_for, start_worker, tmp_path, *lines)

    rows = list(batches.results("wire"))
    assert {r.error["type"] for r in rows} == {"QuotaExhausted"}
    assert upstream.calls == 1
    assert sum("no call was made" in r.error["message"] for r in rows) == 4
    client = redis.Redis.from_url(env["REDIS_URL"])
    try:
        [kimi] = [r for r in limits_report(settings_for(env), RedisBackend(client))
                  if r["provider"] == "kimi"]  # fmt: skip
    finally:
        client.close()
    assert kimi["paused_for"] > 500
    assert kimi["paused_because"].startswith("kimi answered 429: the account's quota")
