"""Where a batch's lines come from, how its lines' job ids are made, and what a submit
did (see tasks.batch.service)."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from tasks.batch.input import Line, file_digest, read_lines

__all__ = ["FileSource", "Source", "SubmitReport", "default_batch_id", "task_id"]

_NAMESPACE = uuid.UUID("5b0f1c1e-6a43-4c1e-9d0a-8c2f4e7b1a90")


def task_id(batch_id: str, custom_id: str, epoch: int = 0) -> str:
    """The job id of one line: the same for the same batch, custom_id and epoch."""
    name = f"{batch_id}\x1f{custom_id}" if epoch == 0 else f"{batch_id}\x1f{epoch}\x1f{custom_id}"
    return str(uuid.uuid5(_NAMESPACE, name))


def default_batch_id(prefix: str, *parts: str) -> str:
    """`<prefix>-<16 hex>` from the parts (the file digest, the model, ...)."""
    digest = hashlib.sha256("\x00".join(parts).encode("utf-8")).hexdigest()
    return f"{prefix}-{digest[:16]}"


class Source(Protocol):
    """Where a batch's lines come from; re-readable, so lost lines can be queued again."""

    kind: str
    path: str
    model: str

    def digest(self) -> str: ...

    def lines(self) -> Iterator[Line]: ...


class FileSource:
    """The lines of a JSONL batch file (see tasks.batch.input)."""

    kind = "batch"

    def __init__(self, path: Path, *, model: str | None = None, prepare=None):
        self.path = str(Path(path).resolve())
        self.model = model or ""
        self._prepare = prepare
        self._digest: str | None = None

    def digest(self) -> str:
        if self._digest is None:
            self._digest = file_digest(Path(self.path))
        return self._digest

    def lines(self) -> Iterator[Line]:
        return read_lines(Path(self.path), model=self.model or None, prepare=self._prepare)


@dataclass
class SubmitReport:
    """What one submit did."""

    batch_id: str
    lines: int = 0
    invalid: int = 0
    enqueued: int = 0
    already_done: int = 0
    already_queued: int = 0
    cached: int = 0
    seconds: float = 0.0
    #: Lines not queued because --max-cost would have been passed.
    held: int = 0
    errors: list[dict[str, Any]] = field(default_factory=list)
