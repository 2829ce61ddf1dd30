"""After a full run, no API key and no Authorization value is anywhere: not in Redis,
the task messages, the worker logs, Flower's API, or the batch files."""

from __future__ import annotations

import base64
import json
import os
import secrets
import signal
import subprocess
import sys
import urllib.request

import pytest
import redis

from chatq.errors import ChatqError
from chatq.redaction import redact
from tests.cli.test_chat import chatq
from tests.fake_upstream import Answer
from tests.redis_server import free_port
from tests.test_deploy import _wait_for_port

pytestmark = pytest.mark.integration

HI = [{"role": "user", "content": "hello"}]


def _dump_redis(url: str) -> str:
    """Every key and every value of every type in the database, as text."""
    client = redis.Redis.from_url(url)
    parts = []
    for key in client.scan_iter(count=500):
        kind = client.type(key).decode()
        parts.append(repr(key))
        if kind == "string":
            parts.append(repr(client.get(key)))
        elif kind == "hash":
            parts.append(repr(client.hgetall(key)))
        elif kind == "list":
            parts.append(repr(client.lrange(key, 0, -1)))
        elif kind == "set":
            parts.append(repr(client.smembers(key)))
        elif kind == "zset":
            parts.append(repr(client.zrange(key, 0, -1, withscores=True)))
        elif kind == "stream":
            parts.append(repr(client.xrange(key)))
    client.close()
    return "\n".join(parts)


def _bodies(raw_messages: list[bytes]) -> str:
    """The kombu envelopes of queued messages and their decoded bodies."""
    out = []
    for raw in raw_messages:
        envelope = json.loads(raw)
        out.append(raw.decode())
        out.append(base64.b64decode(envelope["body"]).decode())
    return "\n".join(out)


def test_a_full_run_leaves_no_key_anywhere(env, upstream, producer_for, start_worker, tmp_path):
    names = ("OPENROUTER_API_KEY", "KIMI_API_KEY", "OPENCODE_API_KEY", "OLLAMA_CLOUD_API_KEY")
    keys = {name: f"sk-test-{secrets.token_hex(12)}" for name in names}
    env.update(keys, CHATQ_MAX_ATTEMPTS="2", CHATQ_CHUNK_SIZE="3")
    key = keys["OPENROUTER_API_KEY"]
    producer = producer_for(env)
    client = redis.Redis.from_url(env["REDIS_URL"])

    # The task messages as they sit on the queue, before any worker takes them.
    queued = [producer.enqueue(m, HI) for m in ("openrouter/a/b", "kimi/k2", "gpt-oss:cloud")]
    bulk = producer.enqueue_many([{"model": "opencode/x", "messages": HI}] * 4)
    messages = _bodies(
        client.lrange("chat.openrouter", 0, -1)
        + client.lrange("chat.kimi", 0, -1)
        + client.lrange("chat.opencode", 0, -1)
    )
    workers = start_worker(env)
    for result in [*queued, *bulk]:
        producer.wait(result, timeout=30)

    # Upstream errors that echo the key and the Authorization header back.
    echo = {
        "error": f"invalid key {key}",
        "auth": f"Bearer {key}",
        "headers": f"Authorization: Bearer {key}",
    }
    upstream.push(Answer.error(401, echo), Answer.error(500, echo), Answer.error(500, echo))
    caught = []
    for _ in range(2):
        try:
            producer.wait(producer.enqueue("openrouter/a/b", HI), timeout=30)
        except ChatqError as exc:
            caught.append(exc)
    assert caught, "the upstream errors should have failed a job"

    # A batch, with its output and summary files.
    source = tmp_path / "in.jsonl"
    source.write_text("\n".join(json.dumps({"custom_id": str(i), "model": "kimi/k2",
                                            "messages": HI}) for i in range(5)) + "\n")  # fmt: skip
    upstream.push(Answer.error(401, echo))
    done = chatq("batch", "run", str(source), "-o", str(tmp_path / "out.jsonl"), env=env)
    assert done.returncode in (0, 4), done.stderr
    files = "\n".join(p.read_text() for p in tmp_path.glob("out.jsonl*"))

    # Flower's API, behind basic auth, after all of it.
    port = free_port()
    flower_log = open(tmp_path / "flower.log", "wb")  # noqa: SIM115
    flower = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "worker", "flower", f"--port={port}",
         "--address=127.0.0.1", "--basic-auth=ops:pw"],
        env={**os.environ, **env}, stdout=flower_log, stderr=flower_log,
    )  # fmt: skip
    try:
        _wait_for_port(port, timeout=60)
        auth = {"Authorization": "Basic " + base64.b64encode(b"ops:pw").decode()}
        flower_out = ""
        for path in ("/api/workers", "/api/tasks", "/api/tasks?limit=100"):
            request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", headers=auth)
            with urllib.request.urlopen(request, timeout=30) as answer:
                flower_out += answer.read().decode()
    finally:
        flower.send_signal(signal.SIGTERM)
        flower.wait(30)
        flower_log.close()
    workers.stop(timeout=10)

    logs = "\n".join(p.read_text(errors="replace") for p in workers.log_dir.glob("*.log"))
    logs += (tmp_path / "flower.log").read_text(errors="replace")
    errors = "\n".join(f"{e!s} {e!r} {e.to_dict()} {e.args}" for e in caught)
    places = {
        "redis": _dump_redis(env["REDIS_URL"]), "task messages": messages, "worker logs": logs,
        "flower api": flower_out, "batch files": files, "errors": errors,
        "cli output": done.stdout + done.stderr,
    }  # fmt: skip
    assert "invalid key" in places["redis"] + places["batch files"]  # the echoes were stored
    for where, text in places.items():
        for secret in keys.values():
            assert secret not in text, f"a key leaked into {where}"
        assert "Bearer sk-" not in text, f"an Authorization value leaked into {where}"


def test_a_redis_url_password_is_redacted_in_errors_and_logs(producer_for, env):
    url = "redis://:hunter2-secret@127.0.0.1:1/0"
    assert "hunter2-secret" not in redact(f"connecting to {url} failed")
    done = chatq("chat", "mock/echo", "hi", env={**env, "REDIS_URL": url}, timeout=60)
    assert done.returncode == 1
    assert "hunter2-secret" not in done.stderr and "127.0.0.1:1" in done.stderr
