"""Files as OpenAI's Files API knows them, kept in a directory under CHATQ_HOME.

    <home>/files/<id>          the content, written once, streamed in and out
    <home>/files/<id>.json     its object: id, bytes, created_at, filename, purpose

A directory rather than Redis: a batch input may be hundreds of megabytes, which would
sit in the queue's memory for a week; on disk it survives a restart of Redis or of the
gateway, and is read line by line when a batch is submitted (or its lost lines sent
again). Uploads are copied in chunks as they arrive, so no file is held whole.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

from chatq.errors import InvalidRequest
from tasks.gateway.errors import NotFound

__all__ = ["FileObject", "FileStore", "UnknownFile"]

_ID = re.compile(r"^file-[0-9a-f]{24}$")
PURPOSES = ("batch", "batch_output")


class UnknownFile(NotFound):
    """No file with this id (never uploaded, or deleted)."""


@dataclass(frozen=True)
class FileObject:
    """OpenAI's file object."""

    id: str
    bytes: int
    created_at: int
    filename: str
    purpose: str
    object: str = "file"
    status: str = "processed"

    def to_dict(self) -> dict:
        return asdict(self)


class NewFile:
    """A file being written (see `FileStore.writing`)."""

    def __init__(self, handle):
        self.handle = handle
        self.size = 0
        self.obj: FileObject | None = None

    def write(self, data: bytes) -> None:
        self.handle.write(data)
        self.size += len(data)


class FileStore:
    """Create, read, list and delete files in `directory`."""

    def __init__(self, directory: Path):
        self.directory = Path(directory)

    def path(self, file_id: str) -> Path:
        """Where the content of `file_id` lives.

        Raises:
            UnknownFile: no such file.
        """
        self.get(file_id)
        return self.directory / file_id

    def get(self, file_id: str) -> FileObject:
        """The file object of `file_id`.

        Raises:
            UnknownFile: no such file.
        """
        if not _ID.match(file_id):
            raise UnknownFile(f"no file {file_id!r}", field="file_id")
        try:
            data = json.loads((self.directory / f"{file_id}.json").read_text("utf-8"))
        except FileNotFoundError:
            raise UnknownFile(f"no file {file_id!r}", field="file_id") from None
        return FileObject(**data)

    async def create(self, chunks: AsyncIterator[bytes], *, filename: str,
                     purpose: str) -> FileObject:  # fmt: skip
        """Store the content read from `chunks` as a new file."""
        with self.writing(filename, purpose=purpose) as new:
            async for chunk in chunks:
                new.write(chunk)
        return new.obj

    @contextlib.contextmanager
    def writing(self, filename: str, *, purpose: str) -> Iterator[NewFile]:
        """A new file to write to; it exists (`.obj`) once the block ends without error."""
        self._check_purpose(purpose)
        file_id = _new_id()
        self.directory.mkdir(parents=True, exist_ok=True)
        tmp = self.directory / f".{file_id}.part"
        try:
            with open(tmp, "wb") as handle:
                new = NewFile(handle)
                yield new
            new.obj = self._commit(tmp, file_id, new.size, filename, purpose)
        finally:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()

    def list(self, purpose: str | None = None) -> list[FileObject]:
        """Every file, newest first."""
        if not self.directory.is_dir():
            return []
        found = []
        for meta in self.directory.glob("file-*.json"):
            with contextlib.suppress(FileNotFoundError, ValueError, TypeError):
                found.append(FileObject(**json.loads(meta.read_text("utf-8"))))
        found = [f for f in found if purpose is None or f.purpose == purpose]
        return sorted(found, key=lambda f: (f.created_at, f.id), reverse=True)

    def delete(self, file_id: str) -> None:
        """Delete the file.

        Raises:
            UnknownFile: no such file.
        """
        self.get(file_id)
        (self.directory / f"{file_id}.json").unlink(missing_ok=True)
        (self.directory / file_id).unlink(missing_ok=True)

    def _commit(self, tmp: Path, file_id: str, size: int, filename: str,
                purpose: str) -> FileObject:  # fmt: skip
        obj = FileObject(id=file_id, bytes=size, created_at=int(time.time()),
                         filename=filename, purpose=purpose)  # fmt: skip
        os.replace(tmp, self.directory / file_id)
        meta = self.directory / f".{file_id}.json.part"
        meta.write_text(json.dumps(obj.to_dict()), "utf-8")
        os.replace(meta, self.directory / f"{file_id}.json")  # the file exists from now on
        return obj

    @staticmethod
    def _check_purpose(purpose: str) -> None:
        if purpose not in PURPOSES:
            raise InvalidRequest(
                f"purpose {purpose!r} is not supported (chatq keeps files for batches: "
                "purpose 'batch')",
                field="purpose",
            )


def _new_id() -> str:
    return f"file-{uuid.uuid4().hex[:24]}"
