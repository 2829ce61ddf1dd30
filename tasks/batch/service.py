"""Batches: submit lines, follow them to the end, read their results back in order.

A line's task id is a stable function of the batch id, the line's custom_id and the
batch's epoch (bumped by a cancel), so submitting a batch again finds the results of
the first time: lines that succeeded (and, unless asked to retry, lines that failed)
are not queued again, and a line queued twice is still paid once (the worker claims
its id and skips an id that already succeeded).

    batches = Batches(producer)
    report = batches.submit("b-1", FileSource(path, model="mock/echo"))
    batches.follow("b-1", progress=Progress("b-1"))
    write_results(batches.results("b-1"), out)
"""

from __future__ import annotations

import itertools
import logging
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import replace
from typing import Any

from chatq.errors import InvalidRequest
from tasks.batch.cache import ResponseCache, cache_key
from tasks.batch.claims import stale
from tasks.batch.estimate import Budget
from tasks.batch.follow import Follower
from tasks.batch.input import Line
from tasks.batch.output import PENDING_ERROR, Result
from tasks.batch.snapshot import Snapshot
from tasks.batch.source import FileSource, Source, SubmitReport, default_batch_id, task_id
from tasks.batch.store import (
    CANCELLED,
    CANCELLED_ERROR,
    CHUNK,
    FAILED,
    SUCCEEDED,
    BatchRecord,
    BatchStore,
    outcome_of,
)
from tasks.producer import Producer
from tasks.redis_watch import lost_notice

__all__ = [
    "Batches",
    "FileSource",
    "Source",
    "SubmitReport",
    "default_batch_id",
    "task_id",
]

log = logging.getLogger(__name__)


class Batches:
    """Submit, follow, read, cancel and list batches on one producer's Redis.

    Args:
        producer: publishes jobs; its runtime's Redis holds records and results.
        store: default a BatchStore on the runtime's Redis, TTL = CHATQ_RESULT_TTL.
    """

    def __init__(
        self,
        producer: Producer,
        *,
        store: BatchStore | None = None,
        is_stale: Callable[[bytes], bool] = stale,
    ):
        self.producer = producer
        #: Whether a claim's holder can no longer finish its job (see claims_view).
        self.is_stale = is_stale
        runtime = producer.runtime
        ttl = runtime.settings.result_ttl
        self.store = store or BatchStore(runtime.redis(), ttl=ttl)
        self.cache = ResponseCache(self.store.client, ttl=ttl)

    # -- submitting ----------------------------------------------------------------------
    def check(self, source: Source, *, batch_id: str, limit: int = 20) -> tuple[int, int, list]:
        """Read every line and queue nothing: (lines, bad lines, the first `limit` errors)."""
        self.store.begin_index(batch_id)
        count, bad, errors = 0, 0, []
        try:
            for chunk in _chunks(source.lines(), CHUNK):
                for line in self._unique(batch_id, chunk):
                    count += 1
                    if line.error is not None:
                        bad += 1
                        if len(errors) < limit:
                            errors.append(line.error)
        finally:
            self.store.end_index(batch_id)
        return count, bad, errors

    def submit(
        self,
        batch_id: str,
        source: Source,
        *,
        retry_failed: bool = False,
        use_cache: bool = False,
        requeue: bool = False,
        options: dict[str, Any] | None = None,
        max_cost: float | None = None,
    ) -> SubmitReport:
        """Index the source's lines under `batch_id` and queue those with no result yet.

        Args:
            retry_failed: queue lines whose job failed, too.
            max_cost: dollars the batch may cost at most (see tasks.batch.estimate's
                Budget): lines past it are not queued and end `BudgetExceeded`, until
                a submit with a higher limit queues them.
            use_cache: answer a temperature-0 line from an identical earlier request.
            requeue: queue again lines already queued and still unanswered (their
                messages may be lost: the Redis restarted after a crash).

        Raises:
            InvalidRequest: the batch id is taken by a batch of another input.
        """
        started = time.monotonic()
        record = self.store.record(batch_id)
        digest = source.digest()
        if record is not None and record.digest and record.digest != digest:
            raise InvalidRequest(
                f"batch {batch_id} already exists for another input ({record.source}); "
                "give another --batch-id"
            )
        epoch = record.epoch if record else 0
        self.store.save(
            batch_id,
            kind=source.kind,
            source=source.path,
            digest=digest,
            model=source.model,
            state="submitting",
            epoch=epoch,
            created=record.created if record else time.time(),
            options={**(record.options if record else {}), **(options or {})},
            finished=None,
        )
        budget = (
            None if max_cost is None else Budget(max_cost, self.producer.runtime.settings.prices)
        )
        report = SubmitReport(batch_id)
        self.store.begin_index(batch_id)
        position = 0
        for chunk in _chunks(source.lines(), CHUNK):
            lines = self._unique(batch_id, chunk)
            self._submit_chunk(batch_id, lines, position, epoch, report,
                               retry_failed=retry_failed, use_cache=use_cache,
                               requeue=requeue, budget=budget)  # fmt: skip
            position += len(lines)
        self.store.end_index(batch_id)
        report.lines = position
        self.store.save(batch_id, state="running", lines=position, invalid=report.invalid)
        self.store.finish_if_complete(batch_id, last_result=None)  # nothing left to run
        report.seconds = time.monotonic() - started
        log.info(
            "batch %s: %d lines, %d queued, %d already done, %d cached, %d invalid",
            batch_id, report.lines, report.enqueued, report.already_done, report.cached,
            report.invalid,
        )  # fmt: skip
        return report

    def _unique(self, batch_id: str, chunk: list[Line]) -> list[Line]:
        firsts = self.store.first_uses(batch_id, [line.custom_id for line in chunk])
        return [
            line if first or line.error is not None else line.duplicate()
            for line, first in zip(chunk, firsts, strict=True)
        ]

    def _submit_chunk(self, batch_id, lines, position, epoch, report, *, retry_failed,
                      use_cache, requeue, budget=None) -> None:  # fmt: skip
        entries: list[dict[str, Any]] = []
        todo: list[tuple[int, Line, str, str | None]] = []  # (position, line, tid, key)
        good = [(i, line) for i, line in enumerate(lines) if line.error is None]
        epochs = range(epoch, -1, -1)
        candidates = [task_id(batch_id, line.custom_id, e) for _, line in good for e in epochs]
        metas = iter(self.store.metas(candidates))
        chosen: dict[int, tuple[str, Any]] = {}
        for i, line in good:
            options = [(task_id(batch_id, line.custom_id, e), outcome_of(next(metas)))
                       for e in epochs]  # fmt: skip
            done = next((o for o in options if o[1].state == SUCCEEDED), None)
            chosen[i] = done or options[0]
        forget: list[str] = []
        retry: set[int] = set()
        ended: list[int] = []
        for i, line in enumerate(lines):
            entry: dict[str, Any] = {"c": line.custom_id, "n": line.number}
            entries.append(entry)
            if line.error is not None:
                entry["e"] = line.error
                report.invalid += 1
                if len(report.errors) < 20:
                    report.errors.append(line.error)
                continue
            tid, outcome = chosen[i]
            key = cache_key(line.request)
            entry["t"] = tid
            if key:
                entry["k"] = key
            if outcome.state == SUCCEEDED or (outcome.state == FAILED and not retry_failed):
                if budget is not None and outcome.state == SUCCEEDED:
                    budget.spend(outcome.response)
                report.already_done += 1
                ended.append(position + i)
                continue
            if outcome.state in (FAILED, CANCELLED):
                forget.append(tid)
                retry.add(position + i)  # its earlier message is spent: queue it anew
            todo.append((position + i, line, tid, key))
        self.store.forget_results(forget)
        self.store.mark_done(batch_id, sorted(retry), ended=False)
        if use_cache and todo:
            before = {t[0] for t in todo}
            todo = self._answer_from_cache(todo, report)
            ended += sorted(before - {t[0] for t in todo})
        self.store.mark_done(batch_id, ended)
        if todo and not requeue:
            queued = self.store.queued(batch_id, [t[0] for t in todo])
            queued = [q and t[0] not in retry for t, q in zip(todo, queued, strict=True)]
            report.already_queued += sum(queued)
            for t in (t for t, q in zip(todo, queued, strict=True) if q and budget):
                budget.reserve(t[1].request)
            todo = [t for t, q in zip(todo, queued, strict=True) if not q]
        if todo and budget is not None:
            todo = self._within_budget(batch_id, todo, entries, position, budget, report)
        if todo:
            self._reap_stale_claims([t[2] for t in todo])
            self.producer.publish([t[1].request for t in todo], [t[2] for t in todo],
                                  batch=batch_id, positions=[t[0] for t in todo])  # fmt: skip
            self.store.mark_queued(batch_id, [t[0] for t in todo])
            report.enqueued += len(todo)
        self.store.append(batch_id, entries)

    def _within_budget(self, batch_id, todo, entries, position, budget, report) -> list:
        """The lines `budget` admits; the others end BudgetExceeded (until resubmitted)."""
        admitted, held = [], []
        for item in todo:
            error = budget.admit(item[1].request)
            if error is None:
                admitted.append(item)
                continue
            entry = entries[item[0] - position]
            entry.pop("t", None)
            entry.pop("k", None)
            entry["e"] = {**error, "line": item[1].number}
            held.append(item[0])
        self.store.mark_done(batch_id, held)
        report.held += len(held)
        return admitted

    def _answer_from_cache(self, todo: list, report: SubmitReport) -> list:
        keyed = [t for t in todo if t[3]]
        hits = self.cache.get_many([t[3] for t in keyed])
        answered = {t[2]: hit for t, hit in zip(keyed, hits, strict=True) if hit is not None}
        self.store.put_metas(list(answered.items()))
        report.cached += len(answered)
        return [t for t in todo if t[2] not in answered]

    def _reap_stale_claims(self, task_ids: list[str]) -> int:
        """Drop claims held by dead processes of this host, so the jobs can run again."""
        dropped = 0
        for tid, token in zip(task_ids, self.store.claims(task_ids), strict=True):
            if token is not None and self.is_stale(token) and self.store.drop_claim(tid, token):
                dropped += 1
        if dropped:
            log.info("dropped %d claim(s) left by dead workers", dropped)
        return dropped

    def republish(self, batch_id: str, source: Source, positions: Iterable[int]) -> int:
        """Queue again the lines at `positions` (0-based) that have a job; how many."""
        wanted = set(positions)
        if not wanted:
            return 0
        requests, ids, done = [], [], []
        entries = itertools.chain.from_iterable(self.store.iter_entries(batch_id))
        for position, (line, entry) in enumerate(zip(source.lines(), entries, strict=False)):
            if position in wanted and entry.get("t") and entry["c"] == line.custom_id:
                requests.append(line.request)
                ids.append(entry["t"])
                done.append(position)
                if len(done) == len(wanted):
                    break
        if ids:
            self._reap_stale_claims(ids)
            self.producer.publish(requests, ids, batch=batch_id, positions=done)
            self.store.mark_queued(batch_id, done)
        return len(ids)

    # -- reading -------------------------------------------------------------------------
    def record(self, batch_id: str) -> BatchRecord:
        """The batch's record; InvalidRequest when there is none (never submitted, or
        expired, or lost with a Redis that restarted empty: it says which)."""
        record = self.store.record(batch_id)
        if record is None:
            runtime = self.producer.runtime
            notice = lost_notice(runtime.redis_url, home=runtime.settings.home)
            if notice:
                raise InvalidRequest(
                    f"no batch {batch_id!r}: {notice}; a batch submitted before then was "
                    "lost with them: submit it again (`chatq batch run` keeps the answers "
                    "it had already read, and does not pay for them twice)"
                )
            raise InvalidRequest(f"no batch {batch_id!r} (never submitted, or expired)")
        return record

    def snapshot(
        self, batch_id: str, *, follower: Follower | None = None
    ) -> tuple[BatchRecord, Snapshot]:
        """The batch's record and counts as Redis holds them now (running: a worker
        holds its claim); a `follower` kept from an earlier call reads only what was
        pending then.

        Raises:
            InvalidRequest: there is no such batch.
        """
        record = self.record(batch_id)
        follower = follower or Follower(self.store, None, batch_id)
        follower.scan(claims=True, cancelled=record.state == "cancelled")
        snap = follower.snap
        if snap.pending == 0 and record.state == "running":  # done, whoever looked first
            finished = snap.last_result or time.time()
            self.store.save(batch_id, state="done", finished=finished)
            record = replace(record, state="done", finished=finished)
        return record, snap

    def follower(self, batch_id: str) -> Follower:
        """A follower to hand `snapshot` again and again (one byte per line)."""
        return Follower(self.store, None, batch_id)

    def results(self, batch_id: str) -> Iterator[Result]:
        """Every line's result in input order, read in chunks (a line with no result yet
        is a Pending error, or Cancelled when the batch was cancelled)."""
        record = self.record(batch_id)
        unfinished = CANCELLED_ERROR if record.state == "cancelled" else PENDING_ERROR
        to_cache = []
        for entries in self.store.iter_entries(batch_id):
            metas = self.store.metas([e.get("t") for e in entries])
            for entry, meta in zip(entries, metas, strict=True):
                if "e" in entry:
                    yield Result(entry["c"], entry["n"], None, None, entry["e"])
                    continue
                outcome = outcome_of(meta)
                if outcome.state == SUCCEEDED:
                    if entry.get("k") and not outcome.response.get("cached"):
                        to_cache.append((entry["k"], outcome.response))
                    yield Result(entry["c"], entry["n"], entry["t"], outcome.response, None)
                else:
                    error = outcome.error or unfinished
                    yield Result(entry["c"], entry["n"], entry["t"], None, error)
            self.cache.put_many(to_cache)
            to_cache = []

    def list(self) -> list[BatchRecord]:
        """Every batch on record, oldest first."""
        records = (self.store.record(b) for b in self.store.batch_ids())
        return [r for r in records if r is not None]


def _chunks(items: Iterable[Line], size: int) -> Iterator[list[Line]]:
    iterator = iter(items)
    while chunk := list(itertools.islice(iterator, size)):
        yield chunk
