"""Redis unreachable, or going away: a bounded wait, then one clear chatq error naming
the server with its password redacted; never a hang, never a traceback."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import redis

from chatq.errors import RedisUnavailable
from tests.cli.test_chat import chatq
from tests.redis_server import free_port
from worker.embedded_redis import EmbeddedRedis
from worker.redis_guard import RECONNECT_WINDOW, reconnecting, translated

HELLO = [{"role": "user", "content": "hello"}]
PASSWORD = "hunter2-redis-pw"


def test_the_reconnect_policy_keeps_trying_for_about_its_window_and_no_longer():
    policy = reconnecting(5.0)
    waits = [policy._backoff.compute(n) for n in range(1, policy._retries + 1)]
    assert 5.0 <= sum(waits) <= 5.0 + 2.0
    assert reconnecting()._retries < 30  # RECONNECT_WINDOW is bounded, not "forever"
    assert RECONNECT_WINDOW <= 30


def test_a_redis_connection_error_becomes_redis_unavailable_with_the_password_redacted():
    url = f"redis://:{PASSWORD}@127.0.0.1:6390/0"
    with pytest.raises(RedisUnavailable) as caught, translated(url):
        raise redis.ConnectionError("Error 111 connecting to 127.0.0.1:6390. Connection refused.")
    assert "127.0.0.1:6390" in str(caught.value)
    assert PASSWORD not in str(caught.value)
    assert "Connection refused" in str(caught.value)


def test_other_errors_pass_through_untouched():
    with pytest.raises(KeyError), translated("redis://127.0.0.1:1/0"):
        raise KeyError("not a Redis problem")


@pytest.mark.integration
def test_enqueue_with_redis_unreachable_fails_fast_naming_the_url_without_its_password(
    env, producer_for
):
    port = free_port()
    env["REDIS_URL"] = f"redis://:{PASSWORD}@127.0.0.1:{port}/0"
    producer = producer_for(env)
    started = time.monotonic()
    with pytest.raises(RedisUnavailable) as caught:
        producer.enqueue("mock/echo", HELLO)
    assert time.monotonic() - started < 10
    assert f"127.0.0.1:{port}" in str(caught.value)
    assert PASSWORD not in str(caught.value)
    with pytest.raises(RedisUnavailable):
        producer.enqueue_many([{"model": "mock/echo", "messages": HELLO}] * 3)


@pytest.mark.integration
def test_waiting_while_redis_goes_away_ends_in_a_clear_error_not_a_hang(
    env, producer_for, tmp_path: Path
):
    server = EmbeddedRedis(tmp_path / "redis-home")
    env["REDIS_URL"] = server.start()
    try:
        producer = producer_for(env)
        result = producer.enqueue("mock/echo", HELLO)  # no worker: it stays pending
    finally:
        server.stop()
    started = time.monotonic()
    with pytest.raises(RedisUnavailable, match="unreachable"):
        producer.wait(result, timeout=120)
    assert time.monotonic() - started < 30


@pytest.mark.integration
def test_the_cli_with_redis_unreachable_exits_1_with_one_line_and_no_traceback(tmp_path):
    port = free_port()
    env = {"REDIS_URL": f"redis://:{PASSWORD}@127.0.0.1:{port}/0", "CHATQ_HOME": str(tmp_path)}
    started = time.monotonic()
    done = chatq("chat", "mock/echo", "hello", env=env, timeout=60)
    assert time.monotonic() - started < 20
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("chatq: RedisUnavailable: Redis at redis://:[redacted]@127.0.0.1")
    assert "Traceback" not in done.stderr
    assert PASSWORD not in done.stderr + done.stdout
