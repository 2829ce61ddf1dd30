"""Faults with standing workers and nobody following: a batch sent with `chatq batch
submit` ends complete on its own."""

from __future__ import annotations

import json
import signal
import time
from collections import Counter
from pathlib import Path

import pytest
import redis

from tasks.batch.store import BatchStore
from tasks.recovery.messages import job_ids
from tests.cli.test_chat import chatq
from tests.fake_upstream import Answer

pytestmark = pytest.mark.integration

#: Workers sweep every half second and take a silent message for lost after 2 s.
QUICK = {"CHATQ_SWEEP_INTERVAL": "0.5", "CHATQ_LOST_AFTER": "2", "CHATQ_CHUNK_SIZE": "4"}


def figures(**values: object) -> None:
    """One JSON line of a fault's figures (`pytest -s` shows it; the README quotes it)."""
    print("FIGURES " + json.dumps(values))


def _batch_file(path: Path, lines: int) -> Path:
    with open(path, "w") as handle:
        for i in range(lines):
            row = {"custom_id": f"q{i}", "model": "openrouter/v/m",
                   "messages": [{"role": "user", "content": f"line {i}"}]}  # fmt: skip
            handle.write(json.dumps(row) + "\n")
    return path


def _submit(env: dict, path: Path) -> str:
    done = chatq("batch", "submit", str(path), env=env)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip().splitlines()[-1]


def _wait_done(store: BatchStore, batch_id: str, timeout: float) -> float:
    began = time.monotonic()
    while store.record(batch_id).state != "done":
        assert time.monotonic() - began < timeout, f"batch not done: {store.record(batch_id)}"
        time.sleep(0.2)
    return time.monotonic() - began


def _answers(upstream) -> Counter:
    """How many times the upstream answered each line (by its prompt)."""
    return Counter(r.body["messages"][-1]["content"] for r in upstream.received if r.answer == "ok")


def test_a_killed_workers_lines_come_back_in_seconds_with_nobody_following(
    env, upstream, start_worker, tmp_path
):
    env.update(QUICK, CHATQ_CONCURRENCY="4")
    upstream.delay = 1.0
    doomed = start_worker(env)
    batch_id = _submit(env, _batch_file(tmp_path / "in.jsonl", 40))
    while upstream.in_flight < 8:  # two chunks of four calls under way
        time.sleep(0.05)
    start_worker(env)  # the standing worker that stays
    in_flight = upstream.in_flight
    doomed.procs[0].send_signal(signal.SIGKILL)
    doomed.procs[0].wait()
    killed_at = time.monotonic()

    store = BatchStore(redis.Redis.from_url(env["REDIS_URL"]), ttl=3600)
    _wait_done(store, batch_id, timeout=60)
    recovered = time.monotonic() - killed_at

    status = json.loads(chatq("batch", "status", batch_id, "--json", env=env).stdout)
    assert (status["state"], status["succeeded"], status["lines"]) == ("done", 40, 40)
    answers = _answers(upstream)
    figures(
        fault="a worker SIGKILLed with calls in flight",
        lines=40,
        in_flight=in_flight,
        paid_twice=sum(n - 1 for n in answers.values()),
        recovered_s=round(recovered, 1),
    )
    assert set(answers) == {f"line {i}" for i in range(40)}
    assert sum(n - 1 for n in answers.values()) <= in_flight  # paid twice: in flight only
    assert recovered < 30  # not the broker's visibility timeout (minutes)


def test_a_message_lost_between_the_queue_and_the_worker_is_sent_again(
    env, upstream, start_worker, tmp_path
):
    env.update(QUICK)
    batch_id = _submit(env, _batch_file(tmp_path / "in.jsonl", 8))
    client = redis.Redis.from_url(env["REDIS_URL"])
    lost = json.loads(client.rpop("chat.openrouter"))  # popped, never delivered
    start_worker(env)

    _wait_done(BatchStore(client, ttl=3600), batch_id, timeout=30)

    answers = _answers(upstream)
    assert sorted(answers.values()) == [1] * 8
    assert len(job_ids(lost)) == 4


def test_upstream_stalls_cost_the_idle_timeout_not_the_read_timeout(
    env, upstream, start_worker, tmp_path
):
    env.update(QUICK, CHATQ_CONCURRENCY="4", CHATQ_IDLE_TIMEOUT="1", CHATQ_TIMEOUT="180")
    # Among the first calls: two that stop mid-answer for a minute, one that says
    # nothing for a minute, and one long answer that keeps coming for 3 s.
    upstream.push(Answer.stall(60), Answer.slow(60), Answer.trickle(3, pieces=12),
                  Answer.stall(60, after=2))  # fmt: skip
    start_worker(env)
    began = time.monotonic()
    batch_id = _submit(env, _batch_file(tmp_path / "in.jsonl", 30))
    store = BatchStore(redis.Redis.from_url(env["REDIS_URL"]), ttl=3600)
    _wait_done(store, batch_id, timeout=60)
    took = time.monotonic() - began

    status = json.loads(chatq("batch", "status", batch_id, "--json", env=env).stdout)
    assert (status["state"], status["succeeded"], status["lines"]) == ("done", 30, 30)
    answered = [r.answer for r in upstream.received]
    figures(
        fault="upstream stalls: two mid-answer, one silent, for 60 s each",
        lines=30,
        calls=len(answered),
        retried_calls=len(answered) - 30,
        seconds=round(took, 1),
    )
    assert took < 20  # each stall cost about 1 s (CHATQ_IDLE_TIMEOUT), not 60 or 180
    assert answered.count("trickle") == 1  # the long answer was not cut and asked again
