"""The `chatq` command as a person runs it: real processes, real Redis, loopback only."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.fake_upstream import Answer

pytestmark = pytest.mark.integration


def chatq(
    *args: str, env: dict, stdin: str | bytes | None = None, timeout: float = 90, binary=False
):
    """Run `chatq ARGS` in a clean environment (plus `env`) from an empty directory;
    `binary` passes standard input and reads the output as bytes."""
    base = {k: v for k, v in os.environ.items() if not k.startswith(("CHATQ_", "REDIS_"))}
    cwd = Path(env.get("CHATQ_HOME", ".")).parent
    cwd.mkdir(parents=True, exist_ok=True)
    return subprocess.run(
        [sys.executable, "-m", "tasks.cli", *args],
        env={**base, **env},
        input=stdin,
        capture_output=True,
        text=not binary,
        timeout=timeout,
        cwd=cwd,
    )


@pytest.fixture
def embedded_env(tmp_path: Path) -> dict:
    """No REDIS_URL: chatq starts its own Redis and workers under a fresh home."""
    return {"CHATQ_HOME": str(tmp_path / "home"), "CHATQ_CONCURRENCY": "4"}


def test_chat_on_a_fresh_machine_runs_a_real_job_on_the_embedded_redis(embedded_env):
    done = chatq("chat", "mock/echo", "hello", env=embedded_env)
    assert done.returncode == 0, done.stderr
    assert done.stdout == "hello\n"
    assert "embedded Redis" in done.stderr
    assert (Path(embedded_env["CHATQ_HOME"]) / "redis" / "appendonly.aof").exists() or (
        Path(embedded_env["CHATQ_HOME"]) / "redis" / "appendonlydir"
    ).exists()


def test_chat_json_prints_the_whole_response_and_reads_the_prompt_from_stdin(env, start_worker):
    start_worker(env)
    done = chatq("chat", "mock/json", "-", "--system", "be terse", "--json", env=env,
                 stdin="what is 2+2?")  # fmt: skip
    assert done.returncode == 0, done.stderr
    response = json.loads(done.stdout)
    assert response["provider"] == "mock"
    assert json.loads(response["content"])["answer"] == "what is 2+2?"
    assert response["attempts"] == 1
    assert response["input_tokens"] > 0


def test_chat_passes_its_options_to_the_upstream(env, upstream, start_worker):
    start_worker(env)
    done = chatq(
        "chat", "ollama/llama3", "hi", "--max-tokens", "7", "--temperature", "0.5",
        "--format", "json", env=env,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    body = upstream.received[0].body
    assert body["options"] == {"temperature": 0.5, "num_predict": 7}
    assert body["format"] == "json"
    assert body["think"] is False


@pytest.mark.parametrize(
    ("args", "code", "says"),
    [
        (("chat", "mock/echo", "hi", "--temperature", "3"), 2, "temperature"),
        (("chat", "", "hi"), 2, "model"),
        (("chat", "gpt-oss:cloud", "hi"), 3, "OLLAMA_CLOUD_API_KEY"),
        (("chat", "kimi/k2", "hi"), 3, "KIMI_API_KEY"),
    ],
)
def test_bad_input_exits_with_its_code_and_one_line_before_starting_anything(
    embedded_env, args, code, says
):
    done = chatq(*args, env=embedded_env)
    assert done.returncode == code
    assert done.stderr.count("\n") == 1 and says in done.stderr
    assert "Traceback" not in done.stderr
    assert not (Path(embedded_env["CHATQ_HOME"]) / "redis").exists()


def test_a_bad_setting_exits_2_naming_the_variable(embedded_env):
    done = chatq("providers", env={**embedded_env, "CHATQ_TIMEOUT": "soon"})
    assert done.returncode == 2
    assert "CHATQ_TIMEOUT" in done.stderr


def test_an_upstream_failure_after_retries_exits_4(env, upstream, start_worker):
    env["CHATQ_MAX_ATTEMPTS"] = "2"
    start_worker(env)
    upstream.push(Answer.error(500), Answer.error(502))
    done = chatq("chat", "openrouter/a/b", "hi", env=env)
    assert done.returncode == 4
    assert "gave up after 2 calls" in done.stderr
    assert env["OPENROUTER_API_KEY"] not in done.stderr


def test_waiting_longer_than_timeout_exits_5(env, upstream, start_worker):
    start_worker(env)
    upstream.push(Answer.slow(4))
    done = chatq("chat", "ollama/llama3", "hi", "--timeout", "0.5", env=env)
    assert done.returncode == 5
    assert "0.5s" in done.stderr


def test_providers_lists_exactly_the_registered_ones(env, embedded_env):
    keyless = chatq("providers", "--json", env=embedded_env)
    assert json.loads(keyless.stdout) == ["mock", "ollama"]
    keyed = chatq("providers", env=env)
    assert keyed.stdout.split() == sorted(
        ["kimi", "mock", "ollama", "ollama_cloud", "opencode", "openrouter"]
    )


def test_metrics_prints_the_fleets_counters_and_queue_depths(env, redis_url):
    import redis

    from worker.metrics import JobStats, MetricsRecorder

    client = redis.Redis.from_url(redis_url)
    MetricsRecorder(client).job_ended(JobStats(provider="kimi", calls=2), response={})
    client.rpush("chat.kimi", "waiting")
    client.close()
    done = chatq("metrics", env=env)
    assert done.returncode == 0, done.stderr
    assert 'chatq_jobs_total{outcome="succeeded",provider="kimi"} 1.0' in done.stdout
    assert 'chatq_upstream_calls_total{provider="kimi"} 2.0' in done.stdout
    assert 'chatq_queue_depth{queue="chat.kimi"} 1.0' in done.stdout
