"""`chatq judge` and `chatq batch run` as a person runs them, killed halfway and run again."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import chatq_env
from tests.fake_upstream import Answer, FakeUpstream
from tests.judge import answers

pytestmark = pytest.mark.integration

N = 300


def start(args, env, cwd):
    base = {k: v for k, v in os.environ.items() if not k.startswith(("CHATQ_", "REDIS_"))}
    return subprocess.Popen(
        [sys.executable, "-m", "tasks.cli", *args],
        env={**base, **env},
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def judge_input(tmp_path: Path) -> tuple[Path, Path]:
    data, template = tmp_path / "items.jsonl", tmp_path / "t.txt"
    with open(data, "w") as f:
        for i in range(N):
            f.write(json.dumps({"id": f"item{i}", "answer": f"Score: {i % 10 + 1}"}) + "\n")
    template.write_text("Rate this answer from 1 to 10.\n{answer}")
    return data, template


def kill_halfway(proc, upstream: FakeUpstream) -> None:
    end = time.monotonic() + 60
    while upstream.calls < N // 2:
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < end, "no progress"
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()


def test_a_judge_run_killed_halfway_and_run_again_scores_every_item_exactly_once(
    upstream, redis_url, tmp_path, start_worker
):
    upstream.delay = 0.01
    env = chatq_env(upstream, redis_url, tmp_path / "home", CHATQ_OLLAMA_CONCURRENCY="4")
    start_worker(env)
    data, template = judge_input(tmp_path)
    args = ["judge", str(data), "--model", "ollama/judge", "--template", str(template),
            "-o", str(tmp_path / "scores.jsonl")]  # fmt: skip
    kill_halfway(start(args, env, tmp_path), upstream)
    assert upstream.calls < N
    again = start(args, env, tmp_path)
    out, err = again.communicate(timeout=120)
    assert again.returncode == 0, err
    rows = [json.loads(x) for x in (tmp_path / "scores.jsonl").read_text().splitlines()]
    assert [r["custom_id"] for r in rows] == [f"item{i}" for i in range(N)]
    assert [r["score"] for r in rows] == [i % 10 + 1 for i in range(N)]
    assert upstream.calls == N  # nothing paid twice
    summary = json.loads((tmp_path / "scores.summary.json").read_text())
    assert (summary["items"], summary["scored"], summary["mean"]) == (N, N, 5.5)
    assert "mean" in out


def test_batch_run_on_a_fresh_machine_resumes_after_a_kill_with_each_line_once(upstream, tmp_path):
    # OpenRouter (unlimited by default) rather than Ollama, whose fleet-wide concurrency
    # slots are leases in Redis that outlive a killed run until CHATQ_LIMIT_LEASE.
    upstream.delay = 0.01
    env = {
        "CHATQ_HOME": str(tmp_path / "home"),
        "OPENROUTER_URL": upstream.openai_url,
        "OPENROUTER_API_KEY": "test-openrouter-key-0123456789",
        "CHATQ_CONCURRENCY": "8",
    }
    path = tmp_path / "in.jsonl"
    with open(path, "w") as f:
        for i in range(N):
            f.write(
                json.dumps(
                    {
                        "custom_id": f"q{i}",
                        "model": "openrouter/a/x",
                        "messages": [{"role": "user", "content": f"n{i}"}],
                    }
                )
                + "\n"
            )
    args = ["batch", "run", str(path), "-o", str(tmp_path / "out.jsonl")]
    kill_halfway(start(args, env, tmp_path), upstream)
    _wait_for_redis_to_stop(tmp_path / "home")  # it goes down with the run it served
    began = time.monotonic()
    again = start(args, env, tmp_path)
    try:
        _, err = again.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        again.kill()
        _, err = again.communicate()
        raise AssertionError(err[-3000:]) from None
    resumed_in = time.monotonic() - began
    assert again.returncode == 0, err
    rows = [json.loads(x) for x in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert [r["custom_id"] for r in rows] == [f"q{i}" for i in range(N)]
    assert all(r["response"]["content"] == f"echo: n{i}" for i, r in enumerate(rows))
    # Only calls in flight when the run's embedded Redis went down with it can be paid
    # twice (their answers died with it): at most one worker's concurrency (8 threads)
    # times the chunk size (16 jobs run together), far fewer in practice.
    assert N <= upstream.calls <= N + 8 * 16, upstream.calls
    assert resumed_in < 60
    print(f"resume took {resumed_in:.1f}s, upstream calls {upstream.calls} for {N} lines")


def _wait_for_redis_to_stop(home: Path, timeout: float = 30) -> None:
    record = home / "redis" / "server.json"
    pid = json.loads(record.read_text())["pid"] if record.exists() else None
    end = time.monotonic() + timeout
    while pid is not None and time.monotonic() < end:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.05)


def _completion(content: str, finish: str) -> dict:
    return {"id": "chatcmpl-fake", "object": "chat.completion", "created": 1767225600,
            "model": "judge", "choices": [{"index": 0, "finish_reason": finish,
            "message": {"role": "assistant", "content": content}}],
            "usage": {"prompt_tokens": 9, "completion_tokens": 9, "total_tokens": 18}}  # fmt: skip


@pytest.mark.parametrize(
    ("preset", "answer", "system_marker", "max_tokens", "expect"),
    [
        ("mt-bench", answers.MT_BENCH_SCORES[0][0], None, 2048, {"mean": 7, "scale": [1, 10]}),
        ("prometheus", answers.PROMETHEUS_SCORES[0][0], "fair judge", 1024,
         {"mean": 4, "scale": [1, 5]}),
        ("arena-hard", answers.ARENA_HARD_VERDICTS[0][0], "[[A>>B]]", 4096,
         {"tie_rate": 1.0, "position_consistency": 0.0}),
    ],
    ids=["mt-bench", "prometheus", "arena-hard"],
)  # fmt: skip
def test_a_preset_run_against_the_upstream_asks_and_reads_as_its_framework(
    upstream, env, tmp_path, start_worker, preset, answer, system_marker, max_tokens, expect
):
    start_worker(env)
    data = tmp_path / "items.jsonl"
    items = [{"id": f"q{i}", "question": f"What is {i} + {i}?", "answer": f"{2 * i}",
              "answer_a": f"It is {2 * i}.", "answer_b": f"{2 * i}", "rubric": "1: wrong; 5: right"}
             for i in range(4)]  # fmt: skip
    data.write_text("".join(json.dumps(item) + "\n" for item in items))
    calls = 8 if preset == "arena-hard" else 4
    # Every call gets the same long answer, whatever order the calls arrive in; one
    # score-mode answer is cut off by max_tokens.
    pushed = [Answer(content=answer) for _ in range(calls)]
    if preset != "arena-hard":
        pushed[-1] = Answer(kind="json", body=_completion(answer[:60], "length"))
    upstream.push(*pushed)
    out = tmp_path / "scores.jsonl"
    proc = start(["judge", str(data), "--model", "openrouter/judge/x", "--preset", preset,
                  "-o", str(out)], env, tmp_path)  # fmt: skip
    stdout, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    bodies = [r.body for r in upstream.received]
    assert len(bodies) == calls and {b["max_tokens"] for b in bodies} == {max_tokens}
    assert all(b["temperature"] == 0 for b in bodies)
    if system_marker:
        assert all(system_marker in b["messages"][0]["content"] for b in bodies)
    summary = json.loads((tmp_path / "scores.summary.json").read_text())
    assert summary["preset"] == preset and summary["max_tokens"] == max_tokens
    for key, value in expect.items():
        assert summary[key] == value, (key, summary)
    rows = [json.loads(x) for x in out.read_text().splitlines()]
    if preset == "arena-hard":
        assert summary["arena"]["A>>B"] == summary["arena"]["B>>A"] == 4
        assert all(r["labels"] == ["A>>B", "A>>B"] for r in rows)
        assert summary["length_check"]["wins"] == 0  # every item a tie: no win to check
        assert "A>>B 4" in stdout
    else:
        assert summary["scored"] == 3 and summary["truncated"] == 1
        [cut] = [r for r in rows if r["status"] == "truncated"]
        assert cut["raw"] == answer[:60] and cut["score"] is None
        assert "--max-tokens" in stdout
