"""The producer side: enqueue chat jobs, many at once, and wait for their answers.

Requests are validated and routed here, so an invalid request or a model whose provider
is not registered never reaches the queue.

    from tasks import enqueue, wait
    result = enqueue("mock/echo", [{"role": "user", "content": "hello"}])
    print(wait(result, timeout=30).content)
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterable, Sequence
from typing import Any

from celery import states
from celery.result import AsyncResult

from chatq.errors import ChatqError, InvalidRequest, JobFailed, WaitTimedOut
from config import load_settings
from tasks.recovery.journal import Journal
from tasks.recovery.outbox import Envelope, Outbox
from tasks.runtime import Runtime, open_runtime
from worker.app import queue_for
from worker.chat.types import ChatRequest, ChatResponse, Message
from worker.redis_guard import translated

__all__ = ["Producer", "default_producer", "enqueue", "enqueue_many", "wait"]


class Producer:
    """Enqueues chat jobs on one runtime's broker and reads their results."""

    def __init__(self, runtime: Runtime):
        self.runtime = runtime
        self.app = runtime.app
        journal = Journal(runtime.redis(), ttl=runtime.settings.result_ttl)
        self.outbox = Outbox(self.app, journal)

    def prepare(self, request: ChatRequest | dict[str, Any]) -> ChatRequest:
        """Validate and route a request without enqueueing it.

        Raises:
            InvalidRequest: a field is wrong, or an option the provider cannot honour
                (named in the message).
            ProviderNotFound: the model's provider is not registered.
        """
        request = ChatRequest.parse(request)
        self.runtime.registry.prepare(request)
        return request

    def enqueue(
        self,
        model: str | ChatRequest,
        messages: Sequence[Message | dict[str, Any]] | None = None,
        *,
        temperature: float | None = None,
        max_tokens: int | None = None,
        format: str | dict[str, Any] | type | None = None,
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
        batch: str | None = None,
        positions: Sequence[int] | None = None,
    ) -> list[AsyncResult]:
        """Publish already prepared requests, pipelined; return their results in order.

        Each message is journalled first (tasks/recovery), so the fleet sends it again
        if it is lost, whoever is or is not waiting for it.

        Args:
            requests: validated requests (see `prepare`).
            ids: a task id per request (None: a random one).
            chunk_size: jobs per message (`chatq.chat_many`), grouped by provider;
                default CHATQ_CHUNK_SIZE. 1 sends one `chatq.chat` message per job.
            batch: the batch the requests are lines of, and `positions` their lines
                (0-based), so that the fleet can tell when the batch is done.
        """
        size = self.runtime.settings.chunk_size if chunk_size is None else chunk_size
        ids = [i or str(uuid.uuid4()) for i in ids]
        spots = list(positions) if positions is not None else [None] * len(ids)
        messages: list[Envelope] = []
        pending: dict[str, tuple[list, list]] = {}
        for request, job, spot in zip(requests, ids, spots, strict=True):
            provider = self.runtime.registry.resolve(request.model)[0].name
            body = request.model_dump(mode="json", exclude_none=True)
            if size <= 1:
                messages.append(Envelope.single(queue_for(provider), job, body,
                                               **_tags(batch, [spot])))  # fmt: skip
                continue
            jobs, lines = pending.setdefault(provider, ([], []))
            jobs.append([job, body])
            lines.append(spot)
            if len(jobs) >= size:
                del pending[provider]
                messages.append(Envelope.chunk(queue_for(provider), jobs, **_tags(batch, lines)))
        for provider, (jobs, lines) in pending.items():
            messages.append(Envelope.chunk(queue_for(provider), jobs, **_tags(batch, lines)))
        with translated(self.runtime.redis_url):
            self.outbox.send(messages)
        return [self.app.AsyncResult(job) for job in ids]

    def _send(self, request: ChatRequest, *, task_id: str | None) -> AsyncResult:
        body = request.model_dump(mode="json", exclude_none=True)
        provider = self.runtime.registry.resolve(request.model)[0].name
        job = task_id or str(uuid.uuid4())
        self.outbox.send([Envelope.single(queue_for(provider), job, body)])
        return self.app.AsyncResult(job)

    def wait(self, result: AsyncResult | str, timeout: float | None = None) -> ChatResponse:
        """The job's ChatResponse, once it is done.

        Raises:
            WaitTimedOut: no result within `timeout` seconds (the job may still finish).
            ChatqError: (its own subclass) the job failed; a failure of another kind
                arrives as JobFailed naming it.
            RedisUnavailable: Redis did not answer within CHATQ_REDIS_TIMEOUT (or could
                not be reached for as long).
        """
        job = result if isinstance(result, str) else result.id
        key = self.result_key(job)
        client = self.runtime.redis()
        end = None if timeout is None else time.monotonic() + timeout
        pause = 0.005
        while True:
            with translated(self.runtime.redis_url):  # a bounded client: never a hang
                raw = client.get(key)
            response = self.read(job, raw)
            if response is not None:
                return response
            if end is not None and time.monotonic() >= end:
                raise WaitTimedOut(
                    f"job {job} gave no result within {timeout:g}s (it may still finish)",
                )
            time.sleep(pause if end is None else max(0.0, min(pause, end - time.monotonic())))
            pause = min(pause * 1.5, 0.25)

    def result_key(self, job: str) -> str:
        """The Redis key where the job's result will be stored."""
        return self.app.backend.get_key_for_task(job).decode()

    def read(self, job: str, raw: bytes | None) -> ChatResponse | None:
        """The job's ChatResponse from its stored result (`raw`, as read from
        `result_key`), None while it has none.

        Raises:
            ChatqError: (its own subclass) the job failed.
        """
        if raw is None:
            return None
        meta = self.app.backend.decode_result(raw)
        if meta["status"] == states.SUCCESS:
            return ChatResponse.model_validate(meta["result"])
        if meta["status"] in states.PROPAGATE_STATES:
            raise as_chatq_error(meta["result"], job)
        return None


def as_chatq_error(exc: Any, job_id: str) -> ChatqError:
    """A failed job's error as chatq's own type (Celery rebuilds ours from JSON)."""
    if isinstance(exc, ChatqError):
        return exc
    name = type(exc).__name__
    return JobFailed(f"job {job_id} failed with {name}: {exc}")


def _tags(batch: str | None, positions: list) -> dict[str, Any]:
    """The journal's batch tags of a message: its batch and the lines it carries."""
    if batch is None:
        return {}
    return {"batch": batch, "positions": [p for p in positions if p is not None]}


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
