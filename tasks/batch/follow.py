"""Following a batch to its end: counting outcomes as they land, and making sure every
line gets one.

The follower keeps one byte per line (its state) and reads only lines still pending,
a chunk at a time: memory stays bounded whatever the batch's size. A line whose job
was lost (its message went with a crashed Redis, or a dead worker holds its claim) is
queued again under the same task id, which the worker's pay-once check makes safe.
"""

from __future__ import annotations

import collections
import logging
import time
from collections.abc import Callable
from typing import Any

from chatq.errors import error_label
from config import PROVIDERS
from tasks.batch.cache import ResponseCache
from tasks.batch.claims import stale
from tasks.batch.snapshot import Snapshot
from tasks.batch.spool import Spool
from tasks.batch.store import (
    CANCELLED,
    CANCELLED_ERROR,
    CHUNK,
    INVALID,
    PENDING,
    SUCCEEDED,
    BatchStore,
    outcome_of,
)
from worker.app import DEFAULT_QUEUE, queue_for

__all__ = ["Follower"]

log = logging.getLogger(__name__)

#: Seconds between reads of the workers' claims (which lines are running).
CLAIMS_EVERY = 2.0
#: Seconds between writes of the progress into the batch record.
RECORD_EVERY = 2.0


class Follower:
    """Counts a batch's outcomes and waits for the last one.

    Args:
        store: where the batch lives.
        cache: filled with each new temperature-0 answer.
        batch_id: the batch to follow.
        republish: queues lines (0-based positions) again; None when the input is not
            at hand (lost lines are then only reported).
        stall: seconds without progress, with empty queues, before unclaimed lines are
            taken for lost and queued again.
        spool: where each answer read is kept on this machine (see tasks/batch/spool).
    """

    def __init__(
        self,
        store: BatchStore,
        cache: ResponseCache | None,
        batch_id: str,
        *,
        republish: Callable[[list[int]], int] | None = None,
        stall: float = 20.0,
        is_stale: Callable[[bytes], bool] = stale,
        spool: Spool | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ):
        self.store = store
        self.cache = cache
        self.batch_id = batch_id
        self.republish = republish
        self.stall = stall
        self.is_stale = is_stale
        self.spool = spool
        self.clock = clock
        self.sleep = sleep
        record = store.record(batch_id)
        self.total = record.lines if record else 0
        self.states = bytearray(self.total)
        self.chunk_pending = [
            min(CHUNK, self.total - start) for start in range(0, self.total, CHUNK)
        ]
        self.snap = Snapshot(total=self.total)
        self._samples: collections.deque[tuple[float, int]] = collections.deque()
        self._running: set[int] = set()
        self._stale: list[int] = []

    # -- one pass ------------------------------------------------------------------------
    def scan(self, *, claims: bool = False, cancelled: bool = False) -> int:
        """Read the pending lines' outcomes; return how many finished in this pass.

        With `claims`, also count running lines (a worker holds their claim) and note
        those whose holder is a dead process of this host. With `cancelled`, a pending
        line that no worker holds is final: cancelled.
        """
        finished = 0
        running, stale_lines, to_cache, to_keep = [], [], [], []
        for chunk_no, pending in enumerate(self.chunk_pending):
            if not pending:
                continue
            start = chunk_no * CHUNK
            entries = self.store.entries(self.batch_id, start, start + CHUNK)
            todo = [(start + i, e) for i, e in enumerate(entries) if not self.states[start + i]]
            for pos, entry in todo:
                if "e" in entry:
                    self._finish(pos, INVALID, error=entry["e"])
                    finished += 1
            todo = [(pos, e) for pos, e in todo if "e" not in e]
            metas = self.store.metas([e["t"] for _, e in todo])
            still = []
            for (pos, entry), meta in zip(todo, metas, strict=True):
                outcome = outcome_of(meta)
                if outcome.state == PENDING:
                    still.append((pos, entry))
                    continue
                self._finish(pos, outcome.state, response=outcome.response, error=outcome.error,
                             at=outcome.at)  # fmt: skip
                finished += 1
                if outcome.state == SUCCEEDED:
                    to_keep.append((entry["t"], outcome.response))
                    if entry.get("k"):
                        to_cache.append((entry["k"], outcome.response))
            if still and (claims or cancelled):
                tokens = self.store.claims([e["t"] for _, e in still])
                for (pos, _entry), token in zip(still, tokens, strict=True):
                    if token is None:
                        if cancelled:
                            self._finish(pos, CANCELLED, error=CANCELLED_ERROR)
                            finished += 1
                    elif self.is_stale(token):
                        stale_lines.append(pos)
                    else:
                        running.append(pos)
        if self.cache is not None and to_cache:
            self.cache.put_many(to_cache)
        if self.spool is not None:
            self.spool.add(to_keep)
        if claims or cancelled:
            self._running, self._stale = set(running), stale_lines
        # Read every poll, the claims only every few seconds: a line that finished since
        # is no longer running, so that every count is as fresh as the others.
        self.snap.running = len(self._running)
        return finished

    def _finish(
        self,
        pos: int,
        state: int,
        *,
        response: Any = None,
        error: Any = None,
        at: float | None = None,
    ) -> None:
        self.states[pos] = state
        self.chunk_pending[pos // CHUNK] -= 1
        self._running.discard(pos)
        snap = self.snap
        if at is not None and (snap.last_result is None or at > snap.last_result):
            snap.last_result = at
        if state == SUCCEEDED:
            snap.succeeded += 1
            snap.input_tokens += int(response.get("input_tokens") or 0)
            snap.output_tokens += int(response.get("output_tokens") or 0)
            cost = response.get("cost")
            if cost is None:
                snap.unpriced += 1
            elif not response.get("cached"):  # a cached answer was paid for once, before
                snap.cost += float(cost)
            snap.retried += int((response.get("attempts") or 1) > 1)
            snap.cached += int(bool(response.get("cached")))
            return
        if state == CANCELLED:
            snap.cancelled += 1
        else:
            snap.failed += 1
        error = error or {}
        kind = error_label(error.get("type", "JobFailed"), error.get("status"))
        snap.errors[kind] = snap.errors.get(kind, 0) + 1

    # -- following -----------------------------------------------------------------------
    def run(self, *, progress: Any = None, poll: float = 0.5, timeout: float | None = None):
        """Follow until every line is final (or `timeout` seconds pass); the last Snapshot.

        Raises:
            KeyboardInterrupt: passed on, after the progress line is closed.
        """
        began = self.clock()
        last_claims = last_record = float("-inf")
        last_change = began
        try:
            while True:
                now = self.clock()
                record = self.store.record(self.batch_id)
                cancelled = record is not None and record.state == "cancelled"
                want_claims = now - last_claims >= CLAIMS_EVERY
                if self.scan(claims=want_claims, cancelled=cancelled):
                    last_change = now
                if want_claims:
                    last_claims = now
                    self._recover_stale()
                self._rate(now)
                if progress is not None:
                    progress.update(self.snap, force=self.snap.pending == 0)
                if now - last_record >= RECORD_EVERY or self.snap.pending == 0:
                    last_record = now
                    self._save(done=self.snap.pending == 0, cancelled=cancelled)
                if self.snap.pending == 0:
                    return self.snap
                if timeout is not None and now - began >= timeout:
                    return self.snap
                if now - last_change >= self.stall and self._recover_lost():
                    last_change = now
                self.sleep(poll)
        finally:
            if progress is not None:
                progress.close()

    def _rate(self, now: float) -> None:
        """Lines finished per second over the last 30 s of this run."""
        finished = self.snap.finished
        self._samples.append((now, finished))
        while len(self._samples) > 2 and now - self._samples[0][0] > 30:
            self._samples.popleft()
        t0, f0 = self._samples[0]
        self.snap.rate = (finished - f0) / (now - t0) if now > t0 else 0.0

    def _save(self, *, done: bool, cancelled: bool) -> None:
        snap = self.snap
        fields: dict[str, Any] = {
            "progress": {
                "succeeded": snap.succeeded, "failed": snap.failed,
                "cancelled": snap.cancelled, "running": snap.running, "rate": snap.rate,
                "input_tokens": snap.input_tokens, "output_tokens": snap.output_tokens,
                "at": time.time(),
            },
        }  # fmt: skip
        if done:
            fields["state"] = "cancelled" if cancelled else "done"
            fields["finished"] = snap.last_result or time.time()  # ends at its last result
        self.store.save(self.batch_id, **fields)
        if not done:
            self.store.beat(self.batch_id)

    def _recover_stale(self) -> None:
        """Queue again lines whose claim is held by a dead process of this host."""
        if not self._stale or self.republish is None:
            return
        count = self.republish(self._stale)
        log.info("batch %s: %d line(s) held by dead workers queued again", self.batch_id, count)
        self._stale = []

    def _recover_lost(self) -> int:
        """After a stall with nothing waiting in the queues, queue again the pending lines
        no worker holds: their messages were lost. How many."""
        if self.republish is None:
            return 0
        client = self.store.client
        queues = [DEFAULT_QUEUE] + [queue_for(p) for p in PROVIDERS]
        if sum(client.llen(q) for q in queues):
            return 0
        self.scan(claims=True)
        held = set(self._running)
        lost = [pos for pos in range(self.total) if self.states[pos] == PENDING and pos not in held]
        if not lost:
            return 0
        count = self.republish(lost)
        log.warning("batch %s: %d unanswered line(s) queued again", self.batch_id, count)
        return count
