"""Answers a follower has read, kept on this machine, so they are never paid twice.

`chatq batch run` (and `chatq judge`) append every answer they read to
`CHATQ_HOME/spool/<batch id>.jsonl`. If Redis later loses its data (it restarted with
no persistence, or was flushed), running the same command again puts those answers
back as the lines' results before anything is queued: only the lines that had no
answer yet are paid for. Spool files older than CHATQ_RESULT_TTL are removed.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from tasks.batch.store import BatchStore

__all__ = ["Spool"]

_RESTORE_AT_ONCE = 1000


class Spool:
    """One batch's spool file under `home`.

    Args:
        home: CHATQ_HOME.
        batch_id: the batch.
    """

    def __init__(self, home: Path, batch_id: str):
        self.path = Path(home) / "spool" / f"{batch_id}.jsonl"

    def add(self, items: Sequence[tuple[str, dict[str, Any]]]) -> None:
        """Keep `(task_id, response)` pairs (a cached answer is not worth keeping)."""
        rows = [(t, r) for t, r in items if not r.get("cached")]
        if not rows:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a", encoding="utf-8") as handle:
            for task_id, response in rows:
                handle.write(json.dumps({"t": task_id, "r": response}, ensure_ascii=False))
                handle.write("\n")

    def restore(self, store: BatchStore) -> int:
        """Store kept answers as results where Redis has none; how many it put back."""
        restored = 0
        for chunk in self._chunks():
            restored += store.put_metas(chunk)
        return restored

    def _chunks(self) -> Iterator[list[tuple[str, dict[str, Any]]]]:
        if not self.path.is_file():
            return
        chunk: list[tuple[str, dict[str, Any]]] = []
        with open(self.path, encoding="utf-8") as handle:
            for text in handle:
                try:
                    row = json.loads(text)
                    chunk.append((str(row["t"]), dict(row["r"])))
                except (ValueError, KeyError, TypeError):
                    continue  # a line cut short by a kill: the rest still counts
                if len(chunk) >= _RESTORE_AT_ONCE:
                    yield chunk
                    chunk = []
        if chunk:
            yield chunk

    @staticmethod
    def prune(home: Path, *, ttl: float) -> None:
        """Remove spool files untouched for longer than `ttl` seconds."""
        folder = Path(home) / "spool"
        if not folder.is_dir():
            return
        cutoff = time.time() - ttl
        for path in folder.glob("*.jsonl"):
            with contextlib.suppress(OSError):
                if path.stat().st_mtime < cutoff:
                    path.unlink()
