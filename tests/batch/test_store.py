"""The batch record and index in Redis (fakeredis), and reading a line's outcome."""

from __future__ import annotations

import json

import fakeredis
import pytest

from tasks.batch.claims import stale
from tasks.batch.output import Result, format_line
from tasks.batch.service import default_batch_id, task_id
from tasks.batch.store import CANCELLED, FAILED, PENDING, SUCCEEDED, BatchStore, outcome_of


@pytest.fixture
def store():
    return BatchStore(fakeredis.FakeRedis(), ttl=100)


def test_task_ids_are_stable_per_batch_custom_id_and_epoch():
    assert task_id("b", "q1") == task_id("b", "q1")
    assert len({task_id("b", "q1"), task_id("b", "q2"), task_id("c", "q1"),
                task_id("b", "q1", 1)}) == 4  # fmt: skip
    assert default_batch_id("batch", "d", "m") == default_batch_id("batch", "d", "m")
    assert default_batch_id("batch", "d", "m") != default_batch_id("batch", "d", "")


def test_a_record_round_trips_and_every_key_gets_the_result_ttl(store):
    store.save("b1", kind="batch", source="/x", digest="d", state="running", lines=3,
               created=10.0, options={"cache": True})  # fmt: skip
    store.append("b1", [{"c": "a", "n": 1, "t": "t1"}])
    record = store.record("b1")
    assert (record.state, record.lines, record.options) == ("running", 3, {"cache": True})
    assert 0 < store.client.ttl("chatq:batch:b1") <= 100
    assert 0 < store.client.ttl("chatq:batch:b1:lines") <= 100
    assert store.batch_ids() == ["b1"]


def test_expired_batches_leave_the_list(store):
    store.save("b1", created=1.0)
    store.save("b2", created=2.0)
    store.client.delete("chatq:batch:b1")
    assert store.batch_ids() == ["b2"]


def test_first_uses_finds_duplicates_within_and_across_chunks(store):
    assert store.first_uses("b", ["a", "b", "a"]) == [True, True, False]
    assert store.first_uses("b", ["b", "c"]) == [False, True]


def test_the_index_reads_back_in_input_order_in_chunks(store):
    store.append("b", [{"c": str(i), "n": i + 1} for i in range(2500)])
    chunks = list(store.iter_entries("b", chunk=1000))
    assert [len(c) for c in chunks] == [1000, 1000, 500]
    assert [e["c"] for c in chunks for e in c] == [str(i) for i in range(2500)]


def test_queued_bits_mark_published_lines(store):
    store.mark_queued("b", [0, 5])
    assert store.queued("b", [0, 1, 5]) == [True, False, True]
    store.clear_queued("b")
    assert store.queued("b", [0, 5]) == [False, False]


def test_outcomes_are_read_from_celery_results():
    ok = json.dumps({"status": "SUCCESS", "result": {"content": "hi"}})
    failed = json.dumps({"status": "FAILURE", "result": {
        "exc_type": "RateLimited", "exc_message": ["slow down", {"status": 429}]}})  # fmt: skip
    assert outcome_of(None).state == PENDING
    assert outcome_of(json.dumps({"status": "STARTED"}).encode()).state == PENDING
    assert outcome_of(ok.encode()).response == {"content": "hi"}
    assert outcome_of(ok.encode()).state == SUCCEEDED
    out = outcome_of(failed.encode())
    assert out.state == FAILED
    assert out.error == {"type": "RateLimited", "message": "slow down", "status": 429}
    assert outcome_of(json.dumps({"status": "REVOKED"}).encode()).state == CANCELLED


def test_cached_answers_are_stored_only_where_no_result_exists(store):
    store.put_metas([("t1", {"content": "cached"})])
    store.put_metas([("t1", {"content": "other"})])
    assert outcome_of(store.metas(["t1"])[0]).response == {"content": "cached"}


def test_the_openai_output_form_carries_a_chat_completion():
    response = {"model": "m", "content": "hi", "input_tokens": 3, "output_tokens": 1,
                "finish_reason": "stop", "provider": "mock"}  # fmt: skip
    out = format_line(Result("q1", 1, "t1", response, None), "openai")
    assert out["custom_id"] == "q1" and out["error"] is None
    body = out["response"]["body"]
    assert out["response"]["status_code"] == 200
    assert body["object"] == "chat.completion"
    assert body["choices"][0]["message"] == {"role": "assistant", "content": "hi"}
    assert body["usage"] == {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4}
    failed = format_line(Result("q2", 2, None, None, {"type": "X", "message": "m"}), "openai")
    assert failed["response"] is None and failed["error"] == {"code": "X", "message": "m"}


def test_a_claim_is_stale_only_when_its_holder_is_a_dead_process_of_this_host():
    import os
    import socket
    import subprocess

    host = socket.gethostname()
    dead = subprocess.Popen(["true"])
    dead.wait()
    assert stale(f"{host}:{dead.pid}:abcd")
    assert not stale(f"{host}:{os.getpid()}:abcd")
    assert not stale(f"elsewhere:{dead.pid}:abcd")
    assert not stale("garbage")
