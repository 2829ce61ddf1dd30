"""Stopping a worker: SIGTERM finishes what is in flight and takes nothing new; a second
SIGTERM or a SIGKILL during that loses nothing either."""

from __future__ import annotations

import signal
import time

import pytest
from celery import states

from tests.fake_upstream import Answer
from worker.app import app

pytestmark = pytest.mark.integration


def _prompt(i: int) -> list[dict]:
    return [{"role": "user", "content": f"job {i}"}]


def _wait_for(condition, timeout: float = 15.0) -> None:
    end = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > end:
            raise AssertionError("condition not met in time")
        time.sleep(0.02)


def test_sigterm_finishes_the_jobs_in_flight_and_leaves_the_rest_queued(
    env, upstream, producer_for, start_worker
):
    producer = producer_for(env)
    workers = start_worker(env, concurrency=2)
    upstream.push(Answer.slow(2.0), Answer.slow(2.0))
    results = [producer.enqueue("openrouter/a/b", _prompt(i)) for i in range(5)]
    _wait_for(lambda: upstream.in_flight == 2)
    proc = workers.procs[0]
    stopped_at = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(15) == 0
    assert time.monotonic() - stopped_at < 8  # the 2 s calls, plus shutting down
    states_now = [app.AsyncResult(r.id).state for r in results]
    assert states_now.count(states.SUCCESS) == 2
    assert upstream.calls == 2  # nothing new was taken after the signal
    start_worker(env)
    answers = [producer.wait(r, timeout=30).content for r in results]
    assert answers == [f"echo: job {i}" for i in range(5)]
    assert upstream.calls == 5


@pytest.mark.parametrize("second", ["SIGTERM", "SIGKILL"])
def test_a_second_signal_during_the_warm_shutdown_loses_nothing(
    env, upstream, producer_for, start_worker, second
):
    env.update(CHATQ_JOB_DEADLINE="4", CHATQ_TIMEOUT="3", CHATQ_VISIBILITY_MARGIN="1")
    producer = producer_for(env)
    workers = start_worker(env, concurrency=2)
    upstream.push(Answer.slow(2.5), Answer.slow(2.5))
    results = [producer.enqueue("openrouter/a/b", _prompt(i)) for i in range(4)]
    _wait_for(lambda: upstream.in_flight == 2)
    proc = workers.procs[0]
    proc.send_signal(signal.SIGTERM)
    time.sleep(0.3)
    proc.send_signal(getattr(signal, second))
    proc.wait(15)
    start_worker(env)
    answers = [producer.wait(r, timeout=40).content for r in results]
    assert answers == [f"echo: job {i}" for i in range(4)]
    per_prompt = {}
    for received in upstream.received:
        text = received.body["messages"][-1]["content"]
        per_prompt[text] = per_prompt.get(text, 0) + 1
    # Only the two calls in flight at the signal may have been made twice.
    assert sum(n - 1 for n in per_prompt.values()) <= 2
    assert set(per_prompt) == {f"job {i}" for i in range(4)}
