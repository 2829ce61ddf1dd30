"""The loop's Redis batcher: many coroutines' commands in few round trips, each caller
with its own reply or error, scripts reloaded after a restart, a dead server reported,
and a Redis restarted mid-run costing a pause, not a command."""

from __future__ import annotations

import asyncio
import time

import pytest
import redis
import redis.asyncio as aredis

from tests.redis_server import RedisServer
from worker.redis_batch import RedisBatcher
from worker.redis_guard import reconnecting_async

_INCR = "return redis.call('incrby', KEYS[1], ARGV[1])"


class _CountingConnection(aredis.Connection):
    """A real connection that counts the batches written to it (not its handshake)."""

    sent = 0

    async def send_packed_command(self, command, check_health=True):
        if isinstance(command, bytes) and b"CLIENT" not in command and b"HELLO" not in command:
            type(self).sent += 1
        return await super().send_packed_command(command, check_health)


def _counting(url: str) -> aredis.Redis:
    pool = aredis.ConnectionPool.from_url(url, connection_class=_CountingConnection)
    return aredis.Redis(connection_pool=pool)


def _run(coro):
    return asyncio.run(coro)


def test_a_thousand_coroutines_share_a_few_round_trips(redis_url, redis_client):
    async def main():
        client = _counting(redis_url)
        batcher = RedisBatcher(client)
        script = batcher.register_script(_INCR)
        replies = await asyncio.gather(*(script(keys=["n"], args=[1]) for _ in range(1000)))
        await batcher.aclose()
        return replies

    _CountingConnection.sent = 0
    replies = _run(main())
    assert sorted(replies) == list(range(1, 1001))
    assert int(redis_client.get("n")) == 1000
    assert _CountingConnection.sent <= 3


def test_each_caller_gets_its_own_error_and_the_others_their_replies(redis_url, redis_client):
    redis_client.set("text", "not a number")

    async def main():
        batcher = RedisBatcher(aredis.Redis.from_url(redis_url))
        good = batcher.execute_command("INCR", "counter")
        bad = batcher.execute_command("INCR", "text")
        also_good = batcher.set("plain", "v", px=60_000)
        replies = await asyncio.gather(good, bad, also_good, return_exceptions=True)
        await batcher.aclose()
        return replies

    first, second, third = _run(main())
    assert first == 1
    assert isinstance(second, redis.ResponseError)
    assert third == b"OK"
    assert 0 < redis_client.pttl("plain") <= 60_000


def test_a_script_is_loaded_again_when_redis_has_forgotten_it(redis_url, redis_client):
    async def main():
        batcher = RedisBatcher(aredis.Redis.from_url(redis_url))
        script = batcher.register_script(_INCR)
        first = await script(keys=["s"], args=[2])
        redis_client.script_flush()  # as a restarted Redis keeps no scripts
        second = await script(keys=["s"], args=[3])
        await batcher.aclose()
        return first, second

    assert _run(main()) == (2, 5)


def test_callers_that_find_a_script_missing_together_load_it_once(redis_url, redis_client):
    """A thousand jobs whose pipeline meets a restarted Redis send one copy of the
    script, not a thousand; each still gets its own reply."""

    async def main():
        batcher = RedisBatcher(aredis.Redis.from_url(redis_url))
        script = batcher.register_script(_INCR)
        assert batcher.register_script(_INCR) is script  # one object per script
        await script(keys=["s"], args=[1])
        redis_client.script_flush()
        redis_client.config_resetstat()
        replies = await asyncio.gather(*(script(keys=["s"], args=[1]) for _ in range(200)))
        await batcher.aclose()
        return replies

    assert sorted(_run(main())) == list(range(2, 202))
    stats = redis_client.info("commandstats")
    # Redis 7 counts SCRIPT LOAD on its own; older servers count every SCRIPT call.
    loads = stats.get("cmdstat_script|load") or stats.get("cmdstat_script") or {}
    assert loads.get("calls") == 1
    assert stats["cmdstat_evalsha"]["calls"] == 400  # 200 refused, then 200 answered


def test_a_redis_that_is_gone_fails_every_waiting_caller(tmp_path):
    server = RedisServer(tmp_path / "r", persistent=False).start()
    url = server.url
    server.stop()

    async def main():
        client = aredis.Redis.from_url(url, socket_connect_timeout=1)
        batcher = RedisBatcher(client)
        replies = await asyncio.gather(
            *(batcher.execute_command("PING") for _ in range(5)), return_exceptions=True
        )
        await client.aclose()
        return replies

    replies = _run(main())
    assert all(isinstance(r, redis.ConnectionError) for r in replies)


@pytest.mark.parametrize("size", [1, 7])
def test_no_round_trip_carries_more_than_its_maximum(redis_url, size):
    async def main():
        client = _counting(redis_url)
        batcher = RedisBatcher(client, max_batch=size)
        await asyncio.gather(*(batcher.execute_command("PING") for _ in range(21)))
        await batcher.aclose()

    _CountingConnection.sent = 0
    _run(main())
    assert _CountingConnection.sent == -(-21 // size)


def test_commands_sent_while_redis_restarts_are_answered_once_it_is_back(tmp_path):
    server = RedisServer(tmp_path / "r", persistent=False).start()
    url = server.url

    async def main():
        batcher = RedisBatcher(aredis.Redis.from_url(url, retry=reconnecting_async(10)))
        assert await batcher.execute_command("SET", "a", 1) == b"OK"
        server.kill()
        restart = asyncio.get_running_loop().run_in_executor(None, _restart_soon, server)
        replies = await asyncio.gather(*(batcher.execute_command("INCR", "n") for _ in range(5)))
        await restart
        await batcher.aclose()
        return replies

    try:
        assert sorted(_run(main())) == [1, 2, 3, 4, 5]
    finally:
        server.stop()


def _restart_soon(server: RedisServer) -> None:
    time.sleep(0.5)
    server.start()
