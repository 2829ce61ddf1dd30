"""Following a batch counts each failure by its error class and status (fakeredis)."""

from __future__ import annotations

import json

import fakeredis

from tasks.batch.follow import Follower
from tasks.batch.store import CLAIM_PREFIX, META_PREFIX, BatchStore
from tasks.cli.batch import errors_text


def _failure(kind: str, status: int | None) -> str:
    facts = {"provider": "openrouter"} | ({"status": status} if status else {})
    return json.dumps({"status": "FAILURE", "task_id": "x", "date_done": None,
                       "result": {"exc_type": kind, "exc_message": ["no", facts]}})  # fmt: skip


def test_failures_are_counted_by_class_and_status_not_as_one_upstream_bucket():
    store = BatchStore(fakeredis.FakeRedis(), ttl=100)
    outcomes = [("AuthenticationFailed", 401), ("UpstreamUnavailable", 500),
                ("UpstreamUnavailable", 500), ("DeadlineExceeded", None)]  # fmt: skip
    store.save("b", kind="batch", state="running", lines=len(outcomes), created=1.0)
    store.append("b", [{"c": str(i), "n": i + 1, "t": f"t{i}"} for i in range(len(outcomes))])
    for i, (kind, status) in enumerate(outcomes):
        store.client.set(META_PREFIX + f"t{i}", _failure(kind, status))

    follower = Follower(store, None, "b")
    follower.scan()

    assert follower.snap.errors == {
        "AuthenticationFailed 401": 1, "UpstreamUnavailable 500": 2, "DeadlineExceeded": 1,
    }  # fmt: skip
    assert errors_text(follower.snap.errors) == (
        "AuthenticationFailed 401: 1, DeadlineExceeded: 1, UpstreamUnavailable 500: 2"
    )


def test_the_running_count_is_as_fresh_as_the_others_and_ends_at_zero():
    store = BatchStore(fakeredis.FakeRedis(), ttl=100)
    store.save("b", kind="batch", state="running", lines=3, created=1.0)
    store.append("b", [{"c": str(i), "n": i + 1, "t": f"t{i}"} for i in range(3)])
    for i in range(3):
        store.client.set(CLAIM_PREFIX + f"t{i}", b"this-host:1:nonce")
    follower = Follower(store, None, "b", is_stale=lambda token: False)
    follower.scan(claims=True)
    assert follower.snap.running == 3

    done = json.dumps({"status": "SUCCESS", "result": {"input_tokens": 1}, "date_done": None})
    for i in range(3):
        store.client.set(META_PREFIX + f"t{i}", done)
    follower.scan()  # claims are read only every few seconds; results at every poll

    assert (follower.snap.succeeded, follower.snap.running) == (3, 0)
