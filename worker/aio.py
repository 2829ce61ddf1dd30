"""One asyncio event loop per worker process, where the I/O of every job runs.

Celery's pool threads (or a prefork child's one thread) take messages off the queue;
the calls their jobs make (the upstream HTTP call, and the claim, limiter and result
round trips to Redis) all run as coroutines on this one loop, so a thousand calls in
flight cost a thousand small coroutines rather than a thousand threads. A pool thread
hands its chunk to the loop and blocks until the chunk's outcomes are stored; the
message is acknowledged after that, as before.

The loop runs in a daemon thread started on first use. A forked child (Celery's
prefork pool) starts its own: an event loop and its sockets never cross a fork.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

__all__ = ["ProcessLoop", "process_loop"]

T = TypeVar("T")


class ProcessLoop:
    """An event loop in a thread of its own, which other threads hand coroutines to."""

    def __init__(self, name: str = "chatq-loop"):
        self.loop = _new_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()
        self._ready.wait()

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.call_soon(self._ready.set)
        self.loop.run_forever()

    @property
    def in_loop(self) -> bool:
        """Whether the caller is the loop's own thread (which must never block on it)."""
        return threading.current_thread() is self._thread

    def submit(self, coro: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
        """Schedule `coro` on the loop; a future the calling thread may wait on."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run `coro` on the loop and block this (non-loop) thread until it ends; its
        result, or what it raised.

        Raises:
            RuntimeError: called from the loop's own thread (it would wait on itself).
        """
        if self.in_loop:
            coro.close()
            raise RuntimeError("ProcessLoop.run called from the loop's own thread")
        future = self.submit(coro)
        try:
            return future.result()
        except BaseException:
            # Interrupted while waiting (a KeyboardInterrupt in the caller): the work on
            # the loop is cancelled rather than left running unseen.
            future.cancel()
            raise

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the loop after the callbacks already scheduled, and wait for its thread."""
        if self.loop.is_closed():
            return
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout)


def _new_loop() -> asyncio.AbstractEventLoop:
    """uvloop's loop where it is installed (Linux and macOS: it costs each callback,
    socket read and timer a fraction of asyncio's own), else asyncio's."""
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


_lock = threading.Lock()
_current: ProcessLoop | None = None
_owner_pid = 0


def process_loop() -> ProcessLoop:
    """This process's loop, started on first use (and again in a forked child)."""
    global _current, _owner_pid
    with _lock:
        if _current is None or _owner_pid != os.getpid():
            _current, _owner_pid = ProcessLoop(), os.getpid()
        return _current


def _forget_after_fork() -> None:
    # The parent's loop thread does not exist in the child; its lock may be held.
    global _current, _lock
    _current, _lock = None, threading.Lock()


os.register_at_fork(after_in_child=_forget_after_fork)
