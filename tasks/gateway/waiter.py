"""Waiting for many jobs' results at once, in the gateway's event loop.

Each HTTP request that waits for its job registers the job's result key here; one
loop reads every registered key with MGET a few milliseconds apart and hands each
stored result to its request. However many requests wait, Redis sees one read per
tick, and no thread is held by a request that waits.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any

import redis.asyncio as aioredis

from chatq.errors import WaitTimedOut
from worker.redis_guard import UNREACHABLE, unavailable

__all__ = ["Waiter"]

log = logging.getLogger(__name__)

#: Keys read per MGET.
_BATCH = 500


class Waiter:
    """Hands stored results to the requests waiting for them.

    Args:
        url: the Redis of the result backend.
        read: `read(job, raw)` turns a stored raw result into the job's answer, None
            while it is a state on the way (such as STARTED), or raises the job's
            error: each result is decoded once.
        timeout: seconds a Redis command may take before the waiters are told it is
            unavailable.
        tick: seconds between two reads while anyone waits.
    """

    def __init__(self, url: str, *, read: Callable[[str, bytes], Any], timeout: float,
                 tick: float = 0.004):  # fmt: skip
        self.url = url
        self.read = read
        self.tick = tick
        self.client = aioredis.Redis.from_url(
            url, socket_timeout=timeout, socket_connect_timeout=min(5.0, timeout)
        )
        self._waiting: dict[str, list[asyncio.Future[Any]]] = {}
        self._jobs: dict[str, str] = {}  # result key -> job id
        self._wake = asyncio.Event()
        self._task: asyncio.Task | None = None

    def start(self) -> Waiter:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="chatq-waiter")
        return self

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self.client.aclose()

    async def wait(self, key: str, timeout: float | None, *, job: str) -> Any:
        """Job `job`'s answer (see `read`), once its result under `key` is final.

        Raises:
            WaitTimedOut: nothing final within `timeout` seconds.
            RedisUnavailable: Redis did not answer.
            ChatqError: the job failed (what `read` raised).
        """
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._waiting.setdefault(key, []).append(future)
        self._jobs[key] = job
        self._wake.set()
        try:
            return await asyncio.wait_for(future, timeout)
        except asyncio.TimeoutError:
            raise WaitTimedOut(
                f"job {job} gave no result within {timeout:g}s (it may still finish)"
            ) from None
        finally:
            futures = self._waiting.get(key)
            if futures is not None and future in futures:
                futures.remove(future)
                if not futures:
                    del self._waiting[key]
                    self._jobs.pop(key, None)

    async def _run(self) -> None:
        while True:
            if not self._waiting:
                self._wake.clear()
                await self._wake.wait()
            keys = list(self._waiting)
            try:
                for start in range(0, len(keys), _BATCH):
                    part = keys[start : start + _BATCH]
                    for key, raw in zip(part, await self.client.mget(part), strict=True):
                        if raw is not None:
                            self._settle_with(key, raw)
            except UNREACHABLE as exc:
                error = unavailable(self.url, exc)
                log.warning("%s", error)
                for key in keys:
                    self._settle(key, error=error)
            except Exception:  # never let the loop die: every waiter would hang
                log.exception("reading results failed")
            await asyncio.sleep(self.tick)

    def _settle_with(self, key: str, raw: bytes) -> None:
        try:
            answer = self.read(self._jobs.get(key, key), raw)
        except Exception as exc:  # the job's own error, for every request waiting on it
            self._settle(key, error=exc)
            return
        if answer is not None:
            self._settle(key, result=answer)

    def _settle(self, key: str, *, result: Any = None,
                error: BaseException | None = None) -> None:  # fmt: skip
        self._jobs.pop(key, None)
        for future in self._waiting.pop(key, []):
            if future.done():
                continue
            if error is not None:
                future.set_exception(error)
            else:
                future.set_result(result)
