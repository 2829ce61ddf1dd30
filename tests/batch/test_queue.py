"""Batches on a real worker and Redis: order, resume, double submit, cancel, cache."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tasks.batch.cancel import cancel_batch
from tasks.batch.follow import Follower
from tasks.batch.output import write_results
from tasks.batch.service import Batches, FileSource
from tests.fake_upstream import Answer

pytestmark = pytest.mark.integration


@pytest.fixture
def batch_env(env):
    return {**env, "CHATQ_OLLAMA_CONCURRENCY": "8"}


def write_batch(tmp_path: Path, n: int, *, model="ollama/judge", temperature=None) -> Path:
    path = tmp_path / "in.jsonl"
    with open(path, "w") as f:
        for i in range(n):
            row = {"custom_id": f"q{i}", "model": model,
                   "messages": [{"role": "user", "content": f"item {i}"}]}  # fmt: skip
            if temperature is not None:
                row["temperature"] = temperature
            f.write(json.dumps(row) + "\n")
    return path


def run(batches, batch_id, path, **kw):
    source = FileSource(path, prepare=batches.producer.prepare)
    report = batches.submit(batch_id, source, **kw)
    follower = Follower(batches.store, batches.cache, batch_id,
                        republish=lambda p: batches.republish(batch_id, source, p))  # fmt: skip
    return report, follower.run(poll=0.05, timeout=60)


def test_output_is_in_input_order_when_early_lines_finish_last(
    batch_env, upstream, producer_for, start_worker, tmp_path
):
    batches = Batches(producer_for(batch_env))
    path = write_batch(tmp_path, 40)
    upstream.push(Answer.slow(1.5), Answer.slow(1.5))
    start_worker(batch_env)
    _, snap = run(batches, "order", path)
    assert snap.succeeded == 40
    out = tmp_path / "out.jsonl"
    write_results(batches.results("order"), out)
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["custom_id"] for r in rows] == [f"q{i}" for i in range(40)]
    assert [r["response"]["content"] for r in rows] == [f"echo: item {i}" for i in range(40)]


def test_submitting_twice_queues_nothing_twice_and_pays_each_line_once(
    batch_env, upstream, producer_for, start_worker, tmp_path
):
    batches = Batches(producer_for(batch_env))
    path = write_batch(tmp_path, 30)
    source = FileSource(path, prepare=batches.producer.prepare)
    first = batches.submit("twice", source)
    second = batches.submit("twice", source)
    assert (first.enqueued, second.enqueued, second.already_queued) == (30, 0, 30)
    start_worker(batch_env)
    _, snap = run(batches, "twice", path)
    assert snap.succeeded == 30 and upstream.calls == 30
    again, snap = run(batches, "twice", path)
    assert (again.enqueued, again.already_done) == (0, 30)
    assert upstream.calls == 30


def test_a_rerun_queues_failed_lines_only_with_retry_failed(
    batch_env, upstream, producer_for, start_worker, tmp_path
):
    batches = Batches(producer_for(batch_env))
    path = write_batch(tmp_path, 5)
    upstream.push(Answer.error(401, {"error": "bad key"}))
    start_worker(batch_env)
    _, snap = run(batches, "retry", path)
    assert (snap.succeeded, snap.failed, upstream.calls) == (4, 1, 5)
    plain, _ = run(batches, "retry", path)
    assert plain.enqueued == 0 and upstream.calls == 5
    retried, snap = run(batches, "retry", path, retry_failed=True)
    assert retried.enqueued == 1 and snap.succeeded == 5 and upstream.calls == 6


def test_lines_queued_before_a_crash_are_queued_again_and_still_paid_once(
    batch_env, upstream, producer_for, start_worker, tmp_path
):
    batches = Batches(producer_for(batch_env))
    path = write_batch(tmp_path, 20)
    source = FileSource(path, prepare=batches.producer.prepare)
    batches.submit("crash", source)
    # the crash lost every queued message: the Redis came back without them
    batches.store.client.delete("chat.ollama")
    start_worker(batch_env)
    report, snap = run(batches, "crash", path, requeue=True)
    assert report.enqueued == 20 and snap.succeeded == 20 and upstream.calls == 20


def test_lost_messages_are_found_after_a_stall_and_queued_again(
    batch_env, upstream, producer_for, start_worker, tmp_path
):
    batches = Batches(producer_for(batch_env))
    path = write_batch(tmp_path, 10)
    source = FileSource(path, prepare=batches.producer.prepare)
    batches.submit("lost", source)
    batches.store.client.delete("chat.ollama")
    start_worker(batch_env)
    follower = Follower(batches.store, batches.cache, "lost", stall=0.5,
                        republish=lambda p: batches.republish("lost", source, p))  # fmt: skip
    snap = follower.run(poll=0.05, timeout=30)
    assert snap.succeeded == 10 and upstream.calls == 10


def test_cancel_takes_waiting_jobs_off_the_queue_and_reports_them_cancelled(
    batch_env, upstream, producer_for, start_worker, tmp_path
):
    producer = producer_for(batch_env)
    batches = Batches(producer)
    path = write_batch(tmp_path, 50)
    batches.submit("stop", FileSource(path, prepare=producer.prepare))
    report = cancel_batch(batches.store, producer.app, "stop")
    assert report.revoked == 50 and report.removed_messages > 0
    start_worker(batch_env)
    snap = Follower(batches.store, None, "stop").run(poll=0.05, timeout=30)
    assert (snap.cancelled, snap.succeeded) == (50, 0)
    assert upstream.calls == 0
    rows = list(batches.results("stop"))
    assert {r.error["type"] for r in rows} == {"Cancelled"}
    # running it again later runs it, under new task ids no worker holds as revoked
    _, snap = run(batches, "stop", path)
    assert snap.succeeded == 50 and upstream.calls == 50


def test_the_cache_answers_identical_temperature_0_requests_without_a_call(
    batch_env, upstream, producer_for, start_worker, tmp_path
):
    batches = Batches(producer_for(batch_env))
    path = write_batch(tmp_path, 10, temperature=0)
    start_worker(batch_env)
    run(batches, "first", path)
    assert upstream.calls == 10
    report, snap = run(batches, "second", path, use_cache=True)
    assert (report.cached, report.enqueued, snap.cached) == (10, 0, 10)
    assert upstream.calls == 10
    assert all(r.response["cached"] for r in batches.results("second"))
    hot = write_batch(tmp_path, 3, temperature=0.7)
    report, _ = run(batches, "hot", hot, use_cache=True)
    assert report.cached == 0 and upstream.calls == 13
