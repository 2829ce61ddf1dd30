"""The task `chatq.chat_many`: a small chunk of one provider's jobs in one message.

A Celery message costs the worker a fixed amount of CPU (receive, events, state
updates, acknowledgement) whatever the job does; on two cores that overhead, not the
upstream, caps a fleet of one-message-per-call jobs at about a third of what the
network allows. Bulk producers (`enqueue_many`, batches) therefore send chunks: each
job in a chunk keeps its own task id, result, retries, claim and deadline, and the
chunk's jobs run concurrently as coroutines on the process's event loop (worker/aio.py),
beside those of every other chunk the worker holds; the pool thread that took the
message waits for them, and the message is acknowledged once every job's outcome is
stored. Single `enqueue` jobs stay one message each, so Flower shows them one by one.

If the worker dies, the chunk is delivered again; jobs that already succeeded are not
called again (their ids are claimed, their results stored).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from celery import states
from celery.exceptions import TaskRevokedError
from celery.worker import state as worker_state

from chatq.errors import ChatqError, ChunkFailed, InvalidRequest, JobFailed
from tasks.chat import PrivateRequest
from tasks.jobs import (
    JobRevoked,
    job_ended,
    on_loop,
    run_job,
    send_outcome,
    worker_registry,
)
from worker.aio import process_loop
from worker.app import CHAT_MANY_TASK, app, chunk_summary
from worker.chat.types import ChatRequest
from worker.metrics import JobStats

__all__ = ["chat_many", "tally"]

log = logging.getLogger(__name__)


class _ChunkRequest(PrivateRequest):
    """Monitoring sees counts and sizes of a chunk, never its prompts or answers."""

    result_text = None  # the chunk's result is its counts, which hold no text of a job

    def summarize(self, args: Any, kwargs: Any) -> str:
        return chunk_summary(args)


@dataclass(frozen=True)
class _Outcome:
    """One job of a chunk: "ok", "failed" or "skipped"; its error label; its retries."""

    kind: str
    label: str | None = None
    retries: dict[str, int] = field(default_factory=dict)


# A chunk's own STARTED state helps nobody (each job has its own) and storing it is one
# more write that can fail in a Redis outage and fail the whole chunk: not tracked.
# `throws`: a chunk with failed jobs is an expected outcome (each job is logged once by
# `job_ended`); Celery logs it at INFO without a traceback, acknowledges the message
# (acks_late acknowledges failures) and never retries it (max_retries=0, no autoretry).
@app.task(
    name=CHAT_MANY_TASK,
    bind=True,
    Request=_ChunkRequest,
    max_retries=0,
    typing=False,
    track_started=False,
    throws=(ChunkFailed,),
)
def chat_many(self: Any, jobs: Any) -> dict[str, Any]:
    """Run a chunk of `[task_id, request_dict]` pairs concurrently, storing each job's
    ChatResponse (or failure) under its own task id.

    Returns:
        The chunk's jobs counted by outcome, e.g. `{"ok": 14, "retries": {"RateLimited
        429": 3}}`; `skipped` counts jobs revoked or running elsewhere. This is what
        Flower shows as the chunk's result: counts and error classes, never a prompt.

    Raises:
        InvalidRequest: the argument is not a list of [task_id, request] pairs.
        ChunkFailed: some jobs failed; raised once every job's outcome is stored, so the
            chunk is found under Flower's Failed tasks. Its `outcomes` fact holds the
            counts, with `failed` by error class and status.
    """
    started = time.monotonic()
    pairs = _pairs(jobs)
    if not pairs:
        return {"ok": 0}
    outcome = process_loop().run(_run_chunk(pairs, self.backend, started, self.request.id))
    # Stored on the loop already, in the pipeline of the chunk's last job: Celery's own
    # store (a read, then a write, from this thread) need not run.
    self.request.ignore_result = True
    if isinstance(outcome, ChunkFailed):
        raise outcome
    return outcome


def tally(outcomes: list[_Outcome]) -> dict[str, Any]:
    """`{"ok": N, "failed": {label: n}, "skipped": n, "retries": {reason: n}}`, the
    parts after `ok` only when not empty."""
    failed = Counter(o.label or "JobFailed" for o in outcomes if o.kind == "failed")
    retries: Counter[str] = Counter()
    for outcome in outcomes:
        retries.update(outcome.retries)
    counts: dict[str, Any] = {"ok": sum(o.kind == "ok" for o in outcomes)}
    skipped = sum(o.kind == "skipped" for o in outcomes)
    for key, value in (("failed", dict(failed)), ("skipped", skipped), ("retries", dict(retries))):
        if value:
            counts[key] = value
    return counts


class _Chunk:
    """The jobs of one chunk on the loop, and the chunk's own outcome: its counts (or
    ChunkFailed holding them), sent to be stored under the chunk's id with the last
    job's outcome, in the same pipeline, as Celery would store a task's result (for
    clients waiting on a chunk they sent by name)."""

    def __init__(self, size: int, backend: Any, chunk_id: str | None):
        self.size = size
        self.backend = backend
        self.chunk_id = chunk_id
        self.outcomes: list[_Outcome] = []
        self.result: dict[str, Any] | ChunkFailed | None = None
        self.stored: asyncio.Future | None = None

    async def end(self, outcome: _Outcome, job: str, state: str | None = None,
                  result: Any = None) -> _Outcome:  # fmt: skip
        """One job ended with `outcome`: store its `state` and `result` (none when
        `state` is None); the chunk's own once every job has ended."""
        sent = send_outcome(self.backend, job, state, result) if state else None
        self.outcomes.append(outcome)
        if len(self.outcomes) == self.size:
            self._settle()
        if sent is not None:
            await sent
        return outcome

    def _settle(self) -> None:
        counts = tally(self.outcomes)
        failed = sum(counts.get("failed", {}).values())
        if not failed:
            self.result = counts
        else:
            self.result = ChunkFailed(
                f"{failed} of {self.size} jobs failed: {json.dumps(counts, sort_keys=True)}",
                outcomes=counts,
            )
        if self.chunk_id:
            state = states.FAILURE if failed else states.SUCCESS
            self.stored = send_outcome(self.backend, self.chunk_id, state, self.result)


async def _run_chunk(
    pairs: list[tuple[str, Any]], backend: Any, started: float, chunk_id: str | None
) -> dict[str, Any] | ChunkFailed:
    """Every job of a chunk at once on the loop; once all are stored, the chunk's own
    outcome (see `_Chunk`).

    Raises:
        The first error that kept a job's outcome from being stored (Redis gone past
        its retries), after every other job has ended. (Celery then stores the chunk's
        failure over the counts sent with its last job.)
    """
    chunk = _Chunk(len(pairs), backend, chunk_id)
    ended = await asyncio.gather(
        *(_one(job, data, started, chunk) for job, data in pairs), return_exceptions=True
    )
    if chunk.stored is not None:  # its reply is read even when a job's store failed
        ended += await asyncio.gather(chunk.stored, return_exceptions=True)
    for outcome in ended:
        if isinstance(outcome, BaseException):
            raise outcome
    assert chunk.result is not None  # every job ended
    return chunk.result


async def _one(job: str, data: Any, started: float, chunk: _Chunk) -> _Outcome:
    """Run one job of a chunk and store its outcome."""
    if job in worker_state.revoked:
        log.info("job %s was revoked: not run", job)
        # An ended job: nobody waits for it.
        revoked = TaskRevokedError("revoked")
        return await chunk.end(_Outcome("skipped"), job, states.REVOKED, revoked)
    stats, model = JobStats(), "?"
    try:
        request = ChatRequest.parse(data)
        model = request.model
        stats.provider = worker_registry().prepare(request)[0].name
        response = await run_job(job, request, backend=chunk.backend, started=started,
                                 stats=stats)  # fmt: skip
    except JobRevoked:
        log.info("job %s was revoked while it waited: not run", job)
        revoked = TaskRevokedError("revoked")
        return await chunk.end(_Outcome("skipped"), job, states.REVOKED, revoked)
    except ChatqError as exc:
        failed = _Outcome("failed", exc.label, dict(stats.retries))
        await chunk.end(failed, job, states.FAILURE, exc)
        job_ended(job, model, stats, error=exc)
        return failed
    except Exception as exc:  # a job's own bug must not sink its chunk-mates
        log.exception("job %s model=%s failed unexpectedly", job, model[:120])
        error = JobFailed(f"{type(exc).__name__}: {exc}")
        failed = _Outcome("failed", error.label, dict(stats.retries))
        await chunk.end(failed, job, states.FAILURE, error)
        job_ended(job, model, stats, error=error, logged=True)
        return failed
    if response is None:
        return await chunk.end(_Outcome("skipped"), job)
    ok = _Outcome("ok", None, dict(stats.retries))
    try:
        await chunk.end(ok, job, states.SUCCESS, response)
    except Exception:
        # Paid for but not stored (Redis gone past every retry): let go of the claim
        # so that the fleet's sweeper can run the job again rather than wait it out.
        with contextlib.suppress(Exception):
            await on_loop().claims.release_mine(job)
        raise
    job_ended(job, model, stats, response=response)
    return ok


def _pairs(jobs: Any) -> list[tuple[str, Any]]:
    if not isinstance(jobs, list) or not all(
        isinstance(p, (list, tuple)) and len(p) == 2 and isinstance(p[0], str) for p in jobs
    ):
        raise InvalidRequest(f"{CHAT_MANY_TASK} takes a list of [task_id, request] pairs")
    return [(p[0], p[1]) for p in jobs]
