"""The producer side: enqueue chat jobs, many at once, and wait for their answers.

Requests are validated and routed here, so an invalid request or a model whose provider
is not registered never reaches the queue.

    from tasks import enqueue, wait
    result = enqueue("mock/echo", [{"role": "user", "content": "hello"}])
    print(wait(result, timeout=30).content)
"""

from __future__ import annotations

import contextlib
import threading
import time
import uuid
from collections.abc import Iterable, Sequence
from typing import Any

from celery import states
from celery.result import AsyncResult

from chatq.errors import ChatqError, InvalidRequest, JobFailed, WaitTimedOut
from config import load_settings
from tasks.runtime import Runtime, open_runtime
from worker.app import CHAT_MANY_TASK, CHAT_TASK, chunk_summary, queue_for, request_summary
from worker.chat.types import ChatRequest, ChatResponse, Message
from worker.redis_guard import translated

__all__ = ["Producer", "default_producer", "enqueue", "enqueue_many", "wait"]

#: Messages buffered before one pipelined write to Redis.
BATCH_SIZE = 1000


class Producer:
    """Enqueues chat jobs on one runtime's broker and reads their results."""

    def __init__(self, runtime: Runtime):
        self.runtime = runtime
        self.app = runtime.app

    def prepare(self, request: ChatRequest | dict[str, Any]) -> ChatRequest:
        """Validate and route a request without enqueueing it.

        Raises:
            InvalidRequest: a field is wrong (named in the message).
            ProviderNotFound: the model's provider is not registered.
        """
        request = ChatRequest.parse(request)
        self.runtime.registry.resolve(request.model)
        return request

    def enqueue(
        self,
        model: str | ChatRequest,
        messages: Sequence[Message | dict[str, Any]] | None = None,
        *,
        temperature: float | None = None,
        max_tokens: int | None = None,
        format: str | None = None,
        think: bool | None = None,
        timeout: float | None = None,
        task_id: str | None = None,
    ) -> AsyncResult:
        """Validate one chat request and put it on its provider's queue.

        Args:
            model: the model name (with its routing prefix), or a whole ChatRequest.
            messages: the chat messages, when `model` is a name.
            task_id: the job's id; default a random UUID.

        Raises:
            InvalidRequest, ProviderNotFound: nothing was queued.
        """
        request = self.prepare(
            _build(model, messages, temperature, max_tokens, format, think, timeout)
        )
        with translated(self.runtime.redis_url):
            return self._send(request, task_id=task_id)

    def enqueue_many(
        self,
        requests: Iterable[ChatRequest | dict[str, Any]],
        *,
        task_ids: Iterable[str] | None = None,
    ) -> list[AsyncResult]:
        """Validate every request, then publish them all over one connection, pipelined.

        Nothing is queued when any request is invalid (the error names its index).

        Raises:
            InvalidRequest, ProviderNotFound: with the index of the first bad request.
        """
        prepared = []
        for index, item in enumerate(requests):
            try:
                prepared.append(self.prepare(item))
            except ChatqError as exc:
                raise type(exc)(f"request {index}: {exc.message}", exc.facts) from None
        ids = list(task_ids) if task_ids is not None else [None] * len(prepared)
        if len(ids) != len(prepared):
            raise InvalidRequest(f"{len(prepared)} requests but {len(ids)} task ids")
        return self.publish(prepared, ids)

    def publish(
        self,
        requests: Sequence[ChatRequest],
        ids: Sequence[str | None],
        *,
        chunk_size: int | None = None,
    ) -> list[AsyncResult]:
        """Publish already prepared requests, pipelined; return their results in order.

        Args:
            requests: validated requests (see `prepare`).
            ids: a task id per request (None: a random one).
            chunk_size: jobs per message (`chatq.chat_many`), grouped by provider;
                default CHATQ_CHUNK_SIZE. 1 sends one `chatq.chat` message per job.
        """
        size = self.runtime.settings.chunk_size if chunk_size is None else chunk_size
        ids = [i or str(uuid.uuid4()) for i in ids]
        with translated(self.runtime.redis_url), self.app.producer_or_acquire() as producer:
            if size <= 1:
                for start in range(0, len(requests), BATCH_SIZE):
                    end = start + BATCH_SIZE
                    with _pipelined(producer):
                        for request, job in zip(requests[start:end], ids[start:end], strict=True):
                            self._send(request, task_id=job, producer=producer)
            else:
                self._publish_chunks(requests, ids, size, producer)
        return [self.app.AsyncResult(job) for job in ids]

    def _publish_chunks(self, requests, ids, size: int, producer: Any) -> None:
        pending: dict[str, list] = {}
        with _pipelined(producer):
            for request, job in zip(requests, ids, strict=True):
                provider = self.runtime.registry.resolve(request.model)[0].name
                chunk = pending.setdefault(provider, [])
                chunk.append([job, request.model_dump(mode="json", exclude_none=True)])
                if len(chunk) >= size:
                    self._send_chunk(provider, pending.pop(provider), producer)
            for provider, chunk in pending.items():
                self._send_chunk(provider, chunk, producer)

    def _send_chunk(self, provider: str, chunk: list, producer: Any) -> None:
        self.app.send_task(
            CHAT_MANY_TASK,
            args=[chunk],
            queue=queue_for(provider),
            argsrepr=chunk_summary([chunk]),
            kwargsrepr="{}",
            producer=producer,
        )

    def _send(self, request: ChatRequest, *, task_id: str | None, producer: Any = None):
        body = request.model_dump(mode="json", exclude_none=True)
        provider = self.runtime.registry.resolve(request.model)[0].name
        return self.app.send_task(
            CHAT_TASK,
            args=[body],
            task_id=task_id,
            queue=queue_for(provider),
            argsrepr=request_summary([body], {}),
            kwargsrepr="{}",
            producer=producer,
        )

    def wait(self, result: AsyncResult | str, timeout: float | None = None) -> ChatResponse:
        """The job's ChatResponse, once it is done.

        Raises:
            WaitTimedOut: no result within `timeout` seconds (the job may still finish).
            ChatqError: (its own subclass) the job failed; a failure of another kind
                arrives as JobFailed naming it.
            RedisUnavailable: Redis could not be read, after bounded retries.
        """
        job = result if isinstance(result, str) else result.id
        backend = self.app.backend
        end = None if timeout is None else time.monotonic() + timeout
        pause = 0.005
        while True:
            with translated(self.runtime.redis_url):  # after Celery's bounded retries
                meta = backend.get_task_meta(job)
            if meta["status"] == states.SUCCESS:
                return ChatResponse.model_validate(meta["result"])
            if meta["status"] in states.PROPAGATE_STATES:
                raise as_chatq_error(meta["result"], job)
            if end is not None and time.monotonic() >= end:
                raise WaitTimedOut(
                    f"job {job} gave no result within {timeout:g}s (it may still finish)",
                )
            time.sleep(pause if end is None else max(0.0, min(pause, end - time.monotonic())))
            pause = min(pause * 1.5, 0.25)


def as_chatq_error(exc: Any, job_id: str) -> ChatqError:
    """A failed job's error as chatq's own type (Celery rebuilds ours from JSON)."""
    if isinstance(exc, ChatqError):
        return exc
    name = type(exc).__name__
    return JobFailed(f"job {job_id} failed with {name}: {exc}")


def _pipelined(producer: Any) -> Any:
    """kombu's publish batch (one Redis round trip per batch) where kombu has it."""
    batch = getattr(producer, "batch", None)
    return batch(max_size=BATCH_SIZE * 2) if batch is not None else contextlib.nullcontext()


def _build(model, messages, temperature, max_tokens, fmt, think, timeout):
    if isinstance(model, ChatRequest):
        return model
    if isinstance(model, dict):
        return model
    fields = {
        "model": model,
        "messages": [m.model_dump() if isinstance(m, Message) else m for m in messages or []],
        "temperature": temperature,
        "max_tokens": max_tokens,
        "format": fmt,
        "think": think,
        "timeout": timeout,
    }
    return {k: v for k, v in fields.items() if v is not None}


_default_lock = threading.Lock()
_default: Producer | None = None


def default_producer() -> Producer:
    """The process's producer, connected on first use from the environment's settings."""
    global _default
    with _default_lock:
        if _default is None:
            _default = Producer(open_runtime(load_settings()))
        return _default


def enqueue(model, messages=None, **options: Any) -> AsyncResult:
    """`Producer.enqueue` on the default producer."""
    return default_producer().enqueue(model, messages, **options)


def enqueue_many(requests, **options: Any) -> list[AsyncResult]:
    """`Producer.enqueue_many` on the default producer."""
    return default_producer().enqueue_many(requests, **options)


def wait(result: AsyncResult | str, timeout: float | None = None) -> ChatResponse:
    """`Producer.wait` on the default producer."""
    return default_producer().wait(result, timeout)
