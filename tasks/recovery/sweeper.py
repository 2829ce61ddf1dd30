"""The fleet's sweeper: inside the workers, one at a time, it sends lost jobs again.

Every `CHATQ_SWEEP_INTERVAL` seconds the worker process holding the sweeper's lease
(`chatq:sweeper`, a Redis key that expires unless renewed) reads the journal
(tasks/recovery/journal.py) and settles each message whose jobs have not all ended:

- a job with a stored result (success, failure, revoked) has ended;
- a job whose claim is held by a live worker process (its heartbeat, worker/heartbeat.py,
  is current) is being worked on;
- any other job is an orphan. Its message is lost when the worker that took it is dead,
  or took it more than `CHATQ_LOST_AFTER` seconds ago; a message never taken is lost
  when a message published `CHATQ_LOST_AFTER` seconds after it was already taken from
  the same queue (queues are first in, first out), or when its queue is empty and it is
  older than that. A lost message's orphans are published again under the same task
  ids (the claims of dead holders dropped first); the worker's claims make a job that
  already succeeded cost nothing the second time.

Messages whose jobs have all ended leave the journal, and the lines they answered are
marked in their batch, which is marked done (its finish time its last result's) when
every line has ended: `chatq batch status` tells the truth with nobody following.
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import redis

from config import PROVIDERS, Settings
from tasks.batch.store import CLAIM_PREFIX, META_PREFIX, BatchStore, done_at
from tasks.recovery.journal import Entry, Journal, server_time
from tasks.recovery.messages import UNACKED, UNACKED_INDEX, job_ids
from tasks.recovery.outbox import Envelope, Outbox
from worker.app import DEFAULT_QUEUE, queue_for
from worker.heartbeat import alive, holder_of, this_process
from worker.redis_memory import Marker

__all__ = ["LEASE", "Sweep", "Sweeper"]

log = logging.getLogger(__name__)

LEASE = "chatq:sweeper"
_ENDED = frozenset({"SUCCESS", "FAILURE", "REVOKED"})
_SETTLE_AT_ONCE = 200

_TAKE_LEASE = """
if redis.call('get', KEYS[1]) == ARGV[1] then
  redis.call('pexpire', KEYS[1], ARGV[2])
  return 1
end
if redis.call('set', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then return 1 end
return 0
"""


@dataclass
class Sweep:
    """What one sweep found and did."""

    settled: int = 0
    requeued: int = 0
    messages_lost: int = 0
    claims_dropped: int = 0
    acks_completed: int = 0
    batches_done: list[str] = field(default_factory=list)


@dataclass
class _Job:
    id: str
    body: Any
    position: int | None
    meta: dict[str, Any] | None
    claim: bytes | None


class Sweeper:
    """Settles the journal; `run()` in a thread, or `sweep()` once (tests).

    Args:
        client: a client of the queue's Redis (bytes responses).
        app: the configured Celery app (to publish again).
        settings: sweep interval, lost-after delay, result TTL.
        holder: who holds the lease when this sweeper does; default this process.
    """

    def __init__(
        self, client: redis.Redis, app: Any, settings: Settings, *, holder: str | None = None
    ):
        self.client = client
        self.settings = settings
        self.journal = Journal(client, ttl=settings.result_ttl)
        self.outbox = Outbox(app, self.journal)
        self.batches = BatchStore(client, ttl=settings.result_ttl)
        self.queues = [DEFAULT_QUEUE] + [queue_for(p) for p in PROVIDERS]
        self._take = client.register_script(_TAKE_LEASE)
        self._me = holder or this_process()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._failing = False
        self.marker = Marker(client, ttl=settings.result_ttl)
        self._marker: float | None = None

    # -- running -------------------------------------------------------------------------
    def start(self) -> Sweeper:
        self._thread = threading.Thread(target=self.run, name="chatq-sweeper", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        with contextlib.suppress(redis.RedisError):  # else the lease expires on its own
            self.client.eval(
                "if redis.call('get', KEYS[1]) == ARGV[1] then redis.call('del', KEYS[1]) end",
                1, LEASE, self._me,
            )  # fmt: skip

    def run(self) -> None:
        """Sweep every interval while this process holds the lease, until stopped."""
        while not self._stop.wait(self.settings.sweep_interval):
            try:
                if self.lease():
                    self.sweep()
                if self._failing:
                    log.warning("sweeper: Redis answers again")
                    self._failing = False
            except redis.RedisError as exc:  # Redis restarting: try again next time
                if not self._failing:
                    log.warning("sweeper: Redis unavailable (%s); will retry", type(exc).__name__)
                    self._failing = True
            except Exception:  # a bug here must not stop the worker or later sweeps
                log.exception("sweeper: sweep failed")

    def lease(self) -> bool:
        """Take or renew the sweeper's lease; whether this process holds it."""
        ttl_ms = int(self.settings.sweep_interval * 3 * 1000)
        return bool(self._take(keys=[LEASE], args=[self._me, ttl_ms]))

    # -- one sweep -----------------------------------------------------------------------
    def sweep(self) -> Sweep:
        """Settle every taken message, then every message that should have been taken."""
        report = Sweep()
        self._check_memory()
        now = server_time(self.client)
        running = self.journal.running(limit=20_000)
        for start in range(0, len(running), _SETTLE_AT_ONCE):
            self._settle(running[start : start + _SETTLE_AT_ONCE], None, now, report)
        lost_after = self.settings.lost_after
        for queue in self.queues:
            cutoff = None
            front = self.journal.front(queue)
            if front is not None:
                cutoff = front - lost_after
            if not self.client.llen(queue):
                cutoff = max(cutoff or 0.0, now - lost_after)
            if cutoff is None:
                continue
            waiting = self.journal.waiting_before(queue, cutoff, limit=5000)
            for start in range(0, len(waiting), _SETTLE_AT_ONCE):
                self._settle(waiting[start : start + _SETTLE_AT_ONCE], queue, now, report)
        report.acks_completed = self._complete_failed_acks()
        return report

    def _check_memory(self) -> None:
        """Say so, once, when Redis came back empty since the last sweep."""
        state = self.marker.touch()
        if self._marker is not None and state.created != self._marker:
            log.warning(
                "Redis came back empty (run %s): the jobs queued and the results and "
                "batch records stored before are gone; batches must be submitted again",
                state.run_id[:12],
            )
        self._marker = state.created

    def _complete_failed_acks(self) -> int:
        """Acknowledge, on their workers' behalf, taken messages whose jobs have all
        ended but whose acknowledgement never reached Redis (it was down): otherwise
        the broker hands them out again after its visibility timeout, many minutes
        later, to run nothing. How many."""
        older = time.time() - self.settings.lost_after  # kombu scores with workers' clocks
        tags = self.client.zrangebyscore(UNACKED_INDEX, "-inf", older, start=0, num=2000)
        if not tags:
            return 0
        raws = self.client.hmget(UNACKED, tags)
        held: dict[bytes, list[str]] = {}
        for tag, raw in zip(tags, raws, strict=True):
            try:
                ids = job_ids(json.loads(raw)[0]) if raw is not None else []
            except (ValueError, IndexError, TypeError):
                ids = []
            if ids:
                held[tag] = ids
        every = [job for ids in held.values() for job in ids]
        metas = dict(zip(every, self.client.mget([META_PREFIX + j for j in every]), strict=True))
        done = [
            tag for tag, ids in held.items()
            if all((_decode(metas[j]) or {}).get("status") in _ENDED for j in ids)
        ]  # fmt: skip
        if done:
            pipe = self.client.pipeline(transaction=False)
            pipe.hdel(UNACKED, *done)
            pipe.zrem(UNACKED_INDEX, *done)
            pipe.execute()
            log.info("sweeper: %d message(s) whose jobs ended acknowledged late", len(done))
        return len(done)

    def _settle(self, ids: Sequence[str], queue: str | None, now: float, report: Sweep) -> None:
        entries = self.journal.entries(ids)
        self.journal.drop_ids(queue, [i for i, e in zip(ids, entries, strict=True) if e is None])
        entries = [e for e in entries if e is not None]
        if not entries:
            return
        jobs = self._jobs(entries)
        holders = {holder_of(j.claim) for js in jobs.values() for j in js if j.claim}
        holders |= {e.receiver for e in entries if e.receiver}
        live = alive(self.client, [h for h in holders if h])
        touched: dict[str, float | None] = {}
        ended_entries = []
        for entry in entries:
            report.settled += 1
            mine = jobs[entry.id]
            ended = [j for j in mine if j.meta is not None and j.meta.get("status") in _ENDED]
            if entry.batch is not None:
                self._note_ended(entry.batch, ended, touched)
            if len(ended) == len(mine):
                ended_entries.append(entry)
                continue
            orphans = [
                j for j in mine
                if j not in ended and not (j.claim and live.get(holder_of(j.claim) or ""))
            ]  # fmt: skip
            if not orphans or not self._lost(entry, live, now):
                continue
            if entry.batch is not None and self._cancelled(entry.batch):
                ended_entries.append(entry)  # nothing of a cancelled batch runs again
                continue
            self._send_again(entry, orphans, [j for j in mine if j not in ended], report)
        self.journal.forget(ended_entries)
        for batch_id, last in touched.items():
            if self.batches.finish_if_complete(batch_id, last_result=last):
                report.batches_done.append(batch_id)
                log.info("sweeper: batch %s is done", batch_id)

    def _jobs(self, entries: Iterable[Entry]) -> dict[str, list[_Job]]:
        """Each entry's jobs with their stored result and claim (two round trips)."""
        flat = [(e, i, job) for e in entries for i, job in enumerate(e.jobs)]
        ids = [job[0] for _, _, job in flat]
        pipe = self.client.pipeline(transaction=False)
        pipe.mget([META_PREFIX + i for i in ids])
        pipe.mget([CLAIM_PREFIX + i for i in ids])
        metas, claims = pipe.execute() if ids else ([], [])
        out: dict[str, list[_Job]] = {}
        for (entry, index, job), meta, claim in zip(flat, metas, claims, strict=True):
            positions = entry.positions or []
            position = positions[index] if index < len(positions) else None
            out.setdefault(entry.id, []).append(
                _Job(job[0], job[1], position, _decode(meta), claim)
            )
        for entry in entries:
            out.setdefault(entry.id, [])
        return out

    def _lost(self, entry: Entry, live: dict[str, bool], now: float) -> bool:
        """Whether a message with orphan jobs will never be run by anyone as it is."""
        if entry.received is None:
            return True  # the caller only asks about messages that should have been taken
        if entry.receiver and not live.get(entry.receiver, False):
            return True  # its worker is dead
        return now - entry.received > self.settings.lost_after

    def _send_again(self, entry: Entry, orphans: list[_Job], unended: list[_Job],
                    report: Sweep) -> None:  # fmt: skip
        for job in orphans:
            if job.claim is not None and self.batches.drop_claim(job.id, job.claim):
                report.claims_dropped += 1
        batch: dict[str, Any] = {}
        if entry.batch is not None:
            lines = [j.position for j in orphans if j.position is not None]
            batch = {"batch": entry.batch, "positions": lines}
        pairs = [[j.id, j.body] for j in orphans]
        if entry.task.endswith("chat_many"):
            again = Envelope.chunk(entry.queue, pairs, **batch)
        else:
            again = Envelope.single(entry.queue, pairs[0][0], pairs[0][1], **batch)
        rest = [j for j in unended if j not in orphans]
        (sent,) = self.outbox.send([again])
        if rest:  # jobs still held by live workers stay with this entry
            self._keep_only(entry, rest)
        elif sent != entry.id:  # a single job is sent again under its own id
            self.journal.forget([entry])
        report.messages_lost += 1
        report.requeued += len(orphans)
        cause = "its worker died" if entry.receiver else "it never reached a worker"
        log.warning(
            "sweeper: %d job(s) of message %s on %s sent again (%s)%s",
            len(orphans), entry.id, entry.queue, cause,
            f", batch {entry.batch}" if entry.batch else "",
        )  # fmt: skip

    def _keep_only(self, entry: Entry, jobs: list[_Job]) -> None:
        fields = {"j": json.dumps([[j.id, j.body] for j in jobs], separators=(",", ":"))}
        if entry.batch is not None:
            fields["p"] = json.dumps([j.position for j in jobs])
        self.client.hset(self.journal.key(entry.id), mapping=fields)

    def _note_ended(self, batch_id: str, ended: list[_Job], touched: dict) -> None:
        self.batches.mark_done(batch_id, [j.position for j in ended if j.position is not None])
        last = max((done_at(j.meta) for j in ended), default=None, key=lambda t: t or 0)
        previous = touched.get(batch_id)
        touched[batch_id] = max(t for t in (previous, last, 0.0) if t is not None) or None

    def _cancelled(self, batch_id: str) -> bool:
        record = self.batches.record(batch_id)
        return record is not None and record.state == "cancelled"


def _decode(meta: bytes | None) -> dict[str, Any] | None:
    if meta is None:
        return None
    try:
        doc = json.loads(meta)
    except ValueError:
        return None
    return doc if isinstance(doc, dict) else None
