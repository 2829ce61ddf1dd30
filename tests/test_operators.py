"""What an operator sees after a batch with failing and retried lines: a real worker with
events, a real Flower process, the fake upstream and the test Redis. Flower's API shows
the failed lines by count and class, the retries and the queue depths; the metrics agree
with the batch summary; `batch status` says `done` although nobody followed the batch."""

from __future__ import annotations

import ast
import base64
import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.cli.test_chat import chatq
from tests.fake_upstream import Answer
from tests.redis_server import free_port
from tests.test_deploy import _wait_for_port

pytestmark = pytest.mark.integration

MODEL = "openrouter/acme/m1"


AUTH = "ops:pw"


def _get(url: str) -> object:
    """Flower's API answers only behind basic auth (as chatq starts it)."""
    token = base64.b64encode(AUTH.encode()).decode()
    request = urllib.request.Request(url, headers={"Authorization": f"Basic {token}"})
    with urllib.request.urlopen(request, timeout=10) as answer:
        body = answer.read().decode()
    return json.loads(body) if answer.headers.get_content_type() == "application/json" else body


def _batch_file(path: Path, upstream) -> Path:
    """12 lines in chunks of 4: 2 refused (401), 2 failing for good (500), 2 answered after
    a 429, 6 plain."""
    kinds = ["auth", "ok", "busy", "outage", "ok", "ok", "busy", "ok", "auth", "outage", "ok", "ok"]
    for n, kind in enumerate(kinds):
        marker = f"{kind}-{n}"
        if kind == "auth":
            upstream.when(marker, Answer.error(401, {"error": "invalid key"}))
        elif kind == "outage":
            upstream.when(marker, then=Answer.error(500, {"error": "down"}))
        elif kind == "busy":
            upstream.when(marker, Answer.rate_limited(0.1))
    lines = [
        {"custom_id": f"line-{n}", "model": MODEL,
         "messages": [{"role": "user", "content": f"question {kind}-{n}"}]}
        for n, kind in enumerate(kinds)
    ]  # fmt: skip
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return path


def _flower(env: dict, port: int, log: Path) -> subprocess.Popen:
    argv = [sys.executable, "-m", "celery", "-A", "worker", "flower",
            "--address=127.0.0.1", f"--port={port}", f"--basic-auth={AUTH}"]  # fmt: skip
    handle = open(log, "wb")  # noqa: SIM115
    return subprocess.Popen(argv, env={**os.environ, **env}, stdout=handle, stderr=handle)


def _metrics(text: str) -> dict[tuple[str, tuple], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def _chunk_counts(task: dict) -> dict:
    """A chunk's counts as Flower shows them: its result, or its failure's message."""
    if task["state"] == "SUCCESS":
        return ast.literal_eval(task["result"])
    found = re.search(r"jobs failed: (\{.*\})'\)$", task["exception"] or "")
    assert found, task["exception"]
    return json.loads(found.group(1))


def test_flower_metrics_and_batch_status_tell_the_same_true_story(
    env, upstream, producer_for, start_worker, tmp_path
):
    metrics_port, flower_port = free_port(), free_port()
    env.update(CHATQ_MAX_ATTEMPTS="2", CHATQ_CHUNK_SIZE="4", CHATQ_SWEEP_INTERVAL="1",
               CHATQ_METRICS_PORT=str(metrics_port))  # fmt: skip
    source = _batch_file(tmp_path / "in.jsonl", upstream)
    flower = _flower(env, flower_port, tmp_path / "flower.log")
    try:
        _wait_for_port(flower_port, timeout=30)
        base = f"http://127.0.0.1:{flower_port}"

        submitted = chatq("batch", "submit", str(source), env=env)
        assert submitted.returncode == 0, submitted.stderr
        batch_id = submitted.stdout.strip()

        # Queue depths, before any worker takes a message: 12 lines in 3 chunks.
        queues = _get(f"{base}/api/queues/length")["active_queues"]
        depths = {q["name"]: q["messages"] for q in queues}
        assert depths["chat.openrouter"] == 3
        assert {"celery", "chat.kimi", "chat.ollama"} <= set(depths)
        assert "chat.openrouter" in _get(f"{base}/broker")  # the Broker page, not a 404
        before = _metrics(chatq("metrics", env=env).stdout)
        assert before[("chatq_queue_depth", (("queue", "chat.openrouter"),))] == 3

        start_worker(env)
        # One single job retried once: its retries show on its own task.
        upstream.when("single-retried", Answer.rate_limited(0.1))
        single = producer_for(env).enqueue(
            "kimi/k2", [{"role": "user", "content": "single-retried"}]
        )

        status = {}
        end = time.monotonic() + 40
        while time.monotonic() < end and status.get("state") != "done":
            time.sleep(0.5)
            status = json.loads(chatq("batch", "status", batch_id, "--json", env=env).stdout)
        # Nobody followed the batch: the fleet marked it done, every count fresh.
        assert status["state"] == "done", status
        assert (status["succeeded"], status["failed"], status["running"]) == (8, 4, 0)
        assert status["pending"] == 0
        assert status["errors"] == {"AuthenticationFailed 401": 2, "UpstreamUnavailable 500": 2}
        assert status["retried"] == 2

        # Flower: every chunk in a final state, the failed ones under FAILURE.
        chunks: list[dict] = []
        tasks: dict = {}
        while time.monotonic() < end:
            tasks = _get(f"{base}/api/tasks")
            chunks = [t for t in tasks.values() if t["name"] == "chatq.chat_many"]
            single_task = tasks.get(single.id) or {}
            final = all(t["state"] in ("SUCCESS", "FAILURE") for t in chunks)
            if len(chunks) == 3 and final and single_task.get("state") == "SUCCESS":
                break
            time.sleep(0.5)
        assert len(chunks) == 3, tasks
        failed_view = _get(f"{base}/api/tasks?state=FAILURE")
        failed_chunks = [t for t in failed_view.values() if t["name"] == "chatq.chat_many"]
        assert len(failed_chunks) == 2  # lines 0-3 and 8-11 hold the failures, not 4-7
        assert all(t["runtime"] is not None for t in failed_chunks)
        failed, retries, ok = Counter(), Counter(), 0
        for chunk in chunks:
            counts = _chunk_counts(chunk)
            ok += counts["ok"]
            failed.update(counts.get("failed", {}))
            retries.update(counts.get("retries", {}))
        assert ok == 8
        assert failed == {"AuthenticationFailed 401": 2, "UpstreamUnavailable 500": 2}
        assert retries == {"RateLimited 429": 2, "UpstreamUnavailable 500": 2}
        assert tasks[single.id]["retries"] == 1
        assert "question" not in json.dumps(tasks)  # counts and sizes, never a prompt

        # The metrics, from the worker's endpoint, agree with the batch summary once the
        # worker has written its last second of counts (it writes them once a second).
        provider = (("provider", "openrouter"),)

        def metric(name: str, **labels: str) -> float:
            return metrics.get((name, tuple(sorted({**dict(provider), **labels}.items()))), 0)

        jobs = status["succeeded"] + status["failed"]
        written_by = time.monotonic() + 5
        while True:
            with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics") as answer:
                metrics = _metrics(answer.read().decode())
            ended = metric("chatq_jobs_total", outcome="succeeded")
            ended += metric("chatq_jobs_total", outcome="failed")
            if ended >= jobs or time.monotonic() > written_by:
                break
            time.sleep(0.2)

        assert metric("chatq_jobs_total", outcome="succeeded") == status["succeeded"]
        assert metric("chatq_jobs_total", outcome="failed") == status["failed"]
        for label, count in status["errors"].items():
            error, code = label.split()
            assert metric("chatq_errors_total", error=error, status=code) == count
        assert metric("chatq_retries_total", reason="RateLimited 429") == 2
        assert metric("chatq_rate_limited_total") == 2
        # 8 answered, 2 429s, 2 401s, the 500s twice each (CHATQ_MAX_ATTEMPTS=2)
        assert metric("chatq_upstream_calls_total") == 8 + 2 + 2 + 2 * 2
        assert metric("chatq_tokens_total", direction="in") == status["input_tokens"]
        assert metric("chatq_tokens_total", direction="out") == status["output_tokens"]
        assert metrics[("chatq_queue_depth", (("queue", "chat.openrouter"),))] == 0
    finally:
        flower.send_signal(signal.SIGTERM)
        flower.wait(30)
