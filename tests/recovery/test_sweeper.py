"""The sweeper sends again what was lost, and nothing that is being worked on."""

from __future__ import annotations

import json
from datetime import datetime, timezone

from tasks.recovery.messages import job_ids
from tasks.recovery.sweeper import LEASE, Sweeper
from tests.recovery.conftest import wait_past_lost_after

HELLO = [{"role": "user", "content": "hello"}]
QUEUE = "chat.mock"


def _publish(fleet, count: int, *, chunk_size: int = 1, **batch):
    requests = [fleet.producer.prepare({"model": "mock/echo", "messages": HELLO})] * count
    return [r.id for r in fleet.producer.publish(requests, [None] * count,
                                                  chunk_size=chunk_size, **batch)]  # fmt: skip


def _store_success(fleet, job: str) -> None:
    doc = {"status": "SUCCESS", "result": {"content": "x"}, "task_id": job,
           "date_done": "2026-12-04T10:00:00.500000+00:00"}  # fmt: skip
    fleet.client.set(f"celery-task-meta-{job}", json.dumps(doc))


def test_a_message_lost_on_its_way_to_an_idle_queue_is_sent_again(fleet):
    (job,) = _publish(fleet, 1)
    fleet.take(QUEUE, holder=None)  # popped, then the connection died with it
    assert fleet.sweeper.sweep().requeued == 0  # too early to tell it from a slow worker

    wait_past_lost_after()
    report = fleet.sweeper.sweep()

    assert (report.requeued, report.messages_lost) == (1, 1)
    assert [job_ids(m) for m in fleet.messages(QUEUE)] == [[job]]


def test_a_message_overtaken_by_a_later_one_is_lost_even_with_a_backlog(fleet):
    (first,) = _publish(fleet, 1)
    wait_past_lost_after()
    second, third = _publish(fleet, 2)
    fleet.take(QUEUE, holder=None)  # the first: lost
    fleet.beat("w1:10")
    fleet.take(QUEUE, holder="w1:10")  # the second: taken by a live worker
    fleet.claim(second, "w1:10")

    report = fleet.sweeper.sweep()

    assert report.requeued == 1
    queued = [job_ids(m) for m in fleet.messages(QUEUE)]
    assert sorted(queued) == sorted([[third], [first]])  # the third still waits its turn


def test_jobs_of_a_dead_worker_are_sent_again_and_its_claims_dropped(fleet):
    jobs = _publish(fleet, 3, chunk_size=3)
    fleet.take(QUEUE, holder="gone:4242")  # no heartbeat: the process is dead
    for job in jobs:
        fleet.claim(job, "gone:4242")

    report = fleet.sweeper.sweep()

    assert (report.requeued, report.claims_dropped) == (3, 3)
    assert [job_ids(m) for m in fleet.messages(QUEUE)] == [jobs]
    assert not any(fleet.client.exists(f"chatq:claim:{j}") for j in jobs)


def test_jobs_held_by_a_live_worker_are_left_alone_however_long_they_run(fleet):
    jobs = _publish(fleet, 2, chunk_size=2)
    fleet.beat("w1:10")
    fleet.take(QUEUE, holder="w1:10")
    for job in jobs:
        fleet.claim(job, "w1:10")
    wait_past_lost_after()

    assert fleet.sweeper.sweep().requeued == 0
    assert fleet.messages(QUEUE) == []


def test_only_the_jobs_nobody_holds_are_sent_again(fleet):
    running, dropped = _publish(fleet, 2, chunk_size=2)
    fleet.beat("w1:10")
    fleet.take(QUEUE, holder="w1:10")
    fleet.claim(running, "w1:10")  # its chunk-mate failed to store and let go
    wait_past_lost_after()

    fleet.sweeper.sweep()

    assert [job_ids(m) for m in fleet.messages(QUEUE)] == [[dropped]]
    assert fleet.sweeper.sweep().requeued == 0  # the running one stays with its worker


def test_messages_whose_jobs_all_ended_leave_the_journal(fleet):
    jobs = _publish(fleet, 2, chunk_size=2)
    message = fleet.take(QUEUE, holder="w1:10")
    for job in jobs:
        _store_success(fleet, job)

    fleet.sweeper.sweep()

    assert fleet.journal.entries([message["headers"]["id"]]) == [None]
    assert fleet.journal.running() == []


def test_a_batch_is_done_when_its_last_line_ends_and_ends_at_its_last_result(fleet):
    store = fleet.sweeper.batches
    store.save("b1", state="running", lines=3, invalid=1, created=1.0)
    jobs = _publish(fleet, 2, chunk_size=2, batch="b1", positions=[0, 2])
    fleet.beat("w1:10")
    fleet.take(QUEUE, holder="w1:10")
    fleet.claim(jobs[1], "w1:10")
    _store_success(fleet, jobs[0])
    fleet.sweeper.sweep()
    assert store.record("b1").state == "running"

    _store_success(fleet, jobs[1])
    report = fleet.sweeper.sweep()

    record = store.record("b1")
    assert report.batches_done == ["b1"]
    last = datetime(2026, 12, 4, 10, 0, 0, 500000, tzinfo=timezone.utc).timestamp()
    assert (record.state, record.finished) == ("done", last)


def test_nothing_of_a_cancelled_batch_is_sent_again(fleet):
    fleet.sweeper.batches.save("b2", state="cancelled", lines=1, created=1.0)
    _publish(fleet, 1, batch="b2", positions=[0])
    fleet.take(QUEUE, holder=None)
    wait_past_lost_after()

    assert fleet.sweeper.sweep().requeued == 0
    assert fleet.messages(QUEUE) == []


def test_one_process_sweeps_at_a_time(fleet):
    settings = fleet.producer.runtime.settings
    other = Sweeper(fleet.client, fleet.producer.app, settings, holder="another-host:1")

    assert fleet.sweeper.lease() is True
    assert other.lease() is False
    assert fleet.sweeper.lease() is True  # renewed by its holder
    fleet.client.delete(LEASE)  # the holder died and its lease ran out
    assert other.lease() is True


def test_a_finished_message_whose_ack_was_lost_is_acknowledged_by_the_sweeper(fleet):
    finished, _unfinished = _publish(fleet, 2)
    for tag in (b"tag-1", b"tag-2"):  # the two messages, oldest first
        message = fleet.take(QUEUE, holder=None)
        fleet.client.hset("unacked", tag, json.dumps([message, "", QUEUE]))
        fleet.client.zadd("unacked_index", {tag: 1.0})  # taken long ago
    _store_success(fleet, finished)

    report = fleet.sweeper.sweep()

    assert report.acks_completed == 1
    assert fleet.client.hkeys("unacked") == [b"tag-2"]  # the broker will hand it out again
