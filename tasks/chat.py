"""The task `chatq.chat`: one chat request in, one ChatResponse out, retries inside.

Other services send it by name (`send_task("chatq.chat", [request_dict])`), so its name
and its single JSON-dict argument are a stable contract.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from celery import states
from celery.exceptions import Ignore
from celery.worker.request import Request

from chatq.errors import ChatqError, InvalidRequest
from tasks.jobs import job_ended, run_job, store_outcome, worker_registry
from worker.aio import process_loop
from worker.app import CHAT_TASK, app, request_summary
from worker.chat.types import ChatRequest
from worker.metrics import JobStats

__all__ = ["PrivateRequest", "chat"]

log = logging.getLogger(__name__)


class PrivateRequest(Request):
    """A chat job as the worker and its events show it: model, counts and sizes only.

    Jobs published by a client that knows nothing of chatq carry a repr of their
    arguments; this replaces it before any event reaches Flower. Subclasses say how to
    summarise their arguments and what stands for their result.
    """

    result_text = "<ChatResponse>"

    def summarize(self, args: Any, kwargs: Any) -> str:
        return request_summary(args, kwargs)

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self._argsrepr = self.summarize(self._args, self._kwargs)
        self._kwargsrepr = "{}"

    def send_event(self, type: str, **fields: Any) -> None:
        if "result" in fields and self.result_text is not None:
            fields["result"] = self.result_text
        if type == "task-failed" and "runtime" not in fields and self.time_start:
            # Celery sends no runtime with a failure; Flower then shows none.
            fields["runtime"] = max(0.0, time.time() - self.time_start)
        super().send_event(type, **fields)


# `throws`: a chatq error is an expected outcome (a revoked key, an outage), logged by
# `job_ended` as one WARNING line; Celery logs it at INFO without a traceback.
# `track_started=False`: a job's STARTED state in the result backend helps nobody (Flower
# shows the task-started event; the jobs of chunks never had one; readers take it for
# pending) and storing it cost every job a read and a write.
@app.task(
    name=CHAT_TASK,
    bind=True,
    Request=PrivateRequest,
    max_retries=0,
    typing=False,
    track_started=False,
    throws=(ChatqError,),
)
def chat(self: Any, *args: Any, **kwargs: Any) -> dict[str, Any]:
    """Answer one chat request (a dict of ChatRequest's fields) with a ChatResponse dict.

    Raises:
        InvalidRequest: the arguments are not one valid request.
        ProviderNotFound: the model's provider is not registered on this worker.
        UpstreamError: (or a subclass) the provider kept failing; JobFailed subclasses
            when the deadline or a too-long Retry-After stopped the retries.
    """
    started = time.monotonic()
    job, stats, model = self.request.id, JobStats(), "?"
    loop = process_loop()

    hostname = self.request.hostname

    def retried(error: ChatqError, attempt: int) -> None:
        # Flower shows a task's retries from its events: Celery sends none for retries
        # made inside the task, so this says each one (count and reason). Its
        # `exception` stays on the task after it succeeds: say it was retried. Sent
        # from a thread of the loop's executor (an event may wait on the broker), for
        # this task by its id (that thread has no task request of its own).
        reason = f"call {attempt} failed ({error.label}), retried"

        def send() -> None:
            policy = app.conf.task_publish_retry_policy
            with app.events.default_dispatcher(hostname=hostname) as dispatcher:
                dispatcher.send("task-retried", uuid=job, retry=True, retry_policy=policy,
                                retries=attempt, exception=reason)  # fmt: skip

        loop.loop.run_in_executor(None, send)

    try:
        request = _one_request(args, kwargs)
        model = request.model
        stats.provider = worker_registry().prepare(request)[0].name
        response = loop.run(_run_single(job, request, self.backend, started, stats, retried))
    except ChatqError as exc:
        job_ended(job, model, stats, error=exc)
        raise
    if response is None:
        raise Ignore()
    # Stored on the loop already, with the jobs of chunks (no read before the write:
    # the claim guarantees no success is overwritten): Celery need not store it again.
    self.request.ignore_result = True
    return response


async def _run_single(
    job: str,
    request: ChatRequest,
    backend: Any,
    started: float,
    stats: JobStats,
    notify: Callable[[ChatqError, int], None],
) -> dict | None:
    """A `chatq.chat` job on the loop; its success counted there (its failure is
    counted by the task, with those that never reached the loop)."""
    response = await run_job(job, request, backend=backend, started=started, stats=stats,
                             notify=notify)  # fmt: skip
    if response is not None:
        await store_outcome(backend, job, states.SUCCESS, response)
        job_ended(job, request.model, stats, response=response)
    return response


def _one_request(args: tuple, kwargs: dict) -> ChatRequest:
    """The single request a job carries, or InvalidRequest saying what arrived instead."""
    if len(args) == 1 and not kwargs:
        return ChatRequest.parse(args[0])
    if not args and set(kwargs) == {"request"}:
        return ChatRequest.parse(kwargs["request"])
    raise InvalidRequest(
        f"{CHAT_TASK} takes one argument, a chat request object; got {len(args)} "
        f"positional and {len(kwargs)} keyword argument(s)"
    )
