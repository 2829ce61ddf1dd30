"""Publishing chat jobs: each message is written to the journal, then sent.

Every way a chatq job reaches a queue goes through here (the producer's `enqueue`,
`enqueue_many` and batches, and the sweeper sending lost jobs again), so every message
can be found and sent again if it is lost. Journal entries go to Redis in one
pipeline per `BATCH_SIZE` messages, before the messages themselves (pipelined by
kombu), so a worker that takes a message always finds its entry.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from tasks.recovery.journal import Journal, server_time
from worker.app import CHAT_MANY_TASK, CHAT_TASK, chunk_summary, request_summary

__all__ = ["BATCH_SIZE", "Envelope", "Outbox"]

#: Messages per journal pipeline and per kombu publish batch.
BATCH_SIZE = 1000


@dataclass(frozen=True)
class Envelope:
    """One task message to send: a single job (`chatq.chat`) or a chunk (`chatq.chat_many`).

    `jobs` are `[task_id, request_dict]` pairs; `positions` the batch lines they answer.
    """

    task: str
    queue: str
    jobs: list[list[Any]]
    batch: str | None = None
    positions: list[int] | None = None

    @classmethod
    def single(cls, queue: str, job: str, body: dict[str, Any], **batch: Any) -> Envelope:
        return cls(CHAT_TASK, queue, [[job, body]], **batch)

    @classmethod
    def chunk(cls, queue: str, jobs: list[list[Any]], **batch: Any) -> Envelope:
        return cls(CHAT_MANY_TASK, queue, jobs, **batch)

    @property
    def id(self) -> str | None:
        """A single job's message carries the job's id; a chunk gets its own."""
        return self.jobs[0][0] if self.task == CHAT_TASK else None


class Outbox:
    """Sends messages on a Celery app, journalling each first.

    Args:
        app: the configured Celery app.
        journal: the journal in the queue's Redis.
    """

    def __init__(self, app: Any, journal: Journal):
        self.app = app
        self.journal = journal

    def send(self, messages: Sequence[Envelope], *, producer: Any = None) -> list[str]:
        """Journal and publish `messages`; the message ids, in order."""
        ids = [m.id or str(uuid.uuid4()) for m in messages]
        with self._producer(producer) as kombu_producer:
            for start in range(0, len(messages), BATCH_SIZE):
                part = messages[start : start + BATCH_SIZE]
                part_ids = ids[start : start + BATCH_SIZE]
                self._journal(part, part_ids)
                with _pipelined(kombu_producer):
                    for message, message_id in zip(part, part_ids, strict=True):
                        self._publish(message, message_id, kombu_producer)
        return ids

    def _journal(self, messages: Sequence[Envelope], ids: Sequence[str]) -> None:
        client = self.journal.client
        at = server_time(client)
        pipe = client.pipeline(transaction=False)
        for offset, (message, message_id) in enumerate(zip(messages, ids, strict=True)):
            self.journal.record(
                pipe, message_id, queue=message.queue, task=message.task, jobs=message.jobs,
                at=at + offset * 1e-6, batch=message.batch, positions=message.positions,
            )  # fmt: skip
        pipe.execute()

    def _publish(self, message: Envelope, message_id: str, producer: Any) -> None:
        if message.task == CHAT_TASK:
            body = message.jobs[0][1]
            args, summary = [body], request_summary([body], {})
        else:
            args, summary = [message.jobs], chunk_summary([message.jobs])
        self.app.send_task(
            message.task,
            args=args,
            task_id=message_id,
            queue=message.queue,
            argsrepr=summary,
            kwargsrepr="{}",
            producer=producer,
        )

    @contextlib.contextmanager
    def _producer(self, given: Any) -> Iterator[Any]:
        if given is not None:
            yield given
            return
        with self.app.producer_or_acquire() as producer:
            yield producer


def _pipelined(producer: Any) -> Any:
    """kombu's publish batch (one Redis round trip per batch) where kombu has it."""
    batch = getattr(producer, "batch", None)
    return batch(max_size=BATCH_SIZE * 2) if batch is not None else contextlib.nullcontext()
