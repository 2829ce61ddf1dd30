"""Redis commands of many jobs, sent together: one pipelined round trip per loop pass.

On the worker's event loop a thousand jobs claim, take turns at the provider and store
their answers at about the same moments. Sent one by one, each command costs its
coroutine a connection from the pool and redis-py about 0.1 ms of CPU; gathered into
one round trip per pass of the loop, packed by hiredis in C and read back by its
parser, it costs a few hundredths of that. Each caller still awaits its own reply
(or its own error), as with a plain client; replies come as Redis sends them (bytes,
integers, lists), with none of redis-py's per-command conversions.

The surface is the part of redis-py's asyncio client that chatq's worker uses:
`execute_command`, `register_script` (an awaitable `script(keys=..., args=...)`), and
`set`; arguments are str, bytes, int or float. A dropped connection is retried by the
client's own retry policy (the whole batch is sent again, as redis-py does for a
pipeline), so a Redis restart costs the jobs a pause, not their outcomes.
"""

from __future__ import annotations

import asyncio
import hashlib
import math
import sys
from collections.abc import Sequence
from typing import Any

import redis.asyncio as aredis
from hiredis import pack_command
from redis.exceptions import NoScriptError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeout

if sys.version_info >= (3, 11):
    from asyncio import timeout as _timeout
else:  # redis-py requires async-timeout there
    from async_timeout import timeout as _timeout

__all__ = ["BatchedScript", "RedisBatcher"]

_Pending = tuple[tuple[Any, ...], asyncio.Future]


class RedisBatcher:
    """Gathers the commands awaited on one event loop into pipelines.

    Args:
        client: an asyncio Redis client (its pool, timeouts and retry policy apply).
        max_batch: the most commands in one pipeline; more wait for the next one.
    """

    def __init__(self, client: aredis.Redis, *, max_batch: int = 1000):
        self.client = client
        self.max_batch = max_batch
        self._pending: list[_Pending] = []
        self._scheduled = False
        self._sending: set[asyncio.Task] = set()
        self._scripts: dict[str, BatchedScript] = {}

    async def execute_command(self, *args: Any) -> Any:
        """Send one command with the next pipeline; its reply.

        Raises:
            redis.RedisError: its own error reply, or the pipeline's connection failure.
        """
        return await self.send(*args)

    def send(self, *args: Any) -> asyncio.Future:
        """Queue one command for the next pipeline; the future of its reply (a caller
        sending several commands at once awaits their futures, with no task each)."""
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        self._pending.append((args, future))
        if not self._scheduled:
            # After every coroutine already woken in this pass has had its turn.
            self._scheduled = True
            loop.call_soon(self._flush)
        return future

    def register_script(self, script: str) -> BatchedScript:
        """An awaitable Lua script, sent by its SHA with the other commands (one object
        per script, however many register it)."""
        if script not in self._scripts:  # keyed by its text: BatchedScript hashes it
            self._scripts[script] = BatchedScript(self, script)
        return self._scripts[script]

    async def set(self, name: str, value: Any, *, px: int | None = None,
                  ex: int | None = None) -> Any:  # fmt: skip
        args: list[Any] = ["SET", name, value]
        if px is not None:
            args += ["PX", px]
        if ex is not None:
            args += ["EX", ex]
        return await self.execute_command(*args)

    async def drain(self) -> None:
        """Wait until every command handed in so far has had its reply."""
        while self._pending or self._sending:
            if self._sending:
                await asyncio.gather(*self._sending, return_exceptions=True)
            else:
                await asyncio.sleep(0)

    async def aclose(self) -> None:
        await self.drain()
        await self.client.aclose()

    def _flush(self) -> None:
        self._scheduled = False
        while self._pending:
            batch, self._pending = (
                self._pending[: self.max_batch],
                self._pending[self.max_batch :],
            )
            task = asyncio.get_running_loop().create_task(self._send(batch))
            self._sending.add(task)
            task.add_done_callback(self._sending.discard)

    async def _send(self, batch: list[_Pending]) -> None:
        packed = b"".join([pack_command(args) for args, _ in batch])
        pool = self.client.connection_pool
        try:
            conn = await pool.get_connection()
            try:
                replies = await conn.retry.call_with_retry(
                    lambda: _exchange(conn, packed, len(batch)),
                    lambda error: conn.disconnect(),
                )
            finally:
                await pool.release(conn)
        except BaseException as exc:  # the connection (past its retries), or a cancel
            for _, future in batch:
                if not future.done():
                    future.set_exception(exc if isinstance(exc, Exception) else
                                         asyncio.CancelledError())  # fmt: skip
            if not isinstance(exc, Exception):
                raise
            return
        for (_, future), reply in zip(batch, replies, strict=True):
            if future.done():  # its caller was cancelled meanwhile
                continue
            if isinstance(reply, Exception):
                future.set_exception(reply)
            else:
                future.set_result(reply)


async def _exchange(conn: Any, packed: bytes, count: int) -> list[Any]:
    """Send `count` packed commands and read their replies, an error reply in its place.

    One timer (the connection's socket timeout) bounds all the replies, rather than
    one per reply as redis-py's own reads would set.

    Raises:
        redis.TimeoutError: the replies did not all come in time (the connection is
            dropped: what it would read next is unknown).
        redis.ConnectionError: as redis-py raises it.
    """
    await conn.send_packed_command(packed)
    replies: list[Any] = []
    try:
        async with _timeout(conn.socket_timeout):
            for _ in range(count):
                try:
                    replies.append(await conn.read_response(timeout=math.inf))
                except ResponseError as exc:
                    replies.append(exc)
    except asyncio.TimeoutError:
        await conn.disconnect(nowait=True)
        raise RedisTimeout(f"Redis did not answer {count} command(s) in time") from None
    return replies


class BatchedScript:
    """A Lua script sent with EVALSHA in the batcher's pipelines; loaded once more
    whenever Redis has forgotten it (a restarted Redis keeps no scripts)."""

    def __init__(self, batcher: RedisBatcher, script: str):
        self.batcher = batcher
        self.script = script
        self.sha = hashlib.sha1(script.encode()).hexdigest()
        self._loading: asyncio.Future | None = None

    async def __call__(self, keys: Sequence[Any] = (), args: Sequence[Any] = ()) -> Any:
        command = ("EVALSHA", self.sha, len(keys), *keys, *args)
        try:
            return await self.batcher.execute_command(*command)
        except NoScriptError:
            await self.load()
            return await self.batcher.execute_command(*command)

    async def load(self) -> None:
        """SCRIPT LOAD it: once for all the callers that found it missing together (a
        thousand jobs whose pipeline met a restarted Redis send one copy, not a thousand)."""
        if self._loading is None:
            loading = asyncio.ensure_future(
                self.batcher.execute_command("SCRIPT", "LOAD", self.script)
            )
            self._loading = loading
            loading.add_done_callback(self._loaded)
        await asyncio.shield(self._loading)

    def _loaded(self, loading: asyncio.Future) -> None:
        self._loading = None  # a later restart of Redis loads it again
        if not loading.cancelled():
            loading.exception()  # retrieved: each waiter has it raised already
