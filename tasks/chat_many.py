"""The task `chatq.chat_many`: a small chunk of one provider's jobs in one message.

A Celery message costs the worker a fixed amount of CPU (receive, events, state
updates, acknowledgement) whatever the job does; on two cores that overhead, not the
upstream, caps a fleet of one-message-per-call jobs at about a third of what the
network allows. Bulk producers (`enqueue_many`, batches) therefore send chunks: each
job in a chunk keeps its own task id, result, retries, claim and deadline, and the
chunk's jobs run concurrently inside the task. Single `enqueue` jobs stay one message
each, so Flower shows them one by one.

If the worker dies, the chunk is delivered again; jobs that already succeeded are not
called again (their ids are claimed, their results stored).
"""

from __future__ import annotations

import contextlib
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from celery import states
from celery.worker import state as worker_state

from chatq.errors import ChatqError, InvalidRequest, JobFailed
from tasks.chat import JobRevoked, PrivateRequest, run_job, worker_claims, worker_registry
from worker.app import CHAT_MANY_TASK, app, chunk_summary
from worker.chat.types import ChatRequest

__all__ = ["chat_many"]

log = logging.getLogger(__name__)


class _ChunkRequest(PrivateRequest):
    """Monitoring sees counts and sizes of a chunk, never its prompts or answers."""

    result_text = "<chunk summary>"

    def summarize(self, args: Any, kwargs: Any) -> str:
        return chunk_summary(args)


# A chunk's own STARTED state helps nobody (each job has its own) and storing it is one
# more write that can fail in a Redis outage and fail the whole chunk: not tracked.
@app.task(
    name=CHAT_MANY_TASK,
    bind=True,
    Request=_ChunkRequest,
    max_retries=0,
    typing=False,
    track_started=False,
)
def chat_many(self: Any, jobs: Any) -> dict[str, int]:
    """Run a chunk of `[task_id, request_dict]` pairs concurrently, storing each job's
    ChatResponse (or failure) under its own task id.

    Returns:
        Counts: {"succeeded", "failed", "skipped"} (skipped: revoked, or running
        elsewhere).

    Raises:
        InvalidRequest: the argument is not a list of [task_id, request] pairs.
    """
    started = time.monotonic()
    pairs = _pairs(jobs)
    backend = self.backend
    if not pairs:
        return {"succeeded": 0, "failed": 0, "skipped": 0}
    with ThreadPoolExecutor(max_workers=len(pairs), thread_name_prefix="chatq-chunk") as pool:
        outcomes = list(pool.map(lambda p: _one(p[0], p[1], backend, started), pairs))
    return {k: outcomes.count(k) for k in ("succeeded", "failed", "skipped")}


def _one(job: str, data: Any, backend: Any, started: float) -> str:
    """Run one job of a chunk and store its outcome; 'succeeded', 'failed' or 'skipped'."""
    if job in worker_state.revoked:
        log.info("job %s was revoked: not run", job)
        backend.mark_as_revoked(job, reason="revoked")  # an ended job: nobody waits for it
        return "skipped"
    try:
        request = ChatRequest.parse(data)
        worker_registry().prepare(request)
        response = run_job(job, request, backend=backend, started=started)
    except JobRevoked:
        log.info("job %s was revoked while it waited: not run", job)
        backend.mark_as_revoked(job, reason="revoked")
        return "skipped"
    except ChatqError as exc:
        backend.mark_as_failure(job, exc)
        return "failed"
    except Exception as exc:  # a job's own bug must not sink its chunk-mates
        log.exception("job %s failed unexpectedly", job)
        backend.mark_as_failure(job, JobFailed(f"{type(exc).__name__}: {exc}"))
        return "failed"
    if response is None:
        return "skipped"
    try:
        _store_success(backend, job, response)
    except Exception:
        # Paid for but not stored (Redis gone past every retry): let go of the claim
        # so that the fleet's sweeper can run the job again rather than wait it out.
        with contextlib.suppress(Exception):
            worker_claims().release_mine(job)
        raise
    return "succeeded"


def _store_success(backend: Any, job: str, response: dict) -> None:
    """Store a job's success in one round trip (SET and PUBLISH, pipelined).

    Celery's own `mark_as_done` first reads the stored state so as not to overwrite a
    success; here the job's claim already guarantees that, so that read is skipped.
    """
    meta = backend._get_result_meta(
        result=response, state=states.SUCCESS, traceback=None, request=None
    )
    meta["task_id"] = job
    backend.set(backend.get_key_for_task(job), backend.encode(meta))


def _pairs(jobs: Any) -> list[tuple[str, Any]]:
    if not isinstance(jobs, list) or not all(
        isinstance(p, (list, tuple)) and len(p) == 2 and isinstance(p[0], str) for p in jobs
    ):
        raise InvalidRequest(f"{CHAT_MANY_TASK} takes a list of [task_id, request] pairs")
    return [(p[0], p[1]) for p in jobs]
