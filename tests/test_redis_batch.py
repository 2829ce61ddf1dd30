"""The loop's Redis batcher: many coroutines' commands in few round trips, each caller
with its own reply or error, scripts reloaded after a restart, a dead server reported."""

from __future__ import annotations

import asyncio

import pytest
import redis
import redis.asyncio as aredis

from tests.redis_server import RedisServer
from worker.redis_batch import RedisBatcher

_INCR = "return redis.call('incrby', KEYS[1], ARGV[1])"


class _CountingPipelines(aredis.Redis):
    """A real asyncio client that counts the pipelines it sends."""

    sent = 0

    def pipeline(self, *args, **kwargs):
        type(self).sent += 1
        return super().pipeline(*args, **kwargs)


def _run(coro):
    return asyncio.run(coro)


def test_a_thousand_coroutines_share_a_few_round_trips(redis_url, redis_client):
    async def main():
        client = _CountingPipelines.from_url(redis_url)
        batcher = RedisBatcher(client)
        script = batcher.register_script(_INCR)
        replies = await asyncio.gather(*(script(keys=["n"], args=[1]) for _ in range(1000)))
        await batcher.aclose()
        return replies

    _CountingPipelines.sent = 0
    replies = _run(main())
    assert sorted(replies) == list(range(1, 1001))
    assert int(redis_client.get("n")) == 1000
    assert _CountingPipelines.sent <= 3


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
    assert third is True
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
def test_no_pipeline_holds_more_than_its_maximum(redis_url, size):
    async def main():
        client = _CountingPipelines.from_url(redis_url)
        batcher = RedisBatcher(client, max_batch=size)
        await asyncio.gather(*(batcher.execute_command("PING") for _ in range(21)))
        await batcher.aclose()

    _CountingPipelines.sent = 0
    _run(main())
    assert _CountingPipelines.sent == -(-21 // size)
