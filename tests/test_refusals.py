"""Bad input through every door, and pickled messages: each is refused with an error
that names what is wrong, nothing invalid is queued, and the worker goes on."""

from __future__ import annotations

import json
import pathlib
import time

import pytest
from celery import Celery

from chatq.errors import InvalidRequest, ProviderNotFound
from config import PROVIDERS
from tests.cli.test_chat import chatq
from worker.app import CHAT_TASK, app

pytestmark = pytest.mark.integration

HI = [{"role": "user", "content": "hi"}]
TEN_MB = "x" * (10 * 1024 * 1024)

#: (what is wrong, the request, a word the error must name)
CORPUS = [
    ("missing model", {"messages": HI}, "model"),
    ("empty model", {"model": "", "messages": HI}, "model"),
    ("blank model", {"model": "   ", "messages": HI}, "model"),
    ("model of the wrong type", {"model": 42, "messages": HI}, "model"),
    ("no messages", {"model": "mock/echo"}, "messages"),
    ("empty messages", {"model": "mock/echo", "messages": []}, "messages"),
    ("messages not a list", {"model": "mock/echo", "messages": "hi"}, "messages"),
    ("a role that does not exist", {"model": "mock/echo",
                                    "messages": [{"role": "wizard", "content": "x"}]}, "role"),
    ("content not a string", {"model": "mock/echo",
                              "messages": [{"role": "user", "content": 7}]}, "content"),
    ("a 10 MB message", {"model": "mock/echo",
                         "messages": [{"role": "user", "content": TEN_MB}]}, "characters"),
    ("temperature of the wrong type", {"model": "mock/echo", "messages": HI,
                                       "temperature": "hot"}, "temperature"),
    ("an unknown field", {"model": "mock/echo", "messages": HI, "colour": "red"}, "colour"),
]  # fmt: skip


def _queued(client) -> int:
    return sum(client.llen(q) for q in ["celery"] + [f"chat.{p}" for p in PROVIDERS])


@pytest.mark.parametrize(("what", "request_", "names"), CORPUS, ids=[c[0] for c in CORPUS])
def test_the_python_api_refuses_each_bad_request_naming_it_and_queues_nothing(
    env, producer_for, redis_client, what, request_, names
):
    producer = producer_for(env)
    with pytest.raises(InvalidRequest, match=names):
        producer.enqueue(request_)
    with pytest.raises(InvalidRequest, match=f"request 1: .*{names}"):
        producer.enqueue_many([{"model": "mock/echo", "messages": HI}, request_])
    assert _queued(redis_client) == 0


def test_a_cloud_model_without_a_cloud_key_is_refused_by_every_producer_door(
    env, producer_for, redis_client
):
    del env["OLLAMA_CLOUD_API_KEY"]
    producer = producer_for(env)
    with pytest.raises(ProviderNotFound, match="OLLAMA_CLOUD_API_KEY"):
        producer.enqueue("x:cloud", HI)
    with pytest.raises(ProviderNotFound, match="request 0"):
        producer.enqueue_many([{"model": "x:cloud", "messages": HI}])
    assert _queued(redis_client) == 0


def test_garbage_sent_by_name_fails_each_task_naming_the_problem_and_the_worker_goes_on(
    env, producer_for, start_worker, redis_client
):
    producer = producer_for(env)
    start_worker(env)
    cases = [
        (dict(args=[["model", "messages"]]), "JSON object"),
        (dict(kwargs={"model": "mock/echo", "messages": HI}), "one argument"),
        (dict(args=[{"model": "mock/echo", "messages": [{"role": "user", "content": TEN_MB}]}]),
         "characters"),
        (dict(args=[{"model": "mock/echo", "messages": HI, "temperature": 9}]), "temperature"),
    ]  # fmt: skip
    results = [(app.send_task(CHAT_TASK, queue="chat.mock", **how), says) for how, says in cases]
    # Not even a Celery message: the consumer must survive it.
    redis_client.lpush("chat.mock", b"\xff\xfe not json at all")
    redis_client.lpush("chat.mock", json.dumps({"no": "envelope"}))
    for result, says in results:
        with pytest.raises(InvalidRequest, match=says):
            producer.wait(result, timeout=30)
    assert producer.wait(producer.enqueue("mock/echo", HI), timeout=30).content == "hi"


@pytest.mark.parametrize(
    ("args", "stdin", "names"),
    [
        (("chat", "mock/echo", "-"), b"caf\xe9 au lait", b"UTF-8"),
        (("chat", "mock/echo", "-"), TEN_MB.encode(), b"characters"),
        (("chat", "mock/echo", "hi", "--max-tokens", "-3"), b"", b"max_tokens"),
        (("chat", "mock/echo", "hi", "--temperature", "warm"), b"", b"temperature"),
    ],
    ids=["non-UTF-8 stdin", "10 MB stdin", "negative max tokens", "temperature not a number"],
)
def test_the_cli_refuses_bad_input_with_exit_2_and_one_line_naming_it(tmp_path, args, stdin, names):
    done = chatq(*args, env={"CHATQ_HOME": str(tmp_path / "home")}, stdin=stdin, binary=True)
    assert done.returncode == 2
    assert names in done.stderr
    assert done.stderr.count(b"\n") == 1 and b"Traceback" not in done.stderr
    assert not (tmp_path / "home" / "redis").exists()


def test_bad_batch_lines_each_fail_on_their_line_and_the_rest_of_the_batch_runs(
    env, start_worker, tmp_path, redis_client
):
    del env["OLLAMA_CLOUD_API_KEY"]
    good = {"model": "mock/echo", "messages": HI}
    lines = [
        json.dumps({"custom_id": "a", **good}).encode(),
        b'{"custom_id": "b", "model": "mock/echo", "messages": [',
        b'{"custom_id": "c", "model": "mock/echo", "messages": [{"role": "user", '
        b'"content": "caf\xe9"}]}',
        json.dumps({"custom_id": "d", "messages": HI}).encode(),
        json.dumps({"custom_id": "e", "model": "mock/echo", "messages": []}).encode(),
        json.dumps({"custom_id": "f", "model": "mock/echo",
                    "messages": [{"role": "wizard", "content": "x"}]}).encode(),
        json.dumps({"custom_id": "a", **good}).encode(),
        json.dumps({"custom_id": "h", "model": "x:cloud", "messages": HI}).encode(),
        json.dumps({"custom_id": "i", "model": "mock/echo",
                    "messages": [{"role": "user", "content": TEN_MB}]}).encode(),
        json.dumps([good]).encode(),
        json.dumps({"custom_id": "k", **good}).encode(),
    ]  # fmt: skip
    source = tmp_path / "in.jsonl"
    source.write_bytes(b"\n".join(lines) + b"\n")
    strict = chatq("batch", "run", str(source), "-o", str(tmp_path / "strict.jsonl"),
                   "--strict", env=env)  # fmt: skip
    assert strict.returncode == 2
    assert _queued(redis_client) == 0
    start_worker(env)
    done = chatq("batch", "run", str(source), "-o", str(tmp_path / "out.jsonl"), env=env)
    assert done.returncode == 4, done.stderr
    out = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert len(out) == len(lines)
    errors = {n: (o["error"] or {}).get("message", "") for n, o in enumerate(out, start=1)}
    assert out[0]["response"]["content"] == "hi" and out[-1]["response"]["content"] == "hi"
    expected = {
        2: "JSON", 3: "UTF-8", 4: "model", 5: "messages", 6: "role", 7: "used by an earlier line",
        8: "OLLAMA_CLOUD_API_KEY", 9: "characters", 10: "object",
    }  # fmt: skip
    for number, word in expected.items():
        assert word in errors[number], (number, errors[number])
        assert f"line {number}" in errors[number], (number, errors[number])


class _TouchOnUnpickle:
    """Unpickling this creates a file: the proof that a pickled message was run."""

    def __init__(self, marker: pathlib.Path):
        self.marker = marker

    def __reduce__(self):
        return (pathlib.Path.touch, (self.marker,))


def test_a_pickled_message_is_refused_and_logged_never_run_and_the_worker_goes_on(
    env, producer_for, start_worker, tmp_path
):
    producer = producer_for(env)
    workers = start_worker(env)
    marker = tmp_path / "unpickled"
    evil = Celery("attacker", broker=env["REDIS_URL"])
    evil.conf.update(task_serializer="pickle", accept_content=["pickle"])
    evil.send_task(CHAT_TASK, args=[_TouchOnUnpickle(marker)], queue="chat.mock")
    assert producer.wait(producer.enqueue("mock/echo", HI), timeout=30).content == "hi"
    time.sleep(0.5)
    assert not marker.exists()
    log = "".join(p.read_text(errors="replace") for p in workers.log_dir.glob("*.log"))
    assert "pickle" in log and "untrusted" in log.lower()
