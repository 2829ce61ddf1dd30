"""What every chat job does on the worker's event loop, whichever task carried it.

`run_job` claims the job id, waits for a turn at the provider, calls it with retries
and hands back the answer; `store_outcome` stores an outcome as Celery's result backend
would; `job_ended` counts it. The claims, the limiter's side and the metrics of a
process are made once, on its loop (`on_loop`), and wound down when the worker stops.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import redis
from celery import signals, states
from celery.worker import state as worker_state

from chatq.errors import ChatqError, DeadlineExceeded, InvalidAnswer, JobFailed
from worker.aio import process_loop
from worker.app import app, current_settings, loop_redis, worker_redis
from worker.chat.builder import build_registry
from worker.chat.registry import Registry
from worker.chat.types import ChatRequest, ChatResponse
from worker.claims import Claims
from worker.limits import LAST_TURN, CallSlots, Limiter, RedisBackend, estimate_request_tokens
from worker.metrics import JobStats, MetricsBuffer
from worker.redis_guard import translated
from worker.retry import RetryPolicy, run_with_retries

__all__ = [
    "JobRevoked",
    "OnLoop",
    "job_ended",
    "on_loop",
    "run_job",
    "send_outcome",
    "store_outcome",
    "worker_registry",
]

log = logging.getLogger(__name__)

_lock = threading.Lock()
_registry: Registry | None = None


def worker_registry() -> Registry:
    """This worker process's registry: built once, shared by every job."""
    global _registry
    with _lock:
        if _registry is None:
            _registry = build_registry(current_settings())
        return _registry


@dataclass(frozen=True)
class OnLoop:
    """What the jobs of this process share on its event loop (worker/aio.py): job
    claims (expiring before the broker's visibility timeout), the fleet limiter's side
    of this process, its own cap on calls in flight, and the metrics added up between
    writes. Their Redis commands go through the loop's batcher."""

    claims: Claims
    limiter: Limiter
    slots: CallSlots
    metrics: MetricsBuffer
    #: Every job's attempts, backoff and deadline (the settings do not change).
    policy: RetryPolicy
    pid: int
    #: The broker's URL, as errors name it (Celery's lookup costs more than a job's claim).
    redis_url: str


_on_loop: OnLoop | None = None


def on_loop() -> OnLoop:
    """This process's claims, limiter and metrics; call it on the loop only."""
    global _on_loop
    if _on_loop is None or _on_loop.pid != os.getpid():
        settings, client = current_settings(), loop_redis()
        _on_loop = OnLoop(
            claims=Claims(client, ttl=settings.job_deadline + settings.timeout),
            limiter=Limiter.from_settings(settings, RedisBackend(worker_redis(), aclient=client)),
            slots=CallSlots(settings.in_flight),
            metrics=MetricsBuffer(client, ttl=settings.result_ttl),
            policy=RetryPolicy.from_settings(settings),
            pid=os.getpid(),
            redis_url=app.conf.broker_url,
        )
    return _on_loop


@signals.worker_shutdown.connect
@signals.worker_process_shutdown.connect
def _stopping(**kw: Any) -> None:
    """In-flight jobs have ended by now (a threads pool's main process, or a prefork
    child): let their last releases reach the limiter, write the metrics they added
    up and close the upstream connections, within `_WIND_DOWN` seconds (a Redis that
    is gone must not hold the worker's exit for the whole reconnect window)."""
    if _on_loop is None or _on_loop.pid != os.getpid():
        return
    try:
        process_loop().run(asyncio.wait_for(_wind_down(_on_loop), _WIND_DOWN))
    except Exception as exc:  # nothing here may stop a shutdown
        log.info("metrics not written at shutdown (%s)", type(exc).__name__)


#: Seconds a stopping worker gives its last metrics and its connections.
_WIND_DOWN = 3.0


async def _wind_down(shared: OnLoop) -> None:
    await shared.limiter.drain()
    await shared.metrics.flush()
    if _registry is not None:
        await _registry.aclose()


async def store_outcome(backend: Any, job: str, state: str, result: Any) -> None:
    """Store a job's outcome as Celery's result backend would (the same document, key,
    expiry and PUBLISH), in the loop's next pipeline.

    Celery's own `store_result` first reads the stored state so as not to overwrite a
    success; here the job's claim already guarantees that, so that read is skipped.
    """
    await send_outcome(backend, job, state, result)


def send_outcome(backend: Any, job: str, state: str, result: Any) -> asyncio.Future:
    """`store_outcome`'s commands, handed to the loop's next pipeline now (on the loop);
    the future of their replies."""
    result = backend.encode_result(result, state)  # an error as Celery stores one
    # The document Celery's `_get_result_meta` makes off a task's thread (no request,
    # so no children, group or extended fields), without its per-call settings lookups.
    done = datetime.now(backend.app.timezone).isoformat()
    meta = {"status": state, "result": result, "traceback": None, "children": None,
            "date_done": done, "task_id": job}  # fmt: skip
    key, value = backend.get_key_for_task(job), backend.encode(meta)
    expires = backend.failure_expires if state == states.FAILURE else backend.expires
    client = loop_redis()
    stored = ("SETEX", key, int(expires), value) if expires else ("SET", key, value)
    # Futures of one pipeline, gathered without a task each.
    return asyncio.gather(client.send(*stored), client.send("PUBLISH", key, value))


class JobRevoked(JobFailed):
    """The job was revoked (its batch cancelled) while it waited for its turn."""


def job_ended(
    job: str,
    model: str,
    stats: JobStats,
    *,
    response: dict | None = None,
    error: ChatqError | None = None,
    logged: bool = False,
) -> None:
    """Count a job that ended in the fleet's metrics (added up on the loop, written
    every second); log a failure as one WARNING line (job id, model, error class and
    status: never the prompt, no traceback) unless the caller already `logged` it.
    Callable from the loop or from a pool thread."""
    if error is not None and not logged:
        log.warning(
            "job %s model=%s failed: %s after %d call(s)",
            job, model[:120], error.label, stats.calls,
        )  # fmt: skip
    elif error is None and stats.calls == 0:
        return  # answered by an earlier delivery: counted then
    loop = process_loop()
    count = _counter(stats, response, error)
    if loop.in_loop:
        count()
    else:
        loop.loop.call_soon_threadsafe(count)


def _counter(
    stats: JobStats, response: dict | None, error: ChatqError | None
) -> Callable[[], None]:
    """Adds one job to the metrics written from the loop (never costs a job anything)."""

    def count() -> None:
        on_loop().metrics.job_ended(stats, response=response, error=error)

    return count


#: How often a second delivery of a running job checks whether the first has finished.
_BUSY_POLL = 0.5


async def run_job(
    job: str,
    request: ChatRequest,
    *,
    backend: Any,
    started: float,
    stats: JobStats | None = None,
    notify: Callable[[ChatqError, int], None] | None = None,
) -> dict | None:
    """Answer one job unless that would pay twice: its ChatResponse as a dict, or None
    when the same job id is running elsewhere right now.

    A job id that already succeeded returns the stored response without a call. Otherwise
    the id is claimed in Redis first; the claim is given up when the job fails (so it may
    be run again at once) and kept until it expires when it succeeds (so a late
    duplicate delivery finds it, and after that finds the stored success). A delivery
    that finds the job running elsewhere waits (within its deadline) for that outcome,
    and runs the job itself if the other holder dies first.

    `stats` is filled in with the job's calls, waits and retries; `notify` is told of
    each retry (error, attempt).
    """
    shared = on_loop()
    claims, limiter, policy = shared.claims, shared.limiter, shared.policy
    registry, stats = worker_registry(), stats or JobStats()
    # Its callers resolved it already (to refuse what cannot be routed before a claim).
    stats.provider = stats.provider or registry.resolve(request.model)[0].name
    tokens = estimate_request_tokens(request)
    with translated(shared.redis_url):  # Redis gone past reconnecting: a chatq error
        result_key = backend.get_key_for_task(job).decode()
        # The first turn at the provider is asked for beside the claim (both commands
        # share a round trip), and given back when the job is not to be called.
        early = limiter.ask_early(stats.provider, tokens=tokens, deadline=started + policy.deadline)
        try:
            claim = await claims.claim(job, result_key=result_key)
        except BaseException:
            await limiter.forgo(early)
            raise
        if claim.state != "claimed":
            await limiter.forgo(early)
            early = None
        if claim.state == "busy":
            # Running elsewhere: wait for its outcome rather than drop this delivery, so
            # that if the other worker dies before storing a result, this one runs it.
            log.info("job %s model=%s is running elsewhere: waiting", job, request.model)
            end = started + current_settings().job_deadline
            while claim.state == "busy" and time.monotonic() + _BUSY_POLL < end:
                await asyncio.sleep(_BUSY_POLL)
                claim = await claims.claim(job, result_key=result_key)
        if claim.state == "done":
            log.info("job %s model=%s already succeeded: no upstream call", job, request.model)
            return claim.stored["result"]
        if claim.state == "busy":
            log.warning("job %s model=%s still running elsewhere: no call", job, request.model)
            return None
        try:
            return await _answer(
                job, request, registry, started, stats, notify, policy, tokens, early
            )
        except BaseException:
            with contextlib.suppress(redis.RedisError):  # else the claim expires on its own
                await claims.release(job, claim.token)
            raise


async def _answer(
    job: str,
    request: ChatRequest,
    registry: Registry,
    started: float,
    stats: JobStats,
    notify: Callable[[ChatqError, int], None] | None,
    policy: RetryPolicy,
    tokens: float,
    early: asyncio.Future | None,
) -> dict:
    """Call the upstream with retries; the ChatResponse as a dict, its tokens those of
    every call the job paid for (an answer that did not match its schema included).
    `early` is the first call's turn at the provider, asked for already (or None)."""

    def on_retry(error: ChatqError, attempt: int, wait: float) -> None:
        log.info(
            "job %s model=%s call %d failed (%s), next try in %.2fs",
            job, request.model, attempt, error.label, wait,
        )  # fmt: skip
        stats.note_retry(error)
        if notify is not None:
            notify(error, attempt)

    provider = stats.provider
    assert provider is not None  # run_job resolved it
    shared = on_loop()
    limiter, slots = shared.limiter, shared.slots
    spent = {"input_tokens": 0, "output_tokens": 0}  # by answers that did not match
    turn = [early]  # the first call's, when asked for early; then each call asks its own

    async def one_call(deadline: float) -> ChatResponse:
        """Wait for a turn at the provider and a slot in this process (not an attempt),
        then make one call."""
        asked, called = time.monotonic(), False
        turned: float | None = None  # when the turn came

        async def upstream() -> ChatResponse:
            nonlocal called, turned
            # The turn is granted; the call waits for room in this process (at once
            # unless CHATQ_IN_FLIGHT caps it), within the same last-turn rule.
            turned = time.monotonic()
            await slots.take(deadline - turned - LAST_TURN, provider)
            try:
                # A job of a chunk may have waited long for its turn at the provider: if
                # its batch was cancelled meanwhile, it must not be paid for.
                if job in worker_state.revoked:
                    raise JobRevoked(f"job {job} was revoked while it waited: not called")
                called = True
                waits(time.monotonic())
                stats.calls += 1
                return await registry.achat(request, deadline=deadline)
            except InvalidAnswer as exc:
                # Paid for, though re-asked: its tokens count in the job's usage, and the
                # error the job may end with carries the sum so far.
                for key in spent:
                    spent[key] += int((exc.usage or {}).get(key) or 0)
                exc.facts["usage"] = dict(spent)
                raise
            finally:
                slots.give_back()

        def waits(now: float) -> None:
            came = now if turned is None else turned
            stats.waited += came - asked
            stats.slot_waited += now - came

        first, turn[0] = turn[0], None
        try:
            return await limiter.call(
                provider, upstream, tokens=tokens, deadline=deadline, early=first
            )
        except DeadlineExceeded as exc:
            if not called:  # the whole wait was for a turn (or a slot) that never came
                waits(time.monotonic())
            exc.facts.setdefault("attempts", stats.calls)  # the calls made, not the waits
            raise

    # Waits for capacity happen here, inside the task and within the job's deadline, so
    # a job never holds its message past the broker's visibility timeout (deadline +
    # one read timeout + a margin; see worker/app.py).
    try:
        response, attempts = await run_with_retries(
            one_call, policy, started=started, on_retry=on_retry, paced=limiter.guards(provider)
        )
    finally:
        await limiter.forgo(turn[0])  # a first call never made (the deadline had passed)
    usage = {k: getattr(response, k) + spent[k] for k in spent}
    update = {"attempts": attempts, "retries": dict(stats.retries), **usage}
    if response.cost is None or any(spent.values()):
        # Not reported by the provider, or re-asks paid before this answer: every token
        # the job paid for, priced by CHATQ_PRICES (unknown when it has no price).
        prices = current_settings().prices
        update["cost"] = prices.cost(request.model, usage["input_tokens"], usage["output_tokens"])
    return response.model_copy(update=update).model_dump(mode="json")
