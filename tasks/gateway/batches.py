"""OpenAI's Batch API on chatq's batch store.

An HTTP batch is a chatq batch (same id, so `chatq batch status batch_...` shows it)
plus the fields only OpenAI's object has, kept beside it in Redis:

    chatq:gateway:batch:<id>    JSON: the batch object as last answered
    chatq:gateway:batches       sorted set: ids by creation time (for listing)
    chatq:gateway:active        set: ids not yet in a final state

Statuses: validating (the input file is being read and its lines queued), in_progress,
finalizing (the output and error files are being written), completed; failed when
the file has no valid line; cancelling, then cancelled once no line is running. The
lines run, resume and are cached exactly as `chatq batch submit` runs them; this module
only moves the object from one status to the next.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from typing import Any

import redis

from chatq.errors import InvalidRequest
from tasks.batch.cancel import cancel_batch
from tasks.batch.output import format_line
from tasks.batch.service import Batches, FileSource
from tasks.gateway.errors import HTTPError, NotFound
from tasks.gateway.files import FileStore

__all__ = ["OpenAIBatches"]

log = logging.getLogger(__name__)

_DOC = "chatq:gateway:batch:"
_INDEX = "chatq:gateway:batches"
_ACTIVE = "chatq:gateway:active"
_LOCK = "chatq:gateway:lock:"
ENDPOINT = "/v1/chat/completions"
WINDOWS = ("24h",)
FINAL = ("completed", "failed", "cancelled", "expired")
#: How long one process may hold a batch's submit or finalize lock before another
#: takes over (it renews it while it works).
_LEASE = 60


class OpenAIBatches:
    """Create, read, list and cancel OpenAI batches, and move them along."""

    def __init__(self, batches: Batches, files: FileStore, *, ttl: int):
        self.batches = batches
        self.files = files
        self.ttl = ttl
        self.client: redis.Redis = batches.store.client
        self._working: set[str] = set()
        self._lock = threading.Lock()
        #: Per unfinished batch: its follower (so that a poll reads only the lines still
        #: pending, not the whole batch) and the lock that keeps two polls apart.
        self._followers: dict[str, tuple[threading.Lock, Any]] = {}

    # -- the API -------------------------------------------------------------------------
    def create(self, body: dict[str, Any]) -> dict[str, Any]:
        """Validate `POST /v1/batches`'s body, record the batch, start reading its file."""
        input_file_id = body.get("input_file_id")
        if not isinstance(input_file_id, str) or not input_file_id:
            raise InvalidRequest("input_file_id is required", field="input_file_id")
        endpoint = body.get("endpoint")
        if endpoint != ENDPOINT:
            raise InvalidRequest(f"endpoint must be {ENDPOINT!r}, not {endpoint!r}",
                                 field="endpoint")  # fmt: skip
        window = body.get("completion_window", "24h")
        if window not in WINDOWS:
            raise InvalidRequest(f"completion_window must be '24h', not {window!r}",
                                 field="completion_window")  # fmt: skip
        metadata = body.get("metadata")
        _check_metadata(metadata)
        unknown = sorted(set(body) - {"input_file_id", "endpoint", "completion_window",
                                      "metadata", "output_expires_after"})  # fmt: skip
        if unknown:
            raise InvalidRequest(f"{unknown[0]} is not a known field", field=unknown[0])
        source = self.files.get(input_file_id)
        if source.purpose != "batch":
            raise InvalidRequest(f"file {input_file_id} has purpose {source.purpose!r}, "
                                 "not 'batch'", field="input_file_id")  # fmt: skip
        now = int(time.time())
        doc = {
            "id": f"batch_{uuid.uuid4().hex[:24]}",
            "object": "batch",
            "endpoint": ENDPOINT,
            "errors": None,
            "input_file_id": input_file_id,
            "completion_window": window,
            "status": "validating",
            "output_file_id": None,
            "error_file_id": None,
            "created_at": now,
            "in_progress_at": None,
            "expires_at": now + 24 * 3600,
            "finalizing_at": None,
            "completed_at": None,
            "failed_at": None,
            "expired_at": None,
            "cancelling_at": None,
            "cancelled_at": None,
            "request_counts": {"total": 0, "completed": 0, "failed": 0},
            "metadata": metadata,
        }
        self._save(doc)
        self.client.zadd(_INDEX, {doc["id"]: time.time()})
        self.client.sadd(_ACTIVE, doc["id"])
        self._start(doc["id"], self._submit)
        return doc

    def get(self, batch_id: str) -> dict[str, Any]:
        """The batch object, moved along first if it can be.

        Raises:
            NotFound: no such batch.
        """
        self.advance(batch_id)
        return self._load(batch_id)

    def list(self, *, after: str | None, limit: int) -> dict[str, Any]:
        """OpenAI's list object: the newest batches first, `limit` of them after `after`."""
        start = 0
        if after:
            rank = self.client.zrevrank(_INDEX, after)
            if rank is None:
                raise NotFound(f"no batch {after!r} to list after", field="after")
            start = rank + 1
        ids = [i.decode() for i in self.client.zrevrange(_INDEX, start, start + limit)]
        docs = []
        for batch_id in ids[:limit]:
            try:
                docs.append(self.get(batch_id))
            except NotFound:  # expired since: drop it from the index
                self.client.zrem(_INDEX, batch_id)
        return {
            "object": "list",
            "data": docs,
            "first_id": docs[0]["id"] if docs else None,
            "last_id": docs[-1]["id"] if docs else None,
            "has_more": len(ids) > limit,
        }

    def cancel(self, batch_id: str) -> dict[str, Any]:
        """Cancel the batch: no waiting line runs, running lines finish, then the files
        are written and it is cancelled.

        Raises:
            NotFound: no such batch.
            HTTPError: 409 when it has already ended.
        """
        doc = self._load(batch_id)
        if doc["status"] in FINAL or doc["status"] == "finalizing":
            raise HTTPError(409, f"batch {batch_id} is {doc['status']}: it cannot be "
                            "cancelled", code="batch_not_cancellable")  # fmt: skip
        if doc["status"] != "cancelling":
            doc.update(status="cancelling", cancelling_at=int(time.time()))
            self._save(doc)
            if self.batches.store.record(batch_id) is not None:
                cancel_batch(self.batches.store, self.batches.producer.app, batch_id)
        return self.get(batch_id)

    # -- moving along ---------------------------------------------------------------------
    def forget(self, batch_id: str) -> None:
        """Stop moving `batch_id` along (its object expired)."""
        self.client.srem(_ACTIVE, batch_id)

    def active(self) -> list[str]:
        """The ids of batches not in a final state."""
        return sorted(i.decode() for i in self.client.smembers(_ACTIVE))

    def advance(self, batch_id: str) -> None:
        """One step: resume an abandoned submit, count lines, finalize a finished batch."""
        doc = self._load(batch_id)
        status = doc["status"]
        if status in FINAL:
            self.client.srem(_ACTIVE, batch_id)
            return
        if status == "validating":
            if self._free(f"submit:{batch_id}"):  # its submitter died: go on in its stead
                self._start(batch_id, self._submit)
            return
        record, snap = self._snapshot(batch_id)
        doc["request_counts"] = {"total": snap.total, "completed": snap.succeeded,
                                 "failed": snap.failed}  # fmt: skip
        tokens = snap.input_tokens + snap.output_tokens
        doc["usage"] = {"input_tokens": snap.input_tokens, "output_tokens": snap.output_tokens,
                        "total_tokens": tokens}  # fmt: skip
        if record.state == "cancelled" and status == "in_progress":  # cancelled elsewhere
            doc.update(status="cancelling", cancelling_at=int(time.time()))
            status = "cancelling"
        self._save(doc)
        over = record.state == "done" or (status == "cancelling" and snap.running == 0)
        if over or (status == "finalizing" and self._free(f"finalize:{batch_id}")):
            self._start(batch_id, self._finalize)

    def _snapshot(self, batch_id: str) -> tuple[Any, Any]:
        with self._lock:
            if batch_id not in self._followers:
                self._followers[batch_id] = (threading.Lock(), self.batches.follower(batch_id))
            lock, follower = self._followers[batch_id]
        with lock:
            return self.batches.snapshot(batch_id, follower=follower)

    # -- work done in a thread of its own ------------------------------------------------
    def _start(self, batch_id: str, work: Any) -> None:
        """Run `work(batch_id)` in a thread, unless this process already works on it."""
        with self._lock:
            if batch_id in self._working:
                return
            self._working.add(batch_id)

        def run() -> None:
            try:
                work(batch_id)
            finally:
                with self._lock:
                    self._working.discard(batch_id)

        threading.Thread(target=run, name=f"chatq-{batch_id}", daemon=True).start()

    def _submit(self, batch_id: str) -> None:
        try:
            with _Lease(self.client, f"{_LOCK}submit:{batch_id}") as held:
                if held:
                    self._read_input(batch_id)
        except Exception:
            log.exception("batch %s: reading its input failed", batch_id)
            doc = self._load(batch_id)
            self._fail(doc, "internal_error", "the gateway could not read the input file "
                       "(see its log); create the batch again")  # fmt: skip

    def _read_input(self, batch_id: str) -> None:
        doc = self._load(batch_id)
        if doc["status"] != "validating":
            return
        path = self.files.path(doc["input_file_id"])
        report = self.batches.submit(batch_id, FileSource(path), options={"via": "http"})
        doc = self._load(batch_id)
        doc["request_counts"] = {"total": report.lines, "completed": 0, "failed": report.invalid}
        if report.lines == report.invalid:
            errors = [
                {"code": e.get("type", "invalid_request"), "message": e.get("message", ""),
                 "param": e.get("field"), "line": e.get("line")}
                for e in report.errors
            ]  # fmt: skip
            if not errors:
                errors = [{"code": "empty_file", "message": "the input file has no lines",
                           "param": None, "line": None}]  # fmt: skip
            doc.update(status="failed", failed_at=int(time.time()),
                       errors={"object": "list", "data": errors})  # fmt: skip
            self._save(doc)
            self.client.srem(_ACTIVE, batch_id)
            return
        if doc["status"] == "cancelling":  # cancelled while its lines were being queued
            cancel_batch(self.batches.store, self.batches.producer.app, batch_id)
        else:
            doc.update(status="in_progress", in_progress_at=int(time.time()))
        self._save(doc)

    def _finalize(self, batch_id: str) -> None:
        with _Lease(self.client, f"{_LOCK}finalize:{batch_id}") as held:
            if not held:
                return
            doc = self._load(batch_id)
            if doc["status"] in FINAL:
                return
            cancelled = doc["status"] == "cancelling" or doc.get("cancelling_at") is not None
            doc.update(status="finalizing", finalizing_at=doc["finalizing_at"] or int(time.time()))
            self._save(doc)
            outputs, errors, counts = self._write_files(batch_id)
            # The counts of what the files hold: a line may have ended since the last poll.
            doc.update(output_file_id=outputs, error_file_id=errors, request_counts=counts)
            if cancelled:
                doc.update(status="cancelled", cancelled_at=int(time.time()))
            else:
                doc.update(status="completed", completed_at=int(time.time()))
            self._save(doc)
            self.client.srem(_ACTIVE, batch_id)
        with self._lock:
            self._followers.pop(batch_id, None)

    def _write_files(self, batch_id: str) -> tuple[str | None, str | None, dict[str, int]]:
        """Write the output (lines that succeeded) and error (lines that did not) files in
        one pass over the results, read in chunks: (output file id, error file id: None
        when empty, request counts)."""
        counts = {"total": 0, "completed": 0, "failed": 0}
        with (
            self.files.writing(f"{batch_id}_output.jsonl", purpose="batch_output") as ok,
            self.files.writing(f"{batch_id}_error.jsonl", purpose="batch_output") as bad,
        ):
            for result in self.batches.results(batch_id):
                line = json.dumps(format_line(result, "openai"), ensure_ascii=False) + "\n"
                counts["total"] += 1
                if result.response is not None:
                    ok.write(line.encode("utf-8"))
                    counts["completed"] += 1
                else:
                    bad.write(line.encode("utf-8"))
                    cancelled = (result.error or {}).get("type") == "Cancelled"
                    counts["failed"] += not cancelled
        ids = []
        for written in (ok.obj, bad.obj):
            if written.bytes == 0:
                self.files.delete(written.id)
                ids.append(None)
            else:
                ids.append(written.id)
        return ids[0], ids[1], counts

    # -- the object in Redis ---------------------------------------------------------------
    def _load(self, batch_id: str) -> dict[str, Any]:
        raw = self.client.get(_DOC + batch_id)
        if raw is None:
            raise NotFound(f"no batch {batch_id!r} (never created, or expired)",
                           field="batch_id")  # fmt: skip
        return json.loads(raw)

    def _save(self, doc: dict[str, Any]) -> None:
        self.client.set(_DOC + doc["id"], json.dumps(doc), ex=self.ttl)

    def _fail(self, doc: dict[str, Any], code: str, message: str) -> None:
        doc.update(status="failed", failed_at=int(time.time()), errors={
            "object": "list", "data": [{"code": code, "message": message, "param": None,
                                        "line": None}]})  # fmt: skip
        self._save(doc)
        self.client.srem(_ACTIVE, doc["id"])

    def _free(self, name: str) -> bool:
        return not self.client.exists(f"{_LOCK}{name}")


class _Lease:
    """A Redis lock held while a thread works, renewed every third of its life."""

    def __init__(self, client: redis.Redis, key: str):
        self.client = client
        self.key = key
        self.token = uuid.uuid4().hex
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> bool:
        if not self.client.set(self.key, self.token, nx=True, ex=_LEASE):
            return False
        self._thread = threading.Thread(target=self._renew, daemon=True)
        self._thread.start()
        return True

    def _renew(self) -> None:
        while not self._stop.wait(_LEASE / 3):
            try:
                if self.client.get(self.key) != self.token.encode():
                    return
                self.client.expire(self.key, _LEASE)
            except redis.RedisError:
                continue

    def __exit__(self, *exc: object) -> None:
        if self._thread is None:
            return
        self._stop.set()
        try:
            if self.client.get(self.key) == self.token.encode():
                self.client.delete(self.key)
        except redis.RedisError:
            pass  # it expires on its own


def _check_metadata(metadata: Any) -> None:
    if metadata is None:
        return
    if not isinstance(metadata, dict) or len(metadata) > 16:
        raise InvalidRequest("metadata must be an object of at most 16 string pairs",
                             field="metadata")  # fmt: skip
    for key, value in metadata.items():
        if not isinstance(value, str) or len(key) > 64 or len(value) > 512:
            raise InvalidRequest(f"metadata.{key}: keys up to 64 and values up to 512 "
                                 "characters, strings only", field=f"metadata.{key}")  # fmt: skip
