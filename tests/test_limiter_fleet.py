"""Fleet-wide limits with real workers sharing one real Redis, against the fake upstream."""

from __future__ import annotations

import signal
import time
from collections.abc import Callable

import pytest

from tests.conftest import chatq_env
from tests.fake_upstream import Answer, FakeUpstream

pytestmark = pytest.mark.integration

HELLO = [{"role": "user", "content": "hello"}]


def _wait_for(condition: Callable[[], bool], timeout: float = 15.0) -> None:
    end = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > end:
            raise AssertionError("condition not met in time")
        time.sleep(0.02)


def test_two_workers_sharing_a_concurrency_of_2_never_have_more_than_2_calls_in_flight(
    redis_url, tmp_path, producer_for, start_worker
):
    with FakeUpstream(delay=0.2) as upstream:
        env = chatq_env(upstream, redis_url, tmp_path, CHATQ_OPENROUTER_CONCURRENCY="2")
        producer = producer_for(env)
        start_worker(env, concurrency=4)
        start_worker(env, concurrency=4)
        results = [producer.enqueue("openrouter/a/b", HELLO) for _ in range(12)]
        responses = [producer.wait(r, timeout=30) for r in results]
        assert {r.content for r in responses} == {"echo: hello"}
        assert upstream.calls == 12
        assert upstream.peak_in_flight == 2


def test_a_slot_held_by_a_killed_worker_frees_within_its_lease(
    env, upstream, producer_for, start_worker
):
    env.update(CHATQ_OPENROUTER_CONCURRENCY="1", CHATQ_LIMIT_LEASE="2")
    producer = producer_for(env)
    doomed = start_worker(env, concurrency=1)
    upstream.push(Answer.slow(8.0))
    producer.enqueue("openrouter/a/b", HELLO)
    _wait_for(lambda: upstream.in_flight == 1)
    doomed.procs[0].send_signal(signal.SIGKILL)
    doomed.procs[0].wait()
    start_worker(env, concurrency=1)
    started = time.monotonic()
    response = producer.wait(producer.enqueue("openrouter/a/b", HELLO), timeout=30)
    assert response.attempts == 1
    assert time.monotonic() - started < 2.0 + 2.0


def test_a_429_seen_by_one_worker_pauses_the_other_workers_calls(
    env, upstream, producer_for, start_worker
):
    producer = producer_for(env)
    start_worker(env, concurrency=1)
    start_worker(env, concurrency=1)
    upstream.push(Answer.rate_limited(2))
    first = producer.enqueue("openrouter/a/b", HELLO)
    _wait_for(lambda: upstream.calls == 1)
    # The first worker is busy with its job, so this one goes to the other worker.
    second = producer.enqueue("openrouter/a/b", HELLO)
    assert producer.wait(second, timeout=30).attempts == 1
    assert producer.wait(first, timeout=30).attempts == 2
    limited, *later = [r.at for r in upstream.received]
    assert len(later) == 2
    assert min(later) >= limited + 2.0 - 0.05


@pytest.mark.parametrize("style", ["openai", "openrouter"])
def test_an_upstream_announcing_0_requests_left_until_a_reset_in_2s_gets_no_429(
    env, upstream, producer_for, start_worker, style
):
    # One call per 2 s window, announced on each answer in OpenAI's headers (a duration)
    # or OpenRouter's (a Unix time in ms); a call before the reset would draw a 429.
    env.update(CHATQ_OPENROUTER_CONCURRENCY="1")
    producer = producer_for(env)
    start_worker(env, concurrency=1)
    start_worker(env, concurrency=1)
    upstream.budget(1, per=2.0, style=style)

    results = [producer.enqueue("openrouter/a/b", HELLO) for _ in range(3)]
    responses = [producer.wait(r, timeout=30) for r in results]

    assert "429" not in upstream.answered, [(r.at, r.answer) for r in upstream.received]
    assert [r.attempts for r in responses] == [1, 1, 1] and upstream.calls == 3
    first, second, third = sorted(r.at for r in upstream.received)
    assert 2.0 <= second - first < 3.0  # the next calls waited for the reset, no longer
    assert 2.0 <= third - second < 3.0


def test_waiting_for_a_slot_consumes_no_attempt(env, upstream, producer_for, start_worker):
    env.update(CHATQ_OPENROUTER_CONCURRENCY="1")
    producer = producer_for(env)
    start_worker(env, concurrency=4)
    upstream.push(Answer.slow(1.5))
    first = producer.enqueue("openrouter/a/b", HELLO)
    _wait_for(lambda: upstream.in_flight == 1)
    started = time.monotonic()
    waited = producer.wait(producer.enqueue("openrouter/a/b", HELLO), timeout=30)
    assert time.monotonic() - started >= 1.0  # it waited for the slow call's slot
    assert (waited.attempts, producer.wait(first, timeout=30).attempts) == (1, 1)
    assert upstream.calls == 2 and upstream.peak_in_flight == 1


def test_a_job_that_cannot_get_capacity_before_its_deadline_fails_saying_so(
    env, upstream, producer_for, start_worker
):
    from chatq.errors import DeadlineExceeded

    env.update(CHATQ_OPENROUTER_CONCURRENCY="1", CHATQ_JOB_DEADLINE="1.5")
    producer = producer_for(env)
    start_worker(env, concurrency=4)
    upstream.push(Answer.slow(4.0))
    producer.enqueue("openrouter/a/b", HELLO)
    _wait_for(lambda: upstream.in_flight == 1)
    with pytest.raises(DeadlineExceeded, match="could not get capacity for openrouter"):
        producer.wait(producer.enqueue("openrouter/a/b", HELLO), timeout=30)
    assert upstream.calls == 1


def test_chatq_limits_shows_the_configured_and_the_learned_state(
    redis_url, monkeypatch, capsys, tmp_path
):
    import asyncio
    import json

    import redis
    import redis.asyncio

    from tasks.cli import main
    from worker.limits import Limits, RedisBackend

    async def a_call_drew_a_429() -> None:
        aclient = redis.asyncio.Redis.from_url(redis_url)
        backend, limits = RedisBackend(client, aclient), Limits(rate=50.0)
        try:
            grant = await backend.acquire(
                "openrouter", limits, token="x", tokens=1, lease=30, max_wait=9
            )
            await backend.release("openrouter", limits, token="x", outcome="limited",
                                  granted_at=grant.at, retry_after=30)  # fmt: skip
        finally:
            await aclient.aclose()

    client = redis.Redis.from_url(redis_url)
    try:
        asyncio.run(a_call_drew_a_429())
    finally:
        client.close()
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("REDIS_URL", redis_url)
    monkeypatch.setenv("CHATQ_OPENROUTER_RPM", "3000")
    assert main(["limits", "--json"]) == 0
    rows = {row.pop("provider"): row for row in json.loads(capsys.readouterr().out)}
    paused = rows["openrouter"].pop("paused_for")
    assert rows["openrouter"] == {
        "concurrency": None,
        "rpm": 3000.0,
        "tpm": None,
        "learned_rpm": 2700.0,
        "in_flight": 0,
        "recent_429s": 1,
        "paused_because": None,  # a 429's pause; a spent quota would say why
    }
    assert 29 < paused <= 30
    assert (rows["ollama"]["concurrency"], rows["ollama"]["learned_rpm"]) == (1, None)
    assert main(["limits"]) == 0
    assert "LEARNED RPM" in capsys.readouterr().out
